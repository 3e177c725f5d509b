"""Appendix B: exact softmax identities and the routing-dominance bounds, eq. (85)–(106).

Every function takes numpy arrays with optional leading batch/head axes,
A0: (..., N, N) row-stochastic, dS: (..., N, N) logit perturbation, V0, dV: (..., N, d),
computes in float64 and returns BOTH sides of the statement so that ``dit_validation`` can
report "measured vs Appendix B" per DiT layer and head:

* identities -> :class:`IdentityCheck` (lhs, rhs) with ``max_abs_error``;
* bounds     -> :class:`BoundCheck` (value, bound, kind) with ``holds`` and ``ratio``.

Norms. ‖X‖ on token-space matrices is the Frobenius norm (the paper's derivation of (99)
sums squared row norms, which is exactly Frobenius); ‖δS‖_max is the largest absolute entry;
λ⊥ = ‖A0 P⊥‖₂ is the spectral norm (operator norm that makes (103) -> (104) valid with
Frobenius norms on δV, because ‖M X‖_F ≤ ‖M‖₂ ‖X‖_F).

Findings while checking the statements (tested in tests/test_appendix_b.py):

* (99) is valid as written with Frobenius norms: summing (98) over the N rows gives
  ‖δA V0‖_F² ≤ Σ_i 4‖δS_i‖∞²/N_eff^(i) ‖P⊥V0‖_F² ≤ 4N‖δS‖²_max/N_eff^min ‖P⊥V0‖_F².
  It also holds with spectral norms on both sides (‖δA P⊥V0‖₂ ≤ ‖δA‖₂‖P⊥V0‖₂ and
  ‖δA‖₂ ≤ ‖δA‖_F ≤ 2√(N/N_eff^min)‖δS‖_max); we implement the Frobenius version.
* The prefactor √N/√N_eff^min is ≥ 1 for every A0 (N_eff ≤ N), so the bound itself offers no
  N_eff^{-1/2} suppression at N = 1024 as the text after (106) suggests: the √N from summing
  rows cancels it exactly for diffuse attention. Nor is the bound loose there: the realizable
  head of :func:`adversarial_head_eq99` (zero queries, keys ε_j e₁, δq = e₁) has uniform
  attention, N_eff = N, and ‖δA V0‖_F = ‖δS‖_max‖P⊥V0‖_F at every N, half the bound (99).
  The N^{-1/2} fall is a property of typical random perturbations only (:func:`eq99_scaling`;
  docs/FINDINGS.md, finding 1). The suppression in (105) comes only from ‖δS‖_max, ε_V0 and
  ‖P0V0‖/‖P0δV‖.
* (104)/(105) need 1 − λ⊥ ε_δV > 0; otherwise (104) is vacuous (a non-positive lower bound)
  and we return ``bound = inf`` for (105). λ⊥ may exceed 1 (a row-stochastic A0 has
  spectral norm up to √N), so the condition is not automatic even when ε_δV < 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .streams import numpy_generator
from .validation import as_float_array, check_positive_int

__all__ = [
    "BoundCheck",
    "IdentityCheck",
    "DominanceReport",
    "projectors",
    "softmax_jacobian",
    "delta_A",
    "n_eff",
    "coherence",
    "lambda_perp",
    "identity_eq89",
    "identity_eq90",
    "identity_eq91",
    "identity_A0P0",
    "bound_eq95",
    "bound_eq97",
    "bound_eq98",
    "bound_eq99",
    "eq99_normalized",
    "adversarial_head_eq99",
    "Eq99Scaling",
    "eq99_scaling",
    "bound_eq104",
    "bound_eq105",
    "dominance_report",
]

# Slack for round-off when a bound is attained (e.g. 0 = 0 or a one-hot row): relative to
# the bound's magnitude, far below any physically meaningful violation.
BOUND_RTOL = 1e-12


@dataclass(frozen=True, eq=False)
class BoundCheck:
    """Both sides of an inequality: ``value ≤ bound`` (kind "upper") or ``value ≥ bound`` ("lower")."""

    value: np.ndarray
    bound: np.ndarray
    kind: Literal["upper", "lower"] = "upper"

    @property
    def holds(self) -> np.ndarray:
        """Elementwise truth of the inequality, with a relative round-off slack BOUND_RTOL."""
        slack = BOUND_RTOL * np.abs(self.bound) + 1e-300
        with np.errstate(invalid="ignore"):
            if self.kind == "upper":
                return np.asarray(self.value <= self.bound + slack)
            return np.asarray(self.value >= self.bound - slack)

    @property
    def all_hold(self) -> bool:
        return bool(np.all(self.holds))

    @property
    def ratio(self) -> np.ndarray:
        """value / bound (≤ 1 means an upper bound holds); 0/0 -> 0, x/inf -> 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.asarray(self.value / self.bound, dtype=np.float64)
        return np.where((self.value == 0) & (self.bound == 0), 0.0, r)


