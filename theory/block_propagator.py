"""Per-layer propagator K_g of the difference mode for a toy DiT block, eq. (30)–(33).

The toy block is (13)–(14) with DiT's adaLN (LayerNorm without affine, x(1 + scale) + shift),
the coupled attention (19) and a tokenwise GELU MLP, gates α, β of scale ε. Around the
symmetric state the difference mode h = (H^A − H^B)/√2 (eq. 7, 20) is updated to first order by

    K_g = I + J_MLP + ρR + ξP(g) + J_MLP[ρR + ξP(g)]        (32)

exactly (chain rule through H̃ = H + α⊙Attn, H+ = H̃ + β⊙MLP). The cross term is O(ε²) and (33)
drops it.

The √2 convention (docs/FINDINGS.md, finding 2). Eq. (20) moves each replica by ±h/√2, eq. (21)
writes the value shift as δh = J_V h, and eq. (26) sets R = 2A0J_V; read together they put a
factor 2 too many into the attention term of (30). The consistent bookkeeping, used here and in
:mod:`theory.linearization` and ``dit_validation.measure``, with J_V, J_Q, J_K the Jacobians of one
replica's V, Q, K with respect to its own hidden state:

* eq. (20) as written: H^{A,B} = H0 ± h/√2, so replica A's shifts are δV = J_V h/√2,
  δQ = J_Q h/√2, δK = J_K h/√2 (eq. 21 needs δh = J_V h/√2);
* eq. (25) as written, in terms of those shifts, for the physical difference Attn^A − Attn^B;
* eq. (30) acts on the mode h, whose attention update is h̃ − h = α⊙(Attn^A − Attn^B)/√2. The
  factor 2 of (25) and the two 1/√2 cancel, so the operators of (29)–(33) are

      R = A0 J_V,    P(g)h = (δA(+)[h] + g δA(−)[h]) V0,

  with δA(±)[h] the softmax JVP (88) along δS(±) built from J_Q h, J_K h (a unit replica shift).
  These are (26) with the 2 dropped, i.e. (26)'s R, P halved when (21)–(26) are read literally
  (δh = J_V h), or the linear operators of (25) (:class:`theory.LinearizedDifference`) divided by √2.

:func:`eq32_check` measures the three readings against a forward-mode JVP of the block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from .linearization import (
    AttentionLayer,
    _adaln_torch,
    _replicas,
    _t,
    _vec,
    attention_difference_terms,
    attention_forward,
    random_attention_layer,
)
from .validation import as_float_array, check_g

__all__ = [
    "ToyDiTBlock",
    "Propagator",
    "Eq32Check",
    "random_toy_block",
    "block_forward",
    "propagator",
    "eq32_check",
]


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
        fixed = {
            "W1": W1,
            "W2": W2,
            "b1": _vec("b1", self.b1, M),
            "b2": _vec("b2", self.b2, D),
            "beta": _vec("beta", self.beta, D),
        }
        fixed["shift2"] = np.zeros(D) if self.shift2 is None else _vec("shift2", self.shift2, D)
        fixed["scale2"] = np.zeros(D) if self.scale2 is None else _vec("scale2", self.scale2, D)
        for name, val in fixed.items():
            object.__setattr__(self, name, val)


def random_toy_block(
    D: int, num_heads: int, seed: int, *, eps: float = 0.1, mlp_ratio: int = 2
) -> ToyDiTBlock:
    """Random toy block whose gates α, β are O(eps), as in §2.4 (zero-initialized gates)."""
    rng = np.random.default_rng([seed, 1])
    attn = random_attention_layer(D, num_heads, seed, alpha_scale=eps)
    M = mlp_ratio * D
    return ToyDiTBlock(
        attn=attn,
        W1=rng.standard_normal((D, M)) / math.sqrt(D),
        b1=0.1 * rng.standard_normal(M),
        W2=rng.standard_normal((M, D)) / math.sqrt(M),
        b2=0.1 * rng.standard_normal(D),
        beta=eps * (1.0 + 0.5 * rng.standard_normal(D)),
        shift2=0.1 * rng.standard_normal(D),
        scale2=0.1 * rng.standard_normal(D),
    )


def _mlp_branch(block: ToyDiTBlock, Ht: torch.Tensor) -> torch.Tensor:
    """β ⊙ MLP(adaLN2(H̃)), the tokenwise branch of eq. (14)."""
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

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
    (index n·D + c). ``R`` = A0J_V and ``P`` = P(g) in the mode convention of the module docstring
    (the operators of eq. 25 divided by √2; eq. 26 without its factor 2).
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


def _mode_map(block: ToyDiTBlock, H0_t: torch.Tensor, g: float):
    """h ↦ h+ = (H+^A − H+^B)/√2 for H^{A,B} = H0 ± h/√2: the block in the coordinates of eq. (20)."""
    s2 = math.sqrt(2.0)

    def mode_map(h: torch.Tensor) -> torch.Tensor:
        out = block_forward(block, _replicas(H0_t, h / s2), g)
        return (out[0] - out[1]) / s2

    return mode_map


def _post_attention_state(block: ToyDiTBlock, H0_t: torch.Tensor, g: float) -> torch.Tensor:
    """H̃0 = H0 + α⊙Attn(adaLN(H0)): identical replicas see ordinary attention at any g (eq. 13, 19)."""
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    return H0_t + attention_forward(block.attn, torch.stack([H0_t, H0_t]), g)[0]


def propagator(block: ToyDiTBlock, H0: Any, g: float) -> Propagator:
    """Build K_g of eq. (31)–(33) for a toy block around the symmetric state H0 (N, D)."""
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    H0 = as_float_array("H0", H0)
    check_g(g)
    if H0.ndim != 2 or H0.shape[1] != block.attn.D:
        raise ValueError(f"H0 must have shape (N, {block.attn.D}), got {H0.shape}")
    N, D = H0.shape
    H0_t = _t(H0)
    s2 = math.sqrt(2.0)

    K = torch.func.jacfwd(_mode_map(block, H0_t, g))(torch.zeros_like(H0_t)).reshape(N * D, N * D).numpy()
    Ht0 = _post_attention_state(block, H0_t, g)
    J_mlp = torch.func.jacfwd(lambda x: _mlp_branch(block, x))(Ht0).reshape(N * D, N * D).numpy()
    basis = np.eye(N * D).reshape(N * D, N, D)
    terms = attention_difference_terms(block.attn, H0, basis, g)
    # column j = operator applied to basis vector j; /√2 converts Attn^A − Attn^B to the mode.
    R = terms.routing.reshape(N * D, N * D).T / s2
    P = terms.pattern.reshape(N * D, N * D).T / s2
    return Propagator(K=K, J_mlp=J_mlp, R=R, P=P, rho=terms.rho, xi=terms.xi)


@dataclass(frozen=True, eq=False)
class Eq32Check:
    """Eq. (32) applied to one direction h, against the JVP of the coupled block; arrays (N, D).

    ``expanded[c]`` is (32)·h with the attention operators ρR + ξP(g) multiplied by
    ``factors[c]`` relative to the mode convention (module docstring): 1 (this package), √2 (eq. 25's
    Attn^A − Attn^B used as the mode update, i.e. eq. 20 without the 1/√2 back to the mode) and 2
    (eq. 21 and 26 literally: δh = J_V h, R = 2A0J_V).
    """

    h: np.ndarray  # the direction, (N, D)
    jvp: np.ndarray  # K_g h = d/dt h+(t h) at t = 0 by torch.func.jvp, float64
    expanded: np.ndarray  # (3, N, D): (I + J_MLP)(I + f·[ρR + ξP(g)]) h for f in factors, eq. (30)/(32)
    factors: tuple[float, float, float] = (1.0, math.sqrt(2.0), 2.0)

    @property
    def residual(self) -> np.ndarray:
        """‖(32)·h − K_g h‖ / ‖(K_g − I) h‖ per reading (3,): round-off only for the mode convention."""
        return np.linalg.norm(self.expanded - self.jvp, axis=(-2, -1)) / np.linalg.norm(self.jvp - self.h)


def eq32_check(block: ToyDiTBlock, H0: Any, h: Any, g: float) -> Eq32Check:
    """Eq. (32) along h vs forward-mode autodiff of the whole coupled block (31), three √2 readings.

    The attention operators come from the explicit formulas of eq. (25) (closed-form LayerNorm JVP,
    softmax JVP (88); :func:`theory.attention_difference_terms`) divided by √2; J_MLP h from a JVP of
    the MLP branch alone at H̃0 (eq. 30); the reference K_g h from one ``torch.func.jvp`` through the
    coupled block h ↦ h+ (eq. 20, 13–14, 19). ``H0``, ``h``: (N, D).
    """
    import torch  # torch only where autodiff is used: `import theory` stays numpy-only

    check_g(g)
    H0 = as_float_array("H0", H0)
    h = as_float_array("h", h)
    if H0.ndim != 2 or H0.shape[1] != block.attn.D or h.shape != H0.shape:
        raise ValueError(f"H0 and h must both have shape (N, {block.attn.D}); got H0 {H0.shape}, h {h.shape}")
    H0_t, h_t = _t(H0), _t(h)
    _, Kh = torch.func.jvp(_mode_map(block, H0_t, g), (torch.zeros_like(h_t),), (h_t,))  # eq. (31)
    Ht0 = _post_attention_state(block, H0_t, g)
    terms = attention_difference_terms(block.attn, H0, h, g)
    attn_mode = terms.total / math.sqrt(2.0)  # [ρR + ξP(g)] h in the mode convention, eq. (29)
    factors = (1.0, math.sqrt(2.0), 2.0)
    expanded = []
    for f in factors:
        a = h + f * attn_mode  # (I + f[ρR + ξP]) h
        _, Ja = torch.func.jvp(lambda x: _mlp_branch(block, x), (Ht0,), (_t(a),))  # J_MLP a
        expanded.append(a + Ja.numpy())  # (I + J_MLP) a, eq. (30) = (32)
    return Eq32Check(h=h, jvp=Kh.numpy(), expanded=np.stack(expanded), factors=factors)
