"""Branch directions φ_f of a model's samples, their midpoints and the data variance Λ_f along them.

The comparison predicts and measures speciation *along directions that separate the data's branches*:
§2.5 makes the alignment of the modes with the branch separation m a precondition of the single-mode
projection (eq. 45). Three sources, by what is known about the model's data:

* ``factors`` — the multi-scale mixture testbed: φ_f are its factor patterns (global → local), the
  branches of factor f lie at ±A_f on either side of 0, and Λ_f = A_f² + s² (the data covariance
  eigenvalue along φ_f, Biroli et al. 2024).
* ``class-means`` — a labelled data set (digits): the leading principal directions of the centred class
  means; the midpoint is the data mean's projection and Λ_f the data variance along φ_f.
* ``clone-endpoints`` — any other model (random weights, DiT-XL/2): the leading principal directions of
  the endpoint differences x^A − x^B of clone pairs split at step 0 (one shared start, independent
  DDPM continuations), i.e. the directions along which the model's own samples branch; midpoint and Λ_f
  from the endpoints.

Directions live in the sampler's space (C·H·W: pixels for the testbed, latents for DiT-XL/2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from theory.multiscale import DEFAULT_MIXTURE, patterns

from .clone_sampler import sample_clones
from .models import DiTBundle

__all__ = ["BranchDirections", "branch_directions", "dataset_of"]

Source = Literal["factors", "class-means", "clone-endpoints"]


@dataclass(frozen=True)
class BranchDirections:
    """F unit directions in sample space with the midpoint between their branches and Λ_f."""

    source: Source
    phi: np.ndarray  # (F, d) orthonormal rows, d = C·H·W
    midpoint: np.ndarray  # (F,) φ_fᵀμ: a sample's branch along φ_f is the sign of φ_fᵀx − midpoint_f
    Lambda: np.ndarray  # (F,) data variance along φ_f (Biroli's Λ for t_S = ½ log Λ)
    names: tuple[str, ...]

    @property
    def num(self) -> int:
        return int(self.phi.shape[0])

    def sides(self, x: np.ndarray) -> np.ndarray:
        """Branch of samples x (..., C, H, W) along each φ_f: sign(φ_fᵀx − midpoint_f), (..., F)."""
        flat = np.asarray(x, dtype=np.float64).reshape(*np.shape(x)[:-3], -1)
        return np.sign(flat @ self.phi.T - self.midpoint)

    def symmetric(self, x: np.ndarray, alpha: float) -> np.ndarray:
        """x (n, d) moved onto every branch's decision boundary at signal scale α: φ_fᵀx = α·midpoint_f."""
        y = x @ self.phi.T  # (n, F)
        return x - (y - alpha * self.midpoint) @ self.phi


def dataset_of(bundle: DiTBundle) -> Literal["mixture", "digits", "other"]:
    """Which testbed data a bundle was trained on, from its feature encoder (testbed checkpoints)."""
    return {"mixture-factors": "mixture", "digits-cnn": "digits"}.get(bundle.encoder, "other")  # type: ignore[return-value]


def _orthonormal_top(vectors: np.ndarray, k: int) -> np.ndarray:
    """Top-k right singular vectors of the rows of ``vectors`` (n, d), (k, d); largest entry made positive."""
    _, _, vt = np.linalg.svd(vectors, full_matrices=False)
    top = vt[:k]
    signs = np.sign(top[np.arange(top.shape[0]), np.argmax(np.abs(top), axis=1)])
    return top * signs[:, None]


def branch_directions(
    bundle: DiTBundle,
    num: int = 4,
    *,
    num_steps: int = 50,
    clone_pairs: int = 256,
    class_label: int = 0,
    seed: int = 0,
) -> BranchDirections:
    """The model's branch directions (see the module docstring); ``num`` directions at most."""
    dataset = dataset_of(bundle)
    if dataset == "mixture":
        mix = DEFAULT_MIXTURE
        phi = patterns(mix)[:num]
        amps = np.asarray(mix.amplitudes[: phi.shape[0]], dtype=np.float64)
        names = ("half", "quadrant", "block4", "checker")[: phi.shape[0]]
        return BranchDirections("factors", phi, np.zeros(phi.shape[0]), amps**2 + mix.s**2, names)
    if dataset == "digits":
        from .testbed.data import digits_split

        train = digits_split()[0]
        x = train.x.double().reshape(train.x.shape[0], -1).numpy()
        labels = train.labels.numpy()
        mu = x.mean(axis=0)
        means = np.stack([x[labels == c].mean(axis=0) for c in np.unique(labels)]) - mu
        phi = _orthonormal_top(means, min(num, means.shape[0] - 1))
        var = np.var((x - mu) @ phi.T, axis=0)
        names = tuple(f"class-PC{f}" for f in range(phi.shape[0]))
        return BranchDirections("class-means", phi, phi @ mu, var, names)
    # any other model: where its own clone pairs split
    pairs = sample_clones(
        bundle, list(range(seed, seed + clone_pairs)), [0], num_steps=num_steps, class_label=class_label
    )[0]
    xA, xB = (z.double().reshape(z.shape[0], -1).cpu().numpy() for z in pairs)
    phi = _orthonormal_top(xA - xB, min(num, xA.shape[0] - 1))
    ends = np.concatenate([xA, xB])
    mu = ends.mean(axis=0)
    var = np.var((ends - mu) @ phi.T, axis=0)
    names = tuple(f"clone-PC{f}" for f in range(phi.shape[0]))
    return BranchDirections("clone-endpoints", phi, phi @ mu, var, names)


def to_tensor(directions: BranchDirections, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """φ as (F, C, H, W) float64 on ``device``."""
    return torch.as_tensor(directions.phi, dtype=torch.float64, device=device).view(directions.num, *shape)