@dataclass(frozen=True, eq=False)
class IdentityCheck:
    """Both sides of an exact identity lhs = rhs."""

    lhs: np.ndarray
    rhs: np.ndarray

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.lhs - self.rhs), initial=0.0))


# Attention captured from a DiT in float32/bfloat16 sums to 1 per row only to ~1e-7/1e-3; rows
# within this tolerance are renormalized in float64 so that (89)-(91) hold to float64 round-off.
ROW_SUM_ATOL = 1e-3


def _A0(A0: Any) -> np.ndarray:
    A = as_float_array("A0", A0)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A0 must have shape (..., N, N), got {A.shape}")
    rows = A.sum(-1, keepdims=True)
    if np.any(A < 0) or np.max(np.abs(rows - 1.0)) > ROW_SUM_ATOL:
        raise ValueError(
            "A0 must be row-stochastic (nonnegative, rows summing to 1 within "
            f"{ROW_SUM_ATOL:g}), eq. (18); got min entry {A.min():.3g}, "
            f"max |row sum - 1| = {np.max(np.abs(rows - 1.0)):.3g}"
        )
    return A / rows


def _tokens(name: str, X: Any, N: int) -> np.ndarray:
    arr = as_float_array(name, X)
    if arr.ndim < 2 or arr.shape[-2] != N:
        raise ValueError(f"{name} must have shape (..., N={N}, d), got {arr.shape}")
    return arr


def _dS(dS: Any, A0: np.ndarray) -> np.ndarray:
    arr = as_float_array("dS", dS)
    if arr.shape[-2:] != A0.shape[-2:]:
        raise ValueError(f"dS must have shape (..., N, N) like A0 {A0.shape}, got {arr.shape}")
    return arr


def _fro(X: np.ndarray) -> np.ndarray:
    """Frobenius norm over the last two axes."""
    return np.sqrt(np.sum(X * X, axis=(-2, -1)))


def projectors(N: int) -> tuple[np.ndarray, np.ndarray]:
    """P0 = 11ᵀ/N onto constant tokens and P⊥ = I − P0 onto mean-free tokens, eq. (85)."""
    N = check_positive_int("N", N)
    P0 = np.full((N, N), 1.0 / N)  # eq. (85)
    return P0, np.eye(N) - P0


def _mean_free(X: np.ndarray) -> np.ndarray:
    """P⊥ X without forming P⊥ (subtract the token mean), eq. (85)–(86)."""
    return X - X.mean(axis=-2, keepdims=True)


def softmax_jacobian(A0: Any) -> np.ndarray:
    """∂A_ij/∂S_ik = A_ij(δ_jk − A_ik), eq. (87); returns (..., N, N, N) indexed [i, j, k]."""
    A = _A0(A0)
    N = A.shape[-1]
    return A[..., :, :, None] * (np.eye(N) - A[..., :, None, :])  # eq. (87)


