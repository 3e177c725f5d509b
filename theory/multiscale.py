"""Exact multi-scale mixture images: sampling, time-t score, per-factor speciation, exact-score sampler.

The testbed data. An image x ∈ R^{C×H×W} (flattened to R^d) is

    x = Σ_f a_f A_f φ_f + s ξ,     a_f ∈ {±1} independent and fair,  ξ ~ N(0, I_d),

with F orthonormal patterns φ_f of increasing spatial frequency (half-image split, quadrants, 4×4-block
checkerboard, 1-pixel checkerboard) and decreasing amplitudes A_f. Under the DDPM forward process
x_t = α_t x + σ_t ε (α_t² = ᾱ_t, σ_t² = 1 − ᾱ_t) the projections y_f = ⟨x_t, φ_f⟩ are independent symmetric
two-Gaussian mixtures ½N(+α_t A_f, v_t) + ½N(−α_t A_f, v_t) with v_t = α_t² s² + σ_t², and the orthogonal
complement is N(0, v_t I). Hence the exact time-t score is the paper's eq. (35) once per factor,

    ∇ log p_t(x) = −x / v_t + Σ_f (α_t A_f / v_t) tanh(α_t A_f y_f / v_t) φ_f,          # eq. (35), C = v_t I

and each factor has its own speciation time: the scalar self-consistency u = κ_f tanh u of eq. (49) with
the γ → ∞ limit of eq. (50), κ_f(t) = m_f² / c_f = α_t² A_f² / v_t, crosses 1 where the time-t marginal
along φ_f turns bimodal:

    κ_f(t*) = 1  ⇔  ᾱ_{t*} (A_f² − s²) = 1 − ᾱ_{t*}  ⇔  ᾱ_{t*} = 1 / (1 + A_f² − s²)            (exact)

Biroli et al. (2024) state the speciation time of a Gaussian mixture through the top covariance eigenvalue
Λ = A_f² + s² of the data along φ_f, e^{−2 t_S} Λ = 1 for the OU clock, i.e. ᾱ_{t_S} = 1 / (A_f² + s²);
both agree to O(1/A_f²) relative, and `speciation_alpha_bar(..., criterion="biroli")` returns the latter.
All arithmetic is float64 numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .schedules import DDPMSchedule, ddim_step, sampling_timesteps
from .streams import numpy_normal
from .validation import as_float_array, check_positive_int, check_range

__all__ = [
    "MultiscaleMixture",
    "DEFAULT_MIXTURE",
    "patterns",
    "sample_mixture",
    "factor_projections",
    "mixture_log_density",
    "mixture_score",
    "mixture_eps",
    "speciation_alpha_bar",
    "clone_experiment",
    "clone_agreement",
    "exact_clone_agreement",
]

PatternName = Literal["half", "quadrant", "block4", "checker"]
#: Patterns from global to local; the first F are used for F factors.
PATTERN_ORDER: tuple[PatternName, ...] = ("half", "quadrant", "block4", "checker")


@dataclass(frozen=True)
class MultiscaleMixture:
    """Parameters of the multi-scale sign mixture.

    amplitudes: A_f, one per factor, strictly decreasing (global factors carry more energy, as in natural
        images); the default spreads the exact speciation times ᾱ* = 1/(1 + A² − s²) over ≈ 0.01 … 0.4 of
        the DiT DDPM schedule, i.e. from early to late in the reverse process.
    s: isotropic pixel-noise standard deviation.
    size: image side H = W; channels C = 1.
    """

    amplitudes: tuple[float, ...] = (10.0, 4.5, 2.2, 1.2)
    s: float = 0.25
    size: int = 16
    channels: int = 1

    def __post_init__(self) -> None:
        amps = as_float_array("amplitudes", self.amplitudes)
        if amps.ndim != 1 or not 2 <= amps.size <= len(PATTERN_ORDER):
            raise ValueError(f"amplitudes must hold between 2 and {len(PATTERN_ORDER)} values, got {amps}")
        check_range("amplitudes", amps, 0.0, None, lo_open=True)
        check_range("s", self.s, 0.0, None, lo_open=True)
        check_positive_int("size", self.size, minimum=8)
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8 (4x4-block checkerboard), got {self.size}")
        if self.channels != 1:
            raise ValueError(f"channels must be 1, got {self.channels}")

    @property
    def num_factors(self) -> int:
        return len(self.amplitudes)

    @property
    def dim(self) -> int:
        return self.channels * self.size * self.size


#: The testbed's preset (shipped `mixture` checkpoint is trained on it).
DEFAULT_MIXTURE = MultiscaleMixture()


def patterns(mix: MultiscaleMixture) -> np.ndarray:
    """Orthonormal patterns φ_f, shape (F, d), global → local.

    half: sign of the column half; quadrant: product of row-half and column-half signs; block4:
    checkerboard of 4 × 4 blocks (each size/4 pixels wide); checker: (−1)^{i+j}. Any two differ in a
    sign factor whose sum over the image vanishes, so they are exactly orthogonal.
    """
    n = mix.size
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    row_half = np.where(i < n // 2, 1.0, -1.0)
    col_half = np.where(j < n // 2, 1.0, -1.0)
    blk = n // 4
    table = {
        "half": col_half,
        "quadrant": row_half * col_half,
        "block4": (-1.0) ** (i // blk + j // blk),
        "checker": (-1.0) ** (i + j),
    }
    phi = np.stack([table[name].ravel() for name in PATTERN_ORDER[: mix.num_factors]])  # (F, d)
    return phi / np.sqrt(n * n)


def sample_mixture(mix: MultiscaleMixture, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw n images and their factor signs: (x (n, C, H, W) float64, a (n, F) in {±1})."""
    check_positive_int("n", n)
    phi = patterns(mix)  # (F, d)
    a = rng.choice(np.array([-1.0, 1.0]), size=(n, mix.num_factors))  # (n, F)
    xi = rng.standard_normal((n, mix.dim))  # (n, d)
    x = (a * np.asarray(mix.amplitudes)) @ phi + mix.s * xi  # (n, d)
    return x.reshape(n, mix.channels, mix.size, mix.size), a


