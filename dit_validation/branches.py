"""Branch directions φ_f of a model's samples, the midpoint between their branches, and the validity gate.

The comparison predicts and measures speciation *along directions that separate the data's branches*:
§2.5 makes the alignment of the modes with the branch separation m a precondition of the single-mode
projection (eq. 45). Two sources, by what is known about the model's data:

* ``factors`` — the multi-scale mixture testbed: φ_f are its factor patterns (global → local), the
  branches of factor f lie at ±A_f on either side of 0, and Λ_f = A_f² + s² (the data covariance
  eigenvalue along φ_f, Biroli et al. 2024).
* ``bands`` — every other model (digits, random weights, DiT-XL/2): nothing is known about its branches,
  so they are looked for where the model's own samples branch. Clone pairs split at step 0 (one shared
  z_T, independent DDPM continuations) end apart along the directions where the model decides; the
  leading principal directions of their endpoint differences are found *separately* inside the low-pass
  subspace of Protocol I's coarse discrepancy (the row space of the pooling P of eq. 71) and inside its
  orthogonal complement (the fine band of eq. 72), and ordered by spectral centroid — so that the
  commitment hierarchy of §2.7 (global before local) is tested band against band, the ordering the paper
  predicts something about. Class-mean or plain endpoint principal components are smooth shapes ordered
  by variance, about which the hierarchy says nothing. Midpoint, half separation and Λ come from the
  endpoints' projections (the symmetric two-Gaussian fit of eq. 34, :func:`theory.fit_symmetric_mixture`).

**Validity gate.** A direction has a speciation step only if the model learned its branches: its own
samples must be bimodal along φ_f. The gate is the fraction of the model's samples (g = 0, ≥ 512) lying
within half a branch separation of the midpoint, |φ_fᵀx − midpoint_f| < m_f/2 with the branches at
midpoint ± m_f; the exact-score sampler of the testbed puts ≈ 1 % there. A direction above
:data:`GATE_FRACTION`, or along which the samples are not bimodal at all (m_f = 0), is *not learned*: it
gets no measured τ, no prediction and no vote in any verdict. Held-out ε-MSE is no substitute: a network
that is linear (Gaussian) along a local factor costs only 1/d of the loss there.

Directions live in the sampler's space (C·H·W: pixels for the testbed, latents for DiT-XL/2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import theory
from theory.multiscale import DEFAULT_MIXTURE, patterns
from theory.validation import check_positive_int

from .clone_sampler import sample_clones
from .metrics import default_pool, lowpass
from .models import DiTBundle
from .verdicts import learned

__all__ = [
    "GATE_SAMPLES",
    "BranchDirections",
    "branch_directions",
    "band_directions",
    "branch_validity",
    "checkpoint_gate",
    "clone_endpoints",
    "dataset_of",
    "directions_of",
    "factor_directions",
    "lowpass_basis",
    "midpoint_fraction",
    "spectral_centroid",
    "to_tensor",
]

Source = Literal["factors", "bands"]
#: Model samples behind the gate: 256 clone pairs split at step 0 (512 endpoints).
GATE_SAMPLES = 512


@dataclass(frozen=True)
class BranchDirections:
    """F unit directions in sample space with their branches' midpoint and half separation, and Λ_f."""

    source: Source
    phi: np.ndarray  # (F, d) orthonormal rows, d = C·H·W
    midpoint: np.ndarray  # (F,) φ_fᵀμ: a sample's branch along φ_f is the sign of φ_fᵀx − midpoint_f
    Lambda: np.ndarray  # (F,) data variance along φ_f (Biroli's Λ for t_S = ½ log Λ)
    names: tuple[str, ...]
    #: (F,) m_f: branches at midpoint ± m_f (eq. 34); 0 where not bimodal or not known
    half_separation: np.ndarray | None = None
    #: "factor", or "low"/"high" (inside / outside P's row space, eq. 71–72)
    band: tuple[str, ...] | None = None
    #: (F,) spectral centroid, cycles per pixel (global → local); NaN where not computed
    centroid: np.ndarray | None = None

    def __post_init__(self) -> None:
        F = int(np.shape(self.phi)[0])
        if self.half_separation is None:  # no branch separation known: the gate is undefined along φ_f
            object.__setattr__(self, "half_separation", np.zeros(F))
        if self.band is None:
            object.__setattr__(self, "band", ("factor",) * F)
        if self.centroid is None:
            object.__setattr__(self, "centroid", np.full(F, np.nan))

    @property
    def num(self) -> int:
        return int(self.phi.shape[0])

    def project(self, x: np.ndarray) -> np.ndarray:
        """φ_fᵀx − midpoint_f for samples x (..., C, H, W), (..., F)."""
        flat = np.asarray(x, dtype=np.float64).reshape(*np.shape(x)[:-3], -1)
        return flat @ self.phi.T - self.midpoint

    def sides(self, x: np.ndarray) -> np.ndarray:
        """Branch of samples x (..., C, H, W) along each φ_f: sign(φ_fᵀx − midpoint_f), (..., F)."""
        return np.sign(self.project(x))

    def symmetric(self, x: np.ndarray, alpha: float) -> np.ndarray:
        """x (n, d) moved onto every branch's decision boundary at signal scale α: φ_fᵀx = α·midpoint_f."""
        y = x @ self.phi.T  # (n, F)
        return x - (y - alpha * self.midpoint) @ self.phi


