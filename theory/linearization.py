"""Linearized replica difference of a coupled attention layer, eq. (20)–(29).

Bookkeeping (eq. 20): H^A = H0 + h/√2, H^B = H0 − h/√2, so the first-order shift of replica
A's values is δV = J_V h/√2 (this is the δh of eq. 21) and the logit perturbations of the AA
and AB blocks are, with δQ = J_Q h/√2 and δK = J_K h/√2,

    δS(+) = (δQ K0ᵀ + Q0 δKᵀ)/√d_h   (S_AA = Q^A K^Aᵀ/√d_h),
    δS(−) = (δQ K0ᵀ − Q0 δKᵀ)/√d_h   (S_AB = Q^A K^Bᵀ/√d_h),

δA(±) = softmax-JVP(A0, δS(±)) (eq. 88). With these, eq. (25) holds exactly at first order:

    Attn_g^A − Attn_g^B = ρ(g)·2A0δV + ξ(g)·2(δA(+) + g δA(−))V0          (25)/(28)

per head; the output projection W_O and the residual gate α are linear and act on both terms
(the bias of W_O cancels in the difference). The J_V, J_Q, J_K here include the LayerNorm
Jacobian and the adaLN scale (§2.4: "absorbed into the effective linear operators").

Two findings the tests pin down:
* the replica difference is an ODD function of h (exchange symmetry maps h -> −h and swaps
  the outputs), so the remainder of (25) is O(‖h‖³), not just O(‖h‖²); each replica's own
  output has an O(‖h‖²) remainder.
* in the difference-mode coordinates of (30), h = (H^A − H^B)/√2, the R, P entering K_g are
  (26)'s divided by √2 (see theory/block_propagator.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from .appendix_b import delta_A
from .attention import coupled_attention
from .gating import rho, xi
from .validation import as_float_array, check_g, check_positive_int, check_range

__all__ = [
    "AttentionLayer",
    "LinearizedDifference",
    "HeadLinearization",
    "head_linearization",
    "random_attention_layer",
    "softmax_jvp",
    "routing_term",
    "pattern_term",
    "linearized_logits",
    "attention_forward",
    "attention_difference",
    "attention_difference_jvp",
    "attention_difference_terms",
    "RemainderScaling",
    "remainder_scaling",
]

# eq. (88) under the name §2.3 uses for it: the softmax Jacobian applied to a logit perturbation.
softmax_jvp = delta_A

DIT_LN_EPS = 1e-6  # diffusers DiT blocks: LayerNorm(eps=1e-6, elementwise_affine=False)


def _vec(name: str, x: Any, D: int) -> np.ndarray:
    arr = as_float_array(name, x)
    if arr.shape != (D,):
        raise ValueError(f"{name} must have shape ({D},), got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class AttentionLayer:
    """One DiT self-attention branch α ⊙ Attn(adaLN(H)) of eq. (13), float64 parameters.

    Row-vector convention: Q = x W_Q + b_Q with W_Q of shape (D, D_inner); ``num_heads``
    splits D_inner into heads of width d_h = D_inner/num_heads; output y W_O + b_O with W_O
    (D_inner, D); gate ``alpha`` (D,). adaLN is DiT's: x = LN(H)(1 + scale) + shift with a
    LayerNorm without affine parameters (``layernorm=False`` skips the normalization).
    """

    W_Q: np.ndarray
    W_K: np.ndarray
    W_V: np.ndarray
    W_O: np.ndarray
    num_heads: int
    b_Q: np.ndarray | None = None
    b_K: np.ndarray | None = None
    b_V: np.ndarray | None = None
    b_O: np.ndarray | None = None
    alpha: np.ndarray | None = None
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    layernorm: bool = True
    ln_eps: float = DIT_LN_EPS

    def __post_init__(self) -> None:
        W_Q = as_float_array("W_Q", self.W_Q)
        if W_Q.ndim != 2:
            raise ValueError(f"W_Q must have shape (D, D_inner), got {W_Q.shape}")
        D, Di = W_Q.shape
        heads = check_positive_int("num_heads", self.num_heads)
        if Di % heads:
            raise ValueError(f"num_heads={heads} must divide D_inner={Di}")
        fixed = {"W_Q": W_Q}
        for name in ("W_K", "W_V"):
            fixed[name] = as_float_array(name, getattr(self, name))
            if fixed[name].shape != (D, Di):
                raise ValueError(f"{name} must have shape ({D}, {Di}) like W_Q, got {fixed[name].shape}")
        fixed["W_O"] = as_float_array("W_O", self.W_O)
        if fixed["W_O"].shape != (Di, D):
            raise ValueError(f"W_O must have shape ({Di}, {D}), got {fixed['W_O'].shape}")
        defaults = {
            "b_Q": (Di, 0.0),
            "b_K": (Di, 0.0),
            "b_V": (Di, 0.0),
            "b_O": (D, 0.0),
            "alpha": (D, 1.0),
            "shift": (D, 0.0),
            "scale": (D, 0.0),
        }
        for name, (size, fill) in defaults.items():
            val = getattr(self, name)
            fixed[name] = np.full(size, fill) if val is None else _vec(name, val, size)
        for name, val in fixed.items():
            object.__setattr__(self, name, val)

    @property
    def D(self) -> int:
        return self.W_Q.shape[0]

    @property
    def head_dim(self) -> int:
        return self.W_Q.shape[1] // self.num_heads


def random_attention_layer(
    D: int, num_heads: int, seed: int, *, alpha_scale: float = 1.0, layernorm: bool = True
) -> AttentionLayer:
    """Random layer with 1/√D-scaled weights, biases, adaLN shift/scale and gate α ~ alpha_scale."""
    D = check_positive_int("D", D)
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.standard_normal(s) / math.sqrt(s[0])  # noqa: E731 -- keeps activations O(1)
    b = lambda n: 0.1 * rng.standard_normal(n)  # noqa: E731
    return AttentionLayer(
        W_Q=w(D, D),
        W_K=w(D, D),
        W_V=w(D, D),
        W_O=w(D, D),
        num_heads=num_heads,
        b_Q=b(D),
        b_K=b(D),
        b_V=b(D),
        b_O=b(D),
        alpha=alpha_scale * (1.0 + 0.5 * rng.standard_normal(D)),
        shift=b(D),
        scale=b(D),
        layernorm=layernorm,
    )


# ---------------------------------------------------------------- explicit (numpy) path


def _layernorm(H: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm without affine over the feature axis; returns (y, 1/s) with s = √(var + eps)."""
    mu = H.mean(-1, keepdims=True)
    inv_s = 1.0 / np.sqrt(((H - mu) ** 2).mean(-1, keepdims=True) + eps)
    return (H - mu) * inv_s, inv_s