def factor_projections(mix: MultiscaleMixture, x: np.ndarray) -> np.ndarray:
    """y_f = ⟨x, φ_f⟩ for images x (..., C, H, W) → (..., F): the sufficient statistics of the signs."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(*x.shape[:-3], mix.dim)
    return flat @ patterns(mix).T


def _moments(mix: MultiscaleMixture, alpha_bar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(α_t, v_t = α_t² s² + σ_t²) broadcast over alpha_bar."""
    ab = as_float_array("alpha_bar", alpha_bar)
    check_range("alpha_bar", ab, 0.0, 1.0, lo_open=True)
    return np.sqrt(ab), ab * mix.s**2 + (1.0 - ab)


def mixture_log_density(mix: MultiscaleMixture, x: np.ndarray, alpha_bar: float) -> np.ndarray:
    """Exact log p_t(x) of the noised mixture at ᾱ_t; x (..., C, H, W) → (...)."""
    x = np.asarray(x, dtype=np.float64)
    alpha, v = _moments(mix, alpha_bar)
    flat = x.reshape(*x.shape[:-3], mix.dim)
    y = flat @ patterns(mix).T  # (..., F)
    m = alpha * np.asarray(mix.amplitudes)  # (F,) branch separation m_f = α A_f
    gauss = -0.5 * np.sum(flat**2, axis=-1) / v - 0.5 * mix.dim * np.log(2 * np.pi * v)
    # log[½ e^{−(y−m)²/2v} + ½ e^{−(y+m)²/2v}] − log N(y; 0, v) = −m²/2v + log cosh(m y / v)
    z = m * y / v
    logcosh = np.abs(z) + np.log1p(np.exp(-2.0 * np.abs(z))) - np.log(2.0)
    return gauss + np.sum(-0.5 * m**2 / v + logcosh, axis=-1)


