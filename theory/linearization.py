"""Linearized replica difference of a coupled attention layer and the block propagator, eq. (20)–(33).

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
* in the difference-mode coordinates of (30), h = (H^A − H^B)/√2, the attention update is
  h̃ = h + (Attn^A − Attn^B)/√2, so the R, P entering K_g (31)–(33) are (26)'s R, P divided
  by √2; :func:`propagator` returns them in those coordinates so that (32) is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._validate import as_float_array, check_g, check_positive_int
from .appendix_b import delta_A
from .attention import coupled_attention
from .gating import rho, xi

__all__ = [
    "AttentionLayer",
    "ToyDiTBlock",
    "Propagator",
    "LinearizedDifference",
    "random_attention_layer",
    "random_toy_block",
    "softmax_jvp",
    "routing_term",
    "pattern_term",
    "linearized_logits",
    "attention_forward",
    "attention_difference",
    "attention_difference_jvp",
    "attention_difference_terms",
    "block_forward",
    "propagator",
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
        defaults = {"b_Q": (Di, 0.0), "b_K": (Di, 0.0), "b_V": (Di, 0.0), "b_O": (D, 0.0),
                    "alpha": (D, 1.0), "shift": (D, 0.0), "scale": (D, 0.0)}
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


@dataclass(frozen=True, eq=False)
class ToyDiTBlock:
    """Toy DiT block (13)–(14): H̃ = H + α⊙Attn_g(adaLN1(H)), H+ = H̃ + β⊙MLP(adaLN2(H̃)).

    MLP(x) = GELU_tanh(x W1 + b1) W2 + b2 acts on each token separately (DiT's MLP).
    """

    attn: AttentionLayer
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    beta: np.ndarray
    shift2: np.ndarray = field(default=None)  # type: ignore[assignment]
    scale2: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        D = self.attn.D
        W1 = as_float_array("W1", self.W1)
        if W1.ndim != 2 or W1.shape[0] != D:
            raise ValueError(f"W1 must have shape ({D}, M), got {W1.shape}")
        M = W1.shape[1]
        W2 = as_float_array("W2", self.W2)
        if W2.shape != (M, D):
            raise ValueError(f"W2 must have shape ({M}, {D}), got {W2.shape}")
        fixed = {"W1": W1, "W2": W2, "b1": _vec("b1", self.b1, M), "b2": _vec("b2", self.b2, D),
                 "beta": _vec("beta", self.beta, D)}
        fixed["shift2"] = np.zeros(D) if self.shift2 is None else _vec("shift2", self.shift2, D)
        fixed["scale2"] = np.zeros(D) if self.scale2 is None else _vec("scale2", self.scale2, D)
        for name, val in fixed.items():
            object.__setattr__(self, name, val)


def random_attention_layer(
    D: int, num_heads: int, seed: int, *, alpha_scale: float = 1.0, layernorm: bool = True
) -> AttentionLayer:
    """Random layer with 1/√D-scaled weights, biases, adaLN shift/scale and gate α ~ alpha_scale."""
    D = check_positive_int("D", D)
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.standard_normal(s) / math.sqrt(s[0])  # noqa: E731 -- keeps activations O(1)
    b = lambda n: 0.1 * rng.standard_normal(n)  # noqa: E731
    return AttentionLayer(
        W_Q=w(D, D), W_K=w(D, D), W_V=w(D, D), W_O=w(D, D), num_heads=num_heads,
        b_Q=b(D), b_K=b(D), b_V=b(D), b_O=b(D),
        alpha=alpha_scale * (1.0 + 0.5 * rng.standard_normal(D)),
        shift=b(D), scale=b(D), layernorm=layernorm,
    )


def random_toy_block(
    D: int, num_heads: int, seed: int, *, eps: float = 0.1, mlp_ratio: int = 2
) -> ToyDiTBlock:
    """Random toy block whose gates α, β are O(eps), as in §2.4 (zero-initialized gates)."""
    rng = np.random.default_rng([seed, 1])
    attn = random_attention_layer(D, num_heads, seed, alpha_scale=eps)
    M = mlp_ratio * D
    return ToyDiTBlock(
        attn=attn,
        W1=rng.standard_normal((D, M)) / math.sqrt(D), b1=0.1 * rng.standard_normal(M),
        W2=rng.standard_normal((M, D)) / math.sqrt(M), b2=0.1 * rng.standard_normal(D),
        beta=eps * (1.0 + 0.5 * rng.standard_normal(D)),
        shift2=0.1 * rng.standard_normal(D), scale2=0.1 * rng.standard_normal(D),
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


def attention_difference_terms(layer: AttentionLayer, H0: Any, h: Any, g: float) -> LinearizedDifference:
    """R h and P(g) h of eq. (25)–(26) from the explicit formulas (no autodiff).

    ``H0``: (N, D) symmetric state; ``h``: (..., N, D) perturbation(s) of eq. (20).
    """
    H0 = as_float_array("H0", H0)
    h = as_float_array("h", h)
    if H0.ndim != 2 or H0.shape[-1] != layer.D or h.shape[-2:] != H0.shape:
        raise ValueError(f"H0 must be (N, {layer.D}) and h (..., N, {layer.D}) of the same N; "
                         f"got H0 {H0.shape}, h {h.shape}")
    check_g(g)
    x0, dx = _adaln_and_jvp(layer, H0, h / math.sqrt(2.0))  # eq. (20): replica A moves by h/√2
    nh = layer.num_heads
    Q0, K0, V0 = (_heads(x0 @ W + b, nh) for W, b in
                  ((layer.W_Q, layer.b_Q), (layer.W_K, layer.b_K), (layer.W_V, layer.b_V)))
    dQ, dK, dV = (_heads(dx @ W, nh) for W in (layer.W_Q, layer.W_K, layer.W_V))  # eq. (21)
    S0 = Q0 @ K0.swapaxes(-1, -2) / math.sqrt(layer.head_dim)  # eq. (16)
    A0 = np.exp(S0 - S0.max(-1, keepdims=True))
    A0 = A0 / A0.sum(-1, keepdims=True)  # eq. (18) at the symmetric state
    dS_plus, dS_minus = linearized_logits(Q0, K0, dQ, dK)
    A0b = np.broadcast_to(A0, dS_plus.shape)
    out = lambda Z: (_merge(Z) @ layer.W_O) * layer.alpha  # noqa: E731 -- linear: W_O then gate α
    return LinearizedDifference(
        routing=out(routing_term(A0, dV)),
        pattern=out(pattern_term(A0b, dS_plus, dS_minus, np.broadcast_to(V0, dV.shape), g)),
        rho=float(rho(g)),
        xi=float(xi(g)),
    )


# ---------------------------------------------------------------- autodiff (torch) path


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _adaln_torch(H: torch.Tensor, layernorm: bool, eps: float, shift: np.ndarray, scale: np.ndarray):
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

    o = coupled_attention(proj(layer.W_Q, layer.b_Q), proj(layer.W_K, layer.b_K),
                          proj(layer.W_V, layer.b_V), g)  # eq. (19), (2, heads, N, d_h)
    o = o.transpose(-3, -2).reshape(*H.shape[:-1], -1)  # (2, N, D_inner)
    return (o @ _t(layer.W_O) + _t(layer.b_O)) * _t(layer.alpha)


def _replicas(H0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.stack([H0 + u, H0 - u])  # eq. (20) with u = h/√2


def attention_difference(layer: AttentionLayer, H0: Any, h: Any, g: float) -> np.ndarray:
    """Exact nonlinear Attn^A − Attn^B for H^{A,B} = H0 ± h/√2 (eq. 20); (N, D)."""
    out = attention_forward(layer, _replicas(_t(as_float_array("H0", H0)),
                                             _t(as_float_array("h", h)) / math.sqrt(2.0)), g)
    return (out[0] - out[1]).detach().numpy()


def attention_difference_jvp(layer: AttentionLayer, H0: Any, h: Any, g: float) -> np.ndarray:
    """First-order Attn^A − Attn^B along h by forward-mode autodiff (torch.func.jvp, float64)."""
    H0_t = _t(as_float_array("H0", H0))
    h_t = _t(as_float_array("h", h))

    def diff(u: torch.Tensor) -> torch.Tensor:
        out = attention_forward(layer, _replicas(H0_t, u), g)
        return out[0] - out[1]

    _, tangent = torch.func.jvp(diff, (torch.zeros_like(h_t),), (h_t / math.sqrt(2.0),))
    return tangent.numpy()


def _mlp_branch(block: ToyDiTBlock, Ht: torch.Tensor) -> torch.Tensor:
    """β ⊙ MLP(adaLN2(H̃)), the tokenwise branch of eq. (14)."""
    x = _adaln_torch(Ht, True, block.attn.ln_eps, block.shift2, block.scale2)
    z = torch.nn.functional.gelu(x @ _t(block.W1) + _t(block.b1), approximate="tanh")
    return (z @ _t(block.W2) + _t(block.b2)) * _t(block.beta)


def block_forward(block: ToyDiTBlock, H: torch.Tensor, g: float) -> torch.Tensor:
    """Toy coupled DiT block (13)–(14) on stacked replicas H: (2, N, D) -> (2, N, D)."""
    Ht = H + attention_forward(block.attn, H, g)  # eq. (13)
    return Ht + _mlp_branch(block, Ht)  # eq. (14)


@dataclass(frozen=True, eq=False)
class Propagator:
    """Per-layer propagator K_g of eq. (31)–(33) as explicit (N·D)×(N·D) matrices.

    All operators act on the difference mode h = (H^A − H^B)/√2 flattened token-major
    (index n·D + c). ``R``, ``P`` are (26)'s R, P(g) in these coordinates (divided by √2).
    """

    K: np.ndarray  # full Jacobian of h -> h+ of the coupled block, by autodiff (31)
    J_mlp: np.ndarray  # β⊙MLP Jacobian at the symmetric state H̃0, block diagonal in tokens
    R: np.ndarray
    P: np.ndarray
    rho: float
    xi: float

    @property
    def attention(self) -> np.ndarray:
        """ρ(g) R + ξ(g) P(g), eq. (29)."""
        return self.rho * self.R + self.xi * self.P

    @property
    def cross(self) -> np.ndarray:
        """J_MLP [ρR + ξP], the O(ε²) cross term of eq. (32)."""
        return self.J_mlp @ self.attention

    @property
    def K_expanded(self) -> np.ndarray:
        """I + J_MLP + ρR + ξP + J_MLP[ρR + ξP], eq. (32)."""
        return np.eye(self.K.shape[0]) + self.J_mlp + self.attention + self.cross

    @property
    def K_approx(self) -> np.ndarray:
        """I + J_MLP + ρR + ξP with the cross term dropped, eq. (33)."""
        return np.eye(self.K.shape[0]) + self.J_mlp + self.attention


def propagator(block: ToyDiTBlock, H0: Any, g: float) -> Propagator:
    """Build K_g of eq. (31)–(33) for a toy block around the symmetric state H0 (N, D)."""
    H0 = as_float_array("H0", H0)
    check_g(g)
    N, D = H0.shape
    H0_t = _t(H0)
    s2 = math.sqrt(2.0)

    def mode_map(h: torch.Tensor) -> torch.Tensor:
        out = block_forward(block, _replicas(H0_t, h / s2), g)
        return (out[0] - out[1]) / s2  # h+ in the coordinates of eq. (20)

    K = torch.func.jacfwd(mode_map)(torch.zeros_like(H0_t)).reshape(N * D, N * D).numpy()
    # Symmetric state after attention: identical replicas see ordinary attention at any g.
    Ht0 = H0_t + attention_forward(block.attn, torch.stack([H0_t, H0_t]), g)[0]
    J_mlp = torch.func.jacfwd(lambda x: _mlp_branch(block, x))(Ht0).reshape(N * D, N * D).numpy()
    basis = np.eye(N * D).reshape(N * D, N, D)
    terms = attention_difference_terms(block.attn, H0, basis, g)
    # column j = operator applied to basis vector j; /√2 converts Attn^A − Attn^B to the mode.
    R = terms.routing.reshape(N * D, N * D).T / s2
    P = terms.pattern.reshape(N * D, N * D).T / s2
    return Propagator(K=K, J_mlp=J_mlp, R=R, P=P, rho=terms.rho, xi=terms.xi)