def dataset_of(bundle: DiTBundle) -> Literal["mixture", "digits", "other"]:
    """Which testbed data a bundle was trained on, from its feature encoder (testbed checkpoints)."""
    return {"mixture-factors": "mixture", "digits-cnn": "digits"}.get(bundle.encoder, "other")  # type: ignore[return-value]


def lowpass_basis(shape: tuple[int, int, int], pool: int) -> np.ndarray:
    """Orthonormal rows (k, d) spanning the row space of Protocol I's pooling P (eq. 71) on images ``shape``.

    P is linear, so its row space is read off P applied to the standard basis; the coarse discrepancy d_low
    sees exactly the part of a difference inside it, d_high (eq. 72) the rest.
    """
    d = int(np.prod(shape))
    eye = torch.eye(d, dtype=torch.float64).view(d, *shape)
    P = lowpass(eye, pool).reshape(d, -1).numpy().T  # (C·pool², d): row i = P's i-th output as a functional
    u, sv, vt = np.linalg.svd(P, full_matrices=False)
    return vt[sv > sv.max() * 1e-10]


def spectral_centroid(phi: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Power-weighted mean radial spatial frequency (cycles per pixel) of each row of ``phi`` (F, d)."""
    C, H, W = shape
    img = np.asarray(phi, dtype=np.float64).reshape(-1, C, H, W)
    power = (np.abs(np.fft.fft2(img)) ** 2).sum(axis=1)  # (F, H, W), channels pooled
    fy, fx = np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij")
    radius = np.hypot(fy, fx)
    return (power * radius).sum(axis=(1, 2)) / power.sum(axis=(1, 2))


def _top_directions(diff: np.ndarray, k: int) -> np.ndarray:
    """Top-k right singular vectors of the rows of ``diff`` (n, d), (k, d); largest entry made positive."""
    _, _, vt = np.linalg.svd(diff, full_matrices=False)
    top = vt[:k]
    signs = np.sign(top[np.arange(top.shape[0]), np.argmax(np.abs(top), axis=1)])
    return top * signs[:, None]


def band_directions(
    xA: np.ndarray, xB: np.ndarray, shape: tuple[int, int, int], num: int, pool: int | None = None
) -> BranchDirections:
    """Band-ordered branch directions from clone-pair endpoints xA, xB (n, d) (see the module docstring).

    ⌈num/2⌉ leading principal directions of the endpoint differences inside P's row space (low band) and
    ⌊num/2⌋ inside its complement (high band), ordered by spectral centroid. Midpoint, half separation m_f
    (0 where the endpoints are not bimodal along φ_f by the likelihood-ratio test of eq. 34's fit) and Λ_f
    from the 2n endpoints.
    """
    check_positive_int("num", num)
    xA, xB = np.asarray(xA, dtype=np.float64), np.asarray(xB, dtype=np.float64)
    if xA.shape != xB.shape or xA.ndim != 2 or xA.shape[1] != int(np.prod(shape)):
        raise ValueError(f"xA and xB must both be (n, {int(np.prod(shape))}), got {xA.shape} and {xB.shape}")
    Q = lowpass_basis(shape, default_pool(shape[-1]) if pool is None else pool)  # (k, d)
    n_low = min((num + 1) // 2, Q.shape[0])
    n_high = min(num - n_low, xA.shape[1] - Q.shape[0])
    diff = xA - xB
    low = _top_directions(diff @ Q.T, n_low) @ Q  # (n_low, d), inside P's row space
    high = _top_directions(diff - (diff @ Q.T) @ Q, n_high)  # inside its complement
    phi = np.concatenate([low, high])
    bands = ["low"] * n_low + ["high"] * n_high
    cen = spectral_centroid(phi, shape)
    order = np.argsort(cen, kind="stable")
    phi, cen = phi[order], cen[order]
    bands = [bands[i] for i in order]
    ends = np.concatenate([xA, xB])
    y = ends @ phi.T  # (2n, F)
    mid = y.mean(axis=0)
    fit = theory.fit_symmetric_mixture((y - mid).T)
    half = np.where(fit.bimodal, fit.m, 0.0)
    names = tuple(f"{b}-{k}" for k, b in enumerate(bands))
    return BranchDirections("bands", phi, mid, y.var(axis=0), names, half, tuple(bands), cen)


def factor_directions(num: int) -> BranchDirections:
    """The mixture testbed's factor patterns (global → local), branches at ±A_f."""
    mix = DEFAULT_MIXTURE
    phi = patterns(mix)[:num]
    F = phi.shape[0]
    amps = np.asarray(mix.amplitudes[:F], dtype=np.float64)
    shape = (mix.channels, mix.size, mix.size)
    names = ("half", "quadrant", "block4", "checker")[:F]
    return BranchDirections(
        "factors",
        phi,
        np.zeros(F),
        amps**2 + mix.s**2,
        names,
        amps,
        ("factor",) * F,
        spectral_centroid(phi, shape),
    )


def clone_endpoints(
    bundle: DiTBundle, num_pairs: int, *, num_steps: int, class_label: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints (xA, xB), each (num_pairs, d) float64, of clone pairs split at step 0 at g = 0 (the model's
    own samples: each row is an independent draw of the sampler; the two of a pair share z_T only)."""
    check_positive_int("num_pairs", num_pairs, minimum=2)
    pairs = sample_clones(
        bundle, list(range(seed, seed + num_pairs)), [0], num_steps=num_steps, class_label=class_label
    )[0]
    xA, xB = (z.double().reshape(z.shape[0], -1).cpu().numpy() for z in pairs)
    return xA, xB


def branch_directions(
    bundle: DiTBundle,
    num: int = 4,
    *,
    endpoints: tuple[np.ndarray, np.ndarray] | None = None,
    num_steps: int = 50,
    clone_pairs: int = GATE_SAMPLES // 2,
    class_label: int = 0,
    seed: int = 0,
) -> BranchDirections:
    """The model's branch directions (see the module docstring); ``num`` directions at most.

    ``endpoints``: clone-pair endpoints of :func:`clone_endpoints` to find band directions from (sampled
    here with ``clone_pairs``, ``num_steps``, ``class_label``, ``seed`` when not given); unused for the
    mixture testbed, whose factors are known.
    """
    if dataset_of(bundle) == "mixture":
        return factor_directions(num)
    if endpoints is None:
        endpoints = clone_endpoints(
            bundle, clone_pairs, num_steps=num_steps, class_label=class_label, seed=seed
        )
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    return band_directions(*endpoints, shape, num)


def midpoint_fraction(x: np.ndarray, directions: BranchDirections) -> np.ndarray:
    """Branch-validity statistic (F,): the fraction of samples x (n, d) with |φ_fᵀx − midpoint_f| < m_f/2.

    NaN where m_f = 0 (no branches along φ_f to be near the midpoint of: not learned either way).
    """
    y = np.asarray(x, dtype=np.float64).reshape(np.shape(x)[0], -1) @ directions.phi.T - directions.midpoint
    half = directions.half_separation
    with np.errstate(invalid="ignore"):
        frac = np.mean(np.abs(y) < half / 2, axis=0)
    return np.where(half > 0, frac, np.nan)


def directions_of(arrays: dict[str, np.ndarray]) -> BranchDirections:
    """The branch directions stored in a ``compare`` result file's arrays."""
    return BranchDirections(
        str(arrays["direction_source"]),  # type: ignore[arg-type]
        arrays["phi"],
        arrays["midpoint"],
        arrays["Lambda"],
        tuple(str(n) for n in arrays["factor_names"]),
        arrays["half_separation"],
        tuple(str(b) for b in arrays["direction_band"]),
        arrays["centroid"],
    )


def to_tensor(directions: BranchDirections, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """φ as (F, C, H, W) float64 on ``device``."""
    return torch.as_tensor(directions.phi, dtype=torch.float64, device=device).view(directions.num, *shape)


def branch_validity(
    bundle: DiTBundle,
    num: int = 4,
    *,
    num_steps: int = 50,
    clone_pairs: int = GATE_SAMPLES // 2,
    class_label: int = 0,
    seed: int = 0,
) -> dict[str, dict[str, float | bool]]:
    """The gate of every branch direction of a model, for a checkpoint's ``training_record.json``:
    {name: {"branch_midpoint_fraction", "half_separation", "learned"}} from the model's own samples (the
    compare stage's convention: clone pairs split at step 0, g = 0, DDIM η = 1, ``num_steps`` steps)."""
    ends = clone_endpoints(bundle, clone_pairs, num_steps=num_steps, class_label=class_label, seed=seed)
    d = branch_directions(bundle, num, endpoints=ends)
    frac = midpoint_fraction(np.concatenate(ends), d)
    ok = learned(frac)
    return {
        name: {
            # NaN (no bimodal branches) is written as null: JSON has no NaN
            "branch_midpoint_fraction": None if not np.isfinite(frac[f]) else float(frac[f]),
            "half_separation": float(d.half_separation[f]),
            "learned": bool(ok[f]),
        }
        for f, name in enumerate(d.names)
    }


#: The gate's settings in a training record: the compare stage's quick grid and its seed for the gate.
GATE_STEPS = 50
GATE_SEED = 20_000


def checkpoint_gate(path: str | Path, clone_pairs: int = GATE_SAMPLES // 2) -> dict:
    """The branch-validity gate of a saved checkpoint (:func:`branch_validity`) at the compare stage's quick
    settings: every branch direction's midpoint fraction from 2·``clone_pairs`` (512) of the model's own
    samples, and whether it is learned. Stored in ``training_record.json`` beside the held-out loss, which
    cannot see a branch (a network that is linear along one direction loses only 1/d of the ε-MSE)."""
    from .models import load_checkpoint

    bundle = load_checkpoint(path)
    label = bundle.null_class if bundle.num_classes > 1 else 0  # the compare stage's generation class
    return {
        "settings": {
            "num_steps": GATE_STEPS,
            "samples": 2 * clone_pairs,
            "seed": GATE_SEED,
            "g": 0.0,
            "class_label": label,
        },
        "directions": branch_validity(
            bundle, num_steps=GATE_STEPS, clone_pairs=clone_pairs, class_label=label, seed=GATE_SEED
        ),
    }