def mixture_score(mix: MultiscaleMixture, x: np.ndarray, alpha_bar: float) -> np.ndarray:
    """Exact ∇_x log p_t(x), eq. (35) per factor with C = v_t I and m = α_t A_f φ_f; same shape as x."""
    x = np.asarray(x, dtype=np.float64)
    alpha, v = _moments(mix, alpha_bar)
    phi = patterns(mix)  # (F, d)
    flat = x.reshape(*x.shape[:-3], mix.dim)
    m = alpha * np.asarray(mix.amplitudes)  # (F,)
    y = flat @ phi.T  # (..., F)
    score = -flat / v + ((m / v) * np.tanh(m * y / v)) @ phi  # eq. (35)
    return score.reshape(x.shape)


def mixture_eps(mix: MultiscaleMixture, x: np.ndarray, alpha_bar: float) -> np.ndarray:
    """Bayes-optimal ε-prediction E[ε | x_t] = −σ_t ∇ log p_t(x_t) (Tweedie)."""
    return -np.sqrt(1.0 - float(alpha_bar)) * mixture_score(mix, x, alpha_bar)


def speciation_alpha_bar(
    mix: MultiscaleMixture, criterion: Literal["exact", "biroli"] = "exact"
) -> np.ndarray:
    """ᾱ at which each factor speciates, shape (F,).

    exact: κ_f = α² A_f² / (α² s² + σ²) = 1 (eq. 49–50 with γ → ∞; the 1-D marginal turns bimodal),
    ᾱ* = 1/(1 + A_f² − s²); NaN where A_f ≤ s (the factor never speciates).
    biroli: ᾱ* = 1/(A_f² + s²) (Biroli et al. 2024, top covariance eigenvalue Λ = A_f² + s²).
    """
    amps = np.asarray(mix.amplitudes, dtype=np.float64)
    if criterion == "exact":
        gap = amps**2 - mix.s**2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gap > 0, 1.0 / (1.0 + gap), np.nan)
    if criterion == "biroli":
        return np.minimum(1.0 / (amps**2 + mix.s**2), 1.0)
    raise ValueError(f"criterion must be 'exact' or 'biroli', got {criterion!r}")


# ----------------------------------------------------------------------------------------------------------
# Sampling with any ε-predictor (the exact one above, or a trained DiT wrapped to numpy) on DiT's time axis.

EpsFn = Callable[[np.ndarray, int], np.ndarray]