def delta_A(A0: Any, dS: Any) -> np.ndarray:
    """First-order softmax response δA_ij = A_ij(δS_ij − Σ_k A_ik δS_ik), eq. (88)."""
    A = _A0(A0)
    D = _dS(dS, A)
    return A * (D - np.sum(A * D, axis=-1, keepdims=True))  # eq. (88)


def n_eff(A0: Any) -> np.ndarray:
    """Effective attention width per row N_eff^(i) = 1/Σ_j A_ij², eq. (92); shape (..., N)."""
    A = _A0(A0)
    return 1.0 / np.sum(A * A, axis=-1)  # eq. (92)


def coherence(X: Any, name: str = "X") -> np.ndarray:
    """Token incoherence ε = ‖P⊥X‖_F/‖P0X‖_F (ε_V0 of (100), ε_δV of (102)); inf if P0X = 0."""
    arr = as_float_array(name, X)
    num = _fro(_mean_free(arr))
    den = _fro(arr - _mean_free(arr))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))


def lambda_perp(A0: Any) -> np.ndarray:
    """λ⊥ = ‖A0 P⊥‖₂, the spectral norm of attention on mean-free tokens, eq. (103)."""
    A = _A0(A0)
    return np.linalg.svd(_mean_free(A.swapaxes(-1, -2)).swapaxes(-1, -2), compute_uv=False)[..., 0]


def identity_eq89(A0: Any, dS: Any) -> IdentityCheck:
    """δA 1 = 0: first-order rows of a softmax sum to zero, eq. (89). Shapes (..., N)."""
    dA = delta_A(A0, dS)
    s = dA.sum(axis=-1)  # eq. (89)
    return IdentityCheck(s, np.zeros_like(s))


def identity_eq90(A0: Any, dS: Any, V0: Any) -> IdentityCheck:
    """δA V0 = δA P⊥ V0: pattern modulation is blind to constant tokens, eq. (90)."""
    dA = delta_A(A0, dS)
    V = _tokens("V0", V0, dA.shape[-1])
    return IdentityCheck(dA @ V, dA @ _mean_free(V))  # eq. (90)


def identity_A0P0(A0: Any) -> IdentityCheck:
    """A0 P0 = P0 for a row-stochastic A0 (stated after eq. 89)."""
    A = _A0(A0)
    P0, _ = projectors(A.shape[-1])
    return IdentityCheck(A @ P0, np.broadcast_to(P0, A.shape))


def identity_eq91(A0: Any, dV: Any) -> IdentityCheck:
    """A0 δV = P0 δV + A0 P⊥ δV: routing preserves the constant-token part, eq. (91)."""
    A = _A0(A0)
    D = _tokens("dV", dV, A.shape[-1])
    P0D = D - _mean_free(D)
    return IdentityCheck(A @ D, P0D + A @ _mean_free(D))  # eq. (91)


def bound_eq95(A0: Any, dS: Any) -> BoundCheck:
    """|δA_ij| ≤ 2 A_ij ‖δS_i‖∞, eq. (95)–(96); value and bound are (..., N, N)."""
    A = _A0(A0)
    D = _dS(dS, A)
    row_inf = np.max(np.abs(D), axis=-1, keepdims=True)  # eq. (96)
    return BoundCheck(np.abs(delta_A(A, D)), 2.0 * A * row_inf)  # eq. (95)


def bound_eq97(A0: Any, dS: Any) -> BoundCheck:
    """Σ_j δA_ij² ≤ 4‖δS_i‖∞²/N_eff^(i), eq. (97); value and bound are (..., N)."""
    A = _A0(A0)
    D = _dS(dS, A)
    row_inf = np.max(np.abs(D), axis=-1)
    dA = delta_A(A, D)
    return BoundCheck(np.sum(dA * dA, axis=-1), 4.0 * row_inf**2 / n_eff(A))  # eq. (97)