def _adaln_and_jvp(layer: AttentionLayer, H0: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x0 = adaLN(H0) and its first-order change δx along u (closed-form LayerNorm JVP)."""
    if layer.layernorm:
        y, inv_s = _layernorm(H0, layer.ln_eps)
        # δy = (δH − mean δH)/s − y·mean(y δH)/s: derivative of (H − μ)/√(var + eps)
        dy = (u - u.mean(-1, keepdims=True)) * inv_s - y * (y * u).mean(-1, keepdims=True) * inv_s
    else:
        y, dy = H0, u
    return y * (1.0 + layer.scale) + layer.shift, dy * (1.0 + layer.scale)


def _heads(X: np.ndarray, num_heads: int) -> np.ndarray:
    """(..., N, D_inner) -> (..., heads, N, d_h)."""
    return np.moveaxis(X.reshape(*X.shape[:-1], num_heads, -1), -2, -3)


def _merge(X: np.ndarray) -> np.ndarray:
    """(..., heads, N, d_h) -> (..., N, D_inner)."""
    X = np.moveaxis(X, -3, -2)
    return X.reshape(*X.shape[:-2], -1)


def routing_term(A0: Any, dV: Any) -> np.ndarray:
    """Spatial routing R h = 2 A0 δV of eq. (25)–(26); A0 (..., N, N), δV (..., N, d)."""
    return 2.0 * np.asarray(A0, dtype=np.float64) @ np.asarray(dV, dtype=np.float64)  # eq. (26)


def pattern_term(A0: Any, dS_plus: Any, dS_minus: Any, V0: Any, g: Any) -> np.ndarray:
    """Pattern modulation P(g) h = 2(δA(+) + g δA(−)) V0 of eq. (25)–(26), δA(±) from eq. (88)."""
    check_g(g)
    dA = delta_A(A0, dS_plus) + float(g) * delta_A(A0, dS_minus)  # eq. (23)–(24), (88)
    return 2.0 * dA @ np.asarray(V0, dtype=np.float64)  # eq. (26)


def linearized_logits(Q0: Any, K0: Any, dQ: Any, dK: Any) -> tuple[np.ndarray, np.ndarray]:
    """δS(+) (AA block) and δS(−) (AB block) of eq. (23)–(24), from δQ, δK of replica A.

    S_AA = Q^A K^Aᵀ/√d_h and S_AB = Q^A K^Bᵀ/√d_h with Q^A = Q0 + δQ, K^{A,B} = K0 ± δK.
    """
    Q0, K0, dQ, dK = (np.asarray(x, dtype=np.float64) for x in (Q0, K0, dQ, dK))
    scale = 1.0 / math.sqrt(Q0.shape[-1])  # eq. (16)
    qk = dQ @ K0.swapaxes(-1, -2)
    kq = Q0 @ dK.swapaxes(-1, -2)
    return (qk + kq) * scale, (qk - kq) * scale


@dataclass(frozen=True, eq=False)
class LinearizedDifference:
    """The two first-order pathways of eq. (25) in the layer's output space (after W_O, α)."""

    routing: np.ndarray  # R h = 2 A0 δV W_O ⊙ α, (..., N, D)
    pattern: np.ndarray  # P(g) h = 2(δA(+) + gδA(−)) V0 W_O ⊙ α, (..., N, D)
    rho: float
    xi: float

    @property
    def total(self) -> np.ndarray:
        """ρ(g) R h + ξ(g) P(g) h, eq. (28)."""
        return self.rho * self.routing + self.xi * self.pattern


@dataclass(frozen=True, eq=False)
class HeadLinearization:
    """Per-head first-order quantities of eq. (20)–(24); the inputs of the Appendix B functions.

    A0 (heads, N, N), V0 (heads, N, d_h); dV, dS_plus, dS_minus carry h's leading axes:
    (..., heads, N, d_h) and (..., heads, N, N). For the pattern term at coupling g use
    δS = δS(+) + g δS(−): δA is linear in δS, so δA(+) + gδA(−) = δA(δS(+) + gδS(−)).
    """

    A0: np.ndarray
    V0: np.ndarray
    dV: np.ndarray
    dS_plus: np.ndarray
    dS_minus: np.ndarray


def head_linearization(layer: AttentionLayer, H0: Any, h: Any) -> HeadLinearization:
    """A0, V0 at the symmetric state H0 (N, D) and δV, δS(±) for h (..., N, D), explicit formulas."""
    H0 = as_float_array("H0", H0)
    h = as_float_array("h", h)
    if H0.ndim != 2 or H0.shape[-1] != layer.D or h.shape[-2:] != H0.shape:
        raise ValueError(
            f"H0 must be (N, {layer.D}) and h (..., N, {layer.D}) of the same N; "
            f"got H0 {H0.shape}, h {h.shape}"
        )
    x0, dx = _adaln_and_jvp(layer, H0, h / math.sqrt(2.0))  # eq. (20): replica A moves by h/√2
    nh = layer.num_heads
    Q0, K0, V0 = (
        _heads(x0 @ W + b, nh)
        for W, b in ((layer.W_Q, layer.b_Q), (layer.W_K, layer.b_K), (layer.W_V, layer.b_V))
    )
    dQ, dK, dV = (_heads(dx @ W, nh) for W in (layer.W_Q, layer.W_K, layer.W_V))  # eq. (21)
    S0 = Q0 @ K0.swapaxes(-1, -2) / math.sqrt(layer.head_dim)  # eq. (16)
    A0 = np.exp(S0 - S0.max(-1, keepdims=True))
    A0 = A0 / A0.sum(-1, keepdims=True)  # eq. (18) at the symmetric state
    dS_plus, dS_minus = linearized_logits(Q0, K0, dQ, dK)
    return HeadLinearization(A0, V0, dV, dS_plus, dS_minus)


def attention_difference_terms(layer: AttentionLayer, H0: Any, h: Any, g: float) -> LinearizedDifference:
    """R h and P(g) h of eq. (25)–(26) from the explicit formulas (no autodiff).

    ``H0``: (N, D) symmetric state; ``h``: (..., N, D) perturbation(s) of eq. (20).
    """
    check_g(g)
    lin = head_linearization(layer, H0, h)
    out = lambda Z: (_merge(Z) @ layer.W_O) * layer.alpha  # noqa: E731 -- linear: W_O then gate α
    return LinearizedDifference(
        routing=out(routing_term(lin.A0, lin.dV)),
        pattern=out(
            pattern_term(np.broadcast_to(lin.A0, lin.dS_plus.shape), lin.dS_plus, lin.dS_minus, lin.V0, g)
        ),
        rho=float(rho(g)),
        xi=float(xi(g)),
    )


# ---------------------------------------------------------------- autodiff (torch) path


def _t(x: np.ndarray) -> torch.Tensor:
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    return torch.from_numpy(np.ascontiguousarray(x))


def _adaln_torch(H: torch.Tensor, layernorm: bool, eps: float, shift: np.ndarray, scale: np.ndarray):
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    if layernorm:
        H = torch.nn.functional.layer_norm(H, H.shape[-1:], eps=eps)
    return H * (1.0 + _t(scale)) + _t(shift)


def attention_forward(layer: AttentionLayer, H: torch.Tensor, g: float) -> torch.Tensor:
    """α ⊙ W_O-projected coupled attention (19) of adaLN(H); H: (2, N, D) float64 tensor."""
    x = _adaln_torch(H, layer.layernorm, layer.ln_eps, layer.shift, layer.scale)
    nh = layer.num_heads

    def proj(W: np.ndarray, b: np.ndarray) -> torch.Tensor:
        Z = x @ _t(W) + _t(b)  # (2, N, D_inner)
        return Z.reshape(*Z.shape[:-1], nh, -1).transpose(-3, -2)  # (2, heads, N, d_h)

    o = coupled_attention(
        proj(layer.W_Q, layer.b_Q), proj(layer.W_K, layer.b_K), proj(layer.W_V, layer.b_V), g
    )  # eq. (19), (2, heads, N, d_h)
    o = o.transpose(-3, -2).reshape(*H.shape[:-1], -1)  # (2, N, D_inner)
    return (o @ _t(layer.W_O) + _t(layer.b_O)) * _t(layer.alpha)


def _replicas(H0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    return torch.stack([H0 + u, H0 - u])  # eq. (20) with u = h/√2


def attention_difference(layer: AttentionLayer, H0: Any, h: Any, g: float) -> np.ndarray:
    """Exact nonlinear Attn^A − Attn^B for H^{A,B} = H0 ± h/√2 (eq. 20); (N, D)."""
    out = attention_forward(
        layer, _replicas(_t(as_float_array("H0", H0)), _t(as_float_array("h", h)) / math.sqrt(2.0)), g
    )
    return (out[0] - out[1]).detach().numpy()


def attention_difference_jvp(layer: AttentionLayer, H0: Any, h: Any, g: float) -> np.ndarray:
    """First-order Attn^A − Attn^B along h by forward-mode autodiff (torch.func.jvp, float64)."""
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    H0_t = _t(as_float_array("H0", H0))
    h_t = _t(as_float_array("h", h))

    def diff(u: torch.Tensor) -> torch.Tensor:
        out = attention_forward(layer, _replicas(H0_t, u), g)
        return out[0] - out[1]

    _, tangent = torch.func.jvp(diff, (torch.zeros_like(h_t),), (h_t / math.sqrt(2.0),))
    return tangent.numpy()


# ---------------------------------------------------------------- order of the remainder of (25)

# Multipliers of h for :func:`remainder_scaling`: two decades where both remainders stand far above
# float64 round-off (the difference remainder is ~s³) and below the scale where higher orders bend the fit.
REMAINDER_SCALES = tuple(np.logspace(-3.0, -1.0, 9))


@dataclass(frozen=True, eq=False)
class RemainderScaling:
    """Remainders of the first-order expansion (25) against ‖h‖, with least-squares log–log fits.

    Arrays have shape (n,) over the multipliers s of h. ``difference`` is
    ‖D(sh) − [ρRsh + ξP(g)sh]‖_F with D = Attn^A − Attn^B, ``replica`` is
    ‖Attn^A(sh) − Attn^A(0) − ½[ρR + ξP(g)]sh‖_F, and ``odd`` is ‖D(sh) + D(−sh)‖_F, zero up to
    round-off because exchanging A and B maps h to −h and swaps the outputs. A fit is
    ``(slope, intercept, max_dev)`` of log r = slope·log‖sh‖_F + intercept, with max_dev the largest
    |log r − fit| (natural log; 0 for an exact power law).
    """

    h_norm: np.ndarray
    difference: np.ndarray
    replica: np.ndarray
    odd: np.ndarray
    difference_fit: tuple[float, float, float]
    replica_fit: tuple[float, float, float]

    @property
    def difference_slope(self) -> float:
        """Order of the remainder of (25): 3 (D is odd, so its even Taylor terms vanish)."""
        return self.difference_fit[0]

    @property
    def replica_slope(self) -> float:
        """Order of one replica's remainder (eq. 21–24): 2."""
        return self.replica_fit[0]


def _loglog_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept), float(np.max(np.abs(ly - (slope * lx + intercept))))


def remainder_scaling(
    layer: AttentionLayer, H0: Any, h: Any, g: float, scales: Any = REMAINDER_SCALES
) -> RemainderScaling:
    """Log–log slopes of the remainders of (25): ≈ 3 for the replica difference, ≈ 2 for one replica.

    ``H0``: (N, D) symmetric state; ``h``: (N, D) direction, scaled by each ``scales`` entry s > 0.
    The exact outputs come from the coupled forward (19) (no autodiff); the first-order term from the
    explicit formulas of :func:`attention_difference_terms`. Replica A's own first-order term is half
    of it: Attn^A + Attn^B is even in h, so it has no first-order part.
    """
    import torch  # torch only where the exact coupled forward is evaluated

    check_g(g)
    H0 = as_float_array("H0", H0)
    h = as_float_array("h", h)
    if H0.ndim != 2 or H0.shape[-1] != layer.D or h.shape != H0.shape:
        raise ValueError(f"H0 and h must both have shape (N, {layer.D}); got H0 {H0.shape}, h {h.shape}")
    s = as_float_array("scales", scales)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(f"scales must be a 1-d array of at least 2 multipliers, got shape {s.shape}")
    check_range("scales", s, 0.0, None, lo_open=True)
    first = attention_difference_terms(layer, H0, h, g).total  # ρRh + ξP(g)h, eq. (25)/(28)
    H0_t = _t(H0)

    def pair(u: np.ndarray) -> np.ndarray:  # (Attn^A, Attn^B) at H^{A,B} = H0 ± u, eq. (20) with u = h/√2
        with torch.no_grad():
            return attention_forward(layer, _replicas(H0_t, _t(u)), g).numpy()

    base = pair(np.zeros_like(h))[0]
    diff_r, rep_r, odd_r = (np.empty(s.size) for _ in range(3))
    for i, c in enumerate(s):
        u = c * h / math.sqrt(2.0)
        plus, minus = pair(u), pair(-u)
        D_plus, D_minus = plus[0] - plus[1], minus[0] - minus[1]
        diff_r[i] = np.linalg.norm(D_plus - c * first)  # remainder of (25)
        rep_r[i] = np.linalg.norm(plus[0] - base - 0.5 * c * first)  # replica A alone, eq. (21)–(24)
        odd_r[i] = np.linalg.norm(D_plus + D_minus)  # D(h) + D(−h) = 0
    h_norm = s * np.linalg.norm(h)
    return RemainderScaling(
        h_norm=h_norm,
        difference=diff_r,
        replica=rep_r,
        odd=odd_r,
        difference_fit=_loglog_fit(h_norm, diff_r),
        replica_fit=_loglog_fit(h_norm, rep_r),
    )