def _noise(seed: int, m: int, s: int, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Per-(seed, sample, step key, stream) normal draw, so results never depend on the batch layout.

    Step key 0 is x_T; key s + 1 is the noise of reverse step s."""
    return numpy_normal((seed, m, s, stream), shape)


def clone_experiment(
    eps_fn: EpsFn,
    shape: tuple[int, ...],
    num_steps: int,
    t_int: Sequence[int],
    num_seeds: int,
    seed: int = 0,
    ddim_eta: float = 1.0,
    alphas_cumprod: np.ndarray | None = None,
) -> np.ndarray:
    """g = 0 shared-noise clone experiment: final pairs (T, 2, M, *shape) float64.

    For each of M seeds one trajectory is sampled from x_T ~ N(0, I) with shared noise; at step t_int (the
    state x_{t_s} before reverse step s = t_int) it is cloned into replicas A and B that finish the
    remaining steps with independent noise (stream 1 and 2). t_int = 0 splits at pure noise, t_int = S
    returns identical copies. eps_fn(x (B, *shape) float64, t int) → ε̂ (B, *shape). ``ddim_eta`` is the DDIM
    noise parameter (of :func:`theory.schedules.ddim_step`), not the block gain η_k of eq. (46);
    ``alphas_cumprod`` defaults to DiT's ``DDPMSchedule().alphas_cumprod``; trailing timesteps
    (:func:`theory.schedules.sampling_timesteps`), the last step lands on ᾱ = 1.
    """
    ab = (
        DDPMSchedule().alphas_cumprod
        if alphas_cumprod is None
        else np.asarray(alphas_cumprod, dtype=np.float64)
    )
    ts = sampling_timesteps(DDPMSchedule(num_train_timesteps=ab.size), num_steps)  # trailing
    check_positive_int("num_seeds", num_seeds)
    t_int = [int(v) for v in t_int]
    if any(v < 0 or v > num_steps for v in t_int):
        raise ValueError(f"t_int must lie in [0, {num_steps}], got {t_int}")

    def ab_prev(s: int) -> float:
        return float(ab[ts[s + 1]]) if s + 1 < num_steps else 1.0  # final step lands on ᾱ = 1

    M = num_seeds
    x = np.stack([_noise(seed, m, 0, 0, shape) for m in range(M)])  # (M, *shape) x_T
    states = [x]
    for s in range(num_steps):  # shared trajectory
        z = np.stack([_noise(seed, m, s + 1, 0, shape) for m in range(M)])
        x = ddim_step(x, eps_fn(x, int(ts[s])), float(ab[ts[s]]), ab_prev(s), ddim_eta, z)
        states.append(x)
    out = np.empty((len(t_int), 2, M, *shape))
    for i, s0 in enumerate(t_int):
        pair = np.concatenate([states[s0], states[s0]])  # (2M, *shape) replicas A then B
        for s in range(s0, num_steps):
            z = np.stack([_noise(seed, m, s + 1, r, shape) for r in (1, 2) for m in range(M)])
            pair = ddim_step(pair, eps_fn(pair, int(ts[s])), float(ab[ts[s]]), ab_prev(s), ddim_eta, z)
        out[i] = pair.reshape(2, M, *shape)
    return out


def clone_agreement(mix: MultiscaleMixture, pairs: np.ndarray) -> np.ndarray:
    """Per-factor sign agreement of ⟨x^A, φ_f⟩, ⟨x^B, φ_f⟩: pairs (T, 2, M, C, H, W) → (F, T, M) in {0, 1}."""
    y = factor_projections(mix, pairs)  # (T, 2, M, F)
    agree = (np.sign(y[:, 0]) == np.sign(y[:, 1])).astype(np.float64)  # (T, M, F)
    return np.moveaxis(agree, -1, 0)


def exact_clone_agreement(mix: MultiscaleMixture, alpha_bar: np.ndarray, order: int = 80) -> np.ndarray:
    """Closed-form clone agreement of an exact posterior sampler split at ᾱ: (F, len(alpha_bar)).

    Split at time t, each replica's sign is an independent posterior draw with P(a_f = +1 | y_f) =
    σ(2 m_f y_f / v_t) (m_f = α_t A_f), so P(agree) = E_{y ~ p_t}[p² + (1 − p)²]; by symmetry y ~ N(m_f, v_t).
    Gauss–Hermite quadrature of `order` nodes (error ≪ 1e-10 for the default amplitudes).
    """
    ab = np.atleast_1d(as_float_array("alpha_bar", alpha_bar))
    alpha, v = _moments(mix, ab)  # (T,)
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)  # ∫ f(z) e^{−z²/2} dz
    weights = weights / np.sqrt(2 * np.pi)
    m = alpha[None, :] * np.asarray(mix.amplitudes)[:, None]  # (F, T)
    y = m[..., None] + np.sqrt(v)[None, :, None] * nodes  # (F, T, Q)
    p = 0.5 * (1 + np.tanh(m[..., None] * y / v[None, :, None]))  # σ(2 m y / v)
    return np.sum(weights * (p**2 + (1 - p) ** 2), axis=-1)