def bound_eq98(A0: Any, dS: Any, V0: Any) -> BoundCheck:
    """‖(δA V0)_i‖² ≤ 4‖δS_i‖∞²/N_eff^(i) Σ_j ‖ε_j‖², ε = P⊥V0, eq. (98); shapes (..., N)."""
    A = _A0(A0)
    D = _dS(dS, A)
    V = _tokens("V0", V0, A.shape[-1])
    row = delta_A(A, D) @ V  # eq. (93), (..., N, d)
    eps_sq = np.sum(_mean_free(V) ** 2, axis=(-2, -1))[..., None]
    row_inf = np.max(np.abs(D), axis=-1)
    return BoundCheck(np.sum(row * row, axis=-1), 4.0 * row_inf**2 / n_eff(A) * eps_sq)  # eq. (98)


def bound_eq99(A0: Any, dS: Any, V0: Any) -> BoundCheck:
    """‖δA V0‖_F ≤ 2√N/√N_eff^min ‖δS‖_max ‖P⊥V0‖_F, eq. (99) (Frobenius norms); shape (...)."""
    A = _A0(A0)
    D = _dS(dS, A)
    V = _tokens("V0", V0, A.shape[-1])
    N = A.shape[-1]
    n_min = np.min(n_eff(A), axis=-1)
    dS_max = np.max(np.abs(D), axis=(-2, -1))
    bound = 2.0 * np.sqrt(N / n_min) * dS_max * _fro(_mean_free(V))  # eq. (99)
    return BoundCheck(_fro(delta_A(A, D) @ V), bound)


def eq99_normalized(A0: Any, dS: Any, V0: Any) -> BoundCheck:
    """(99) divided by ‖δS‖_max‖P⊥V0‖_F: ‖δA V0‖_F/(‖δS‖_max‖P⊥V0‖_F) ≤ 2√(N/N_eff^min); shape (...).

    The bound is the prefactor of (99) alone, ≥ 2 for every A0 (N_eff^min ≤ N). ``value`` is the
    pattern term per unit logit and value perturbation that the remark after (106) says falls like
    N_eff^{-1/2}; ``ratio`` is value/bound. ``value`` is 0 where δS = 0 or P⊥V0 = 0 (then δA V0 = 0).
    """
    b99 = bound_eq99(A0, dS, V0)
    A = _A0(A0)
    D = _dS(dS, A)
    scale = np.max(np.abs(D), axis=(-2, -1)) * _fro(_mean_free(_tokens("V0", V0, A.shape[-1])))
    prefactor = 2.0 * np.sqrt(A.shape[-1] / np.min(n_eff(A), axis=-1))  # eq. (99)
    return BoundCheck(_ratio(b99.value, scale), prefactor)


def adversarial_head_eq99(N: int, d: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A realizable attention head that attains (99) to within its factor 2 at every N: (A0, δS, V0).

    Zero queries Q0 = 0 (N, d) make S0 = Q0K0ᵀ/√d = 0, so A0 = 11ᵀ/N is uniform and N_eff^(i) = N
    (92): the most diffuse head, where the text after (106) expects the most suppression. Keys
    k0_j = ε_j e₁ with ε_j = (−1)^j, values V0 = K0 (W_V = W_K), and the query shift δq_i = e₁ of
    every token give δS = δQK0ᵀ/√d + Q0δKᵀ/√d with δS_ij = ε_j/√d for any δK (eq. 16, 23): every
    row moves weight towards the tokens whose value has one sign. Then, from (88),
    (δA V0)_i = ‖ε − ε̄‖²/(N√d) e₁ for every row and

        ‖δA V0‖_F / (‖δS‖_max ‖P⊥V0‖_F) = ‖ε − ε̄‖/(√N max|ε_j|) = √(1 − ε̄²),

    i.e. 1 for even N (ε̄ = 0) and √(1 − 1/N²) for odd N, against the bound 2√(N/N_eff^min) = 2.
    """
    N = check_positive_int("N", N, minimum=2)
    d = check_positive_int("d", d)
    e1 = np.zeros(d)
    e1[0] = 1.0
    eps = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)  # ε_j = (−1)^j
    Q0 = np.zeros((N, d))
    K0 = eps[:, None] * e1  # k0_j = ε_j e₁, (N, d)
    dQ = np.broadcast_to(e1, (N, d))  # δq_i = e₁
    S0 = Q0 @ K0.T / np.sqrt(d)  # eq. (16): all zero
    A0 = np.exp(S0 - S0.max(-1, keepdims=True))
    A0 = A0 / A0.sum(-1, keepdims=True)  # eq. (18): uniform rows
    dS = dQ @ K0.T / np.sqrt(d)  # eq. (23) with Q0 = 0 (the Q0δKᵀ part vanishes)
    return A0, dS, K0.copy()


@dataclass(frozen=True, eq=False)
class Eq99Scaling:
    """:func:`eq99_normalized` against N for the adversarial head and for random heads.

    ``adversarial`` has shape (n,), ``random`` (n, draws); both are :class:`BoundCheck` whose
    ``value`` is ‖δA V0‖_F/(‖δS‖_max‖P⊥V0‖_F) and ``bound`` 2√(N/N_eff^min) (= 2 here: every head
    has zero queries, hence uniform attention).
    """

    N: np.ndarray  # (n,) sequence lengths
    adversarial: BoundCheck
    random: BoundCheck

    @property
    def adversarial_slope(self) -> float:
        """Least-squares slope of log(value) against log N for the adversarial head (0: no suppression)."""
        return float(np.polyfit(np.log(self.N), np.log(self.adversarial.value), 1)[0])

    @property
    def random_slope(self) -> float:
        """Least-squares slope of log(mean value over draws) against log N for the random heads."""
        return float(np.polyfit(np.log(self.N), np.log(self.random.value.mean(axis=-1)), 1)[0])


# Sequence lengths of finding 1: 4 ... 1024, the paper's DiT-XL/2 N (text after eq. 106).
EQ99_N_GRID = (4, 8, 16, 32, 64, 128, 256, 512, 1024)


def eq99_scaling(N_values: Any = EQ99_N_GRID, *, draws: int = 16, seed: int = 0, d: int = 4) -> Eq99Scaling:
    """Normalized pattern term of (99) for N = 4 … 1024: adversarial head vs random perturbations.

    Random heads keep the same diffuse A0 (zero queries, uniform attention, N_eff = N) and draw
    keys K0, query shifts δQ and values V0 (N, d) i.i.d. standard normal from the stream
    ``(seed, N, draw)`` (:func:`theory.streams.numpy_generator`); δS = δQK0ᵀ/√d (eq. 16, 23).
    For these the normalized ratio falls like N^{-1/2} up to the √log N of ‖δS‖_max; for
    :func:`adversarial_head_eq99` it stays at 1 = bound/2 at every N.
    """
    Ns = np.asarray([check_positive_int("N", int(n), minimum=2) for n in np.atleast_1d(N_values)])
    draws = check_positive_int("draws", draws)
    d = check_positive_int("d", d)
    adv = [eq99_normalized(*adversarial_head_eq99(int(N), d)) for N in Ns]
    rnd_value = np.empty((Ns.size, draws))
    rnd_bound = np.empty((Ns.size, draws))
    for i, N in enumerate(Ns):
        for k in range(draws):
            rng = numpy_generator(seed, int(N), k)
            K0, dQ, V0 = (rng.standard_normal((N, d)) for _ in range(3))
            check = eq99_normalized(np.full((N, N), 1.0 / N), dQ @ K0.T / np.sqrt(d), V0)  # eq. (23)
            rnd_value[i, k], rnd_bound[i, k] = check.value, check.bound
    return Eq99Scaling(
        N=Ns,
        adversarial=BoundCheck(np.array([a.value for a in adv]), np.array([a.bound for a in adv])),
        random=BoundCheck(rnd_value, rnd_bound),
    )


def bound_eq104(A0: Any, dV: Any) -> BoundCheck:
    """Lower bound ‖A0 δV‖_F ≥ (1 − λ⊥ ε_δV)‖P0 δV‖_F, eq. (101)–(104) (kind "lower").

    ε_δV = ‖P⊥δV‖_F/‖P0δV‖_F (102) and λ⊥ = ‖A0P⊥‖₂ (103) are computed from the data, so
    (1 − λ⊥ε_δV)‖P0δV‖ is evaluated as ‖P0δV‖ − λ⊥‖P⊥δV‖ (no inf·0 when P0δV = 0). A
    non-positive bound is vacuous but still returned (it trivially holds).
    """
    A = _A0(A0)
    D = _tokens("dV", dV, A.shape[-1])
    Dperp = _mean_free(D)
    bound = _fro(D - Dperp) - lambda_perp(A) * _fro(Dperp)  # eq. (104)
    return BoundCheck(_fro(A @ D), bound, kind="lower")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))


def bound_eq105(A0: Any, dS: Any, V0: Any, dV: Any) -> BoundCheck:
    """Dominance ratio ‖δA V0‖/‖A0 δV‖ ≤ 2√N‖δS‖_max ε_V0 ‖P0V0‖ / (√N_eff^min (1−λ⊥ε_δV)‖P0δV‖), eq. (105).

    ε_V0‖P0V0‖ is evaluated as ‖P⊥V0‖ (same number, no inf·0). The bound is ``inf`` where
    1 − λ⊥ε_δV ≤ 0 or P0δV = 0 (the premise of (104) fails; nothing is claimed there).
    """
    A = _A0(A0)
    b99 = bound_eq99(A, dS, V0)
    b104 = bound_eq104(A, dV)
    ratio = _ratio(b99.value, b104.value)
    bound = np.where(b104.bound > 0, b99.bound / np.where(b104.bound > 0, b104.bound, 1.0), np.inf)
    return BoundCheck(ratio, bound)  # eq. (105)


@dataclass(frozen=True, eq=False)
class DominanceReport:
    """Measured pattern/routing ratio and every ingredient of eq. (105); arrays of shape (...)."""

    ratio: np.ndarray  # ‖δA V0‖_F / ‖A0 δV‖_F, measured
    bound: np.ndarray  # right-hand side of (105); inf where 1 − λ⊥ε_δV ≤ 0
    n_eff_min: np.ndarray  # min_i N_eff^(i), eq. (92)
    eps_V0: np.ndarray  # ‖P⊥V0‖/‖P0V0‖, eq. (100)
    eps_dV: np.ndarray  # ‖P⊥δV‖/‖P0δV‖, eq. (102)
    lambda_perp: np.ndarray  # ‖A0P⊥‖₂, eq. (103)
    dS_max: np.ndarray  # ‖δS‖_max

    @property
    def holds(self) -> np.ndarray:
        return BoundCheck(self.ratio, self.bound).holds


def dominance_report(A0: Any, dS: Any, V0: Any, dV: Any) -> DominanceReport:
    """Measured ‖δA V0‖/‖A0 δV‖ vs the Appendix B bound (105), with N_eff^min, ε_V0, ε_δV, λ⊥.

    For the pattern term of (25) at coupling g pass dS = δS(+) + g δS(−) (δA is linear in δS);
    ``theory.head_linearization`` gives A0, V0, δV, δS(±) per head for an attention layer.
    """
    A = _A0(A0)
    D = _dS(dS, A)
    V = _tokens("V0", V0, A.shape[-1])
    dVa = _tokens("dV", dV, A.shape[-1])
    b105 = bound_eq105(A, D, V, dVa)
    return DominanceReport(
        ratio=b105.value,
        bound=b105.bound,
        n_eff_min=np.min(n_eff(A), axis=-1),
        eps_V0=coherence(V, "V0"),
        eps_dV=coherence(dVa, "dV"),
        lambda_perp=lambda_perp(A),
        dS_max=np.max(np.abs(D), axis=(-2, -1)),
    )
