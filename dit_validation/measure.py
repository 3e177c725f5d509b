"""The theory's block quantities measured inside a DiT: χ_k, π_k, λ_k^MLP, η_k, m_k, c_k.

For block ℓ at reverse step s, around the symmetric (common-mode) state H0 with the model's own adaLN
conditioning (timestep and class embedding as the block computes them), and along unit modes r_k of the
replica-difference space (N·D, the block's input = output space), eq. (44)–(47):

* the attention sublayer's difference Jacobian splits exactly by the product rule (eq. 25–26) into the value
  path with the attention map frozen (routing, R) and the attention-map path (pattern modulation, P), the
  latter further into the query-side and key-side parts P_q, P_k. Under the coupling of eq. (19) the intra
  block perturbs queries and keys alike while the inter block sees the partner's key with the opposite
  sign, so the g-dependent pattern operator of eq. (26) is P(g) = (1 + g) P_q + (1 − g) P_k and the coupled
  attention Jacobian is ρ(g) R + ξ(g) P(g) = ρ(g)(R + P_k) + P_q.
* J_MLP is the MLP sublayer's Jacobian at the post-attention state H0' (eq. 30); the cross term of eq. (32)
  is J_MLP[ρ R + ξ P(g)].

Conventions: the difference mode is v = (H^A − H^B)/√2 and the block maps it to v⁺ = K_g v + O(v²), so
η_k(g) = r_kᵀ K_g r_k (eq. 44) with K_g = I + J_MLP + ρR + ξP(g) + J_MLP[ρR + ξP(g)] (eq. 32); the paper's
factor 2 in eq. (26) is absorbed into R and P (they are defined as the parts of K_g, not of Attn^A − Attn^B).
χ_k = r_kᵀ R r_k, π_k(g) = r_kᵀ P(g) r_k, λ_k^MLP = r_kᵀ J_MLP r_k (eq. 47). Measured by forward-mode
autodiff (`torch.func.jvp`) in float64 on a copy of the model; the routing/pattern split is made by an
attention processor that detaches (primal only) the inputs of the path that must not carry the tangent, and
the block's own forward is called — the model's code is never copied.

m_k, c_k (eq. 44) are estimated from the projections p_j = r_kᵀ v_j of M replica differences by the method
of moments of the symmetric mixture ½N(+m_k, c_k) + ½N(−m_k, c_k) (eq. 34 projected): E p² = m² + c,
E p⁴ = m⁴ + 6 m² c + 3 c², hence m_k² = sqrt(max(0, (3 μ₂² − μ₄)/2)) and c_k = μ₂ − m_k² (a Gaussian
spread, μ₄ = 3 μ₂², gives m_k = 0; two sharp branches, μ₄ = μ₂², give c_k = 0).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from diffusers.models.attention_processor import Attention
from torch.func import jvp

from theory import rho as rho_gate

from .capture import DifferenceCapture
from .coupling import CoupledAttnProcessor, CouplingState
from .heads import check_self_attention, merge_heads, output_projection, project_qkv
from .models import DiTBundle, place_module
from .sampler import sample_pairs

log = logging.getLogger(__name__)

Path_ = Literal["full", "routing", "pattern_q", "pattern_k", "none"]
PATHS: tuple[Path_, ...] = ("full", "routing", "pattern_q", "pattern_k", "none")


class LinearizationProcessor:
    """Self-attention processor whose `path` flag selects which inputs carry the JVP tangent.

    full: ordinary attention. routing: q, k detached → A0 δV (attention map frozen). pattern_q / pattern_k:
    only the query / key side carries the tangent, values detached → δA V0. none: everything detached, so
    the attention sublayer contributes no tangent and the block's JVP isolates the MLP sublayer.
    `record=True` stores the primal A0 (B, H, N, N) and V0 (B, H, N, d) of the last call (for Appendix B).
    """

    def __init__(self) -> None:
        self.path: Path_ = "full"
        self.record = False
        self.last: dict[str, torch.Tensor] = {}

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        **kwargs: Any,
    ) -> torch.Tensor:
        check_self_attention(
            attn, hidden_states, encoder_hidden_states, attention_mask, "LinearizationProcessor"
        )
        q, k, v = project_qkv(attn, hidden_states)  # (B, H, N, d)
        p = self.path
        if p in ("routing", "pattern_k", "none"):
            q = q.detach()
        if p in ("routing", "pattern_q", "none"):
            k = k.detach()
        if p in ("pattern_q", "pattern_k", "none"):
            v = v.detach()
        S = q @ k.transpose(-1, -2) * attn.scale  # (B, H, N, N) logits, eq. (16)
        A = torch.softmax(S, dim=-1)  # eq. (18)
        if self.record:  # kept with their tangents inside a jvp (Appendix B needs δS and δV)
            self.last = {"A0": A, "V0": v, "S": S}
        return output_projection(attn, merge_heads(A @ v), hidden_states)


@dataclass
class LinearizedDiT:
    """A float64 copy of a DiT with a `LinearizationProcessor` on every block's self-attention."""

    transformer: torch.nn.Module
    processors: list[LinearizationProcessor]

    def set_path(self, path: Path_) -> None:
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        for proc in self.processors:
            proc.path = path


def linearized_copy(transformer: torch.nn.Module) -> LinearizedDiT:
    """Float64 CPU deep copy of `transformer` with linearization processors (the original is untouched)."""
    model = place_module(copy.deepcopy(transformer), "cpu", torch.float64)
    procs = []
    for block in model.transformer_blocks:
        proc = LinearizationProcessor()
        block.attn1.set_processor(proc)
        procs.append(proc)
    return LinearizedDiT(model, procs)


def _block_call(lin: LinearizedDiT, layer: int, t: int, label: int):
    """H (B, N, D) → (block output, post-attention state H') with the block's own conditioning."""
    block = lin.transformer.transformer_blocks[layer]
    stash: dict[str, torch.Tensor] = {}

    def grab(_module, args):
        stash["H1"] = args[0]  # input of norm3 = H + α·Attn, the MLP sublayer's input (eq. 30)

    def f(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = H.shape[0]
        ts = torch.full((B,), int(t), dtype=torch.long)
        ys = torch.full((B,), int(label), dtype=torch.long)
        hook = block.norm3.register_forward_pre_hook(grab)
        try:
            out = block(H, timestep=ts, class_labels=ys)
        finally:
            hook.remove()
        return out, stash["H1"]

    return f


def _jvp(
    lin: LinearizedDiT, layer: int, t: int, label: int, path: Path_, H0: torch.Tensor, tangent: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tangents (d out, d H') of block `layer` along `tangent` (B, N, D) with attention path `path`."""
    lin.set_path(path)
    f = _block_call(lin, layer, t, label)
    try:
        _, (d_out, d_h1) = jvp(f, (H0,), (tangent,))
    finally:
        lin.set_path("full")
    return d_out, d_h1


def _quad(r: torch.Tensor, w: torch.Tensor) -> np.ndarray:
    """Row-wise r_kᵀ w_k for (K, N, D) tensors → (K,) float64."""
    return (r * w).flatten(1).sum(1).numpy()


def block_quantities(
    lin: LinearizedDiT, layer: int, t: int, label: int, H0: torch.Tensor, r: torch.Tensor
) -> dict[str, np.ndarray]:
    """χ_k, π_k (query/key parts), λ_k^MLP, cross terms and the full quadratic form along modes r.

    H0: symmetric state (N, D) entering block `layer`; r: unit modes (K, N, D). Returns (K,) arrays:
    chi, pi_q, pi_k, pi (= pi_q + pi_k = π_k(g = 0)), lambda_mlp, cross_R, cross_q, cross_k (r_kᵀ J_MLP X r_k
    for X = R, P_q, P_k), cross (= their sum at g = 0) and quad_full = r_kᵀ(J_block − I) r_k from one JVP
    of the unmodified block (eq. 32 at g = 0 says quad_full = chi + pi + lambda_mlp + cross exactly).
    """
    H = H0.to(torch.float64).expand(r.shape[0], *H0.shape).contiguous()  # (K, N, D)
    r = r.to(torch.float64)
    out: dict[str, np.ndarray] = {}
    d_out, _ = _jvp(lin, layer, t, label, "full", H, r)
    out["quad_full"] = _quad(r, d_out - r)
    parts = {}
    for name, path in (("R", "routing"), ("q", "pattern_q"), ("k", "pattern_k")):
        _, d_h1 = _jvp(lin, layer, t, label, path, H, r)
        parts[name] = d_h1 - r  # the attention sublayer's tangent: R r, P_q r, P_k r
    out["chi"] = _quad(r, parts["R"])  # eq. (47)
    out["pi_q"] = _quad(r, parts["q"])
    out["pi_k"] = _quad(r, parts["k"])
    out["pi"] = out["pi_q"] + out["pi_k"]
    d_out, d_h1 = _jvp(lin, layer, t, label, "none", H, r)
    out["lambda_mlp"] = _quad(r, d_out - d_h1)  # eq. (47): attention carries no tangent here
    for name in ("R", "q", "k"):
        d_out, d_h1 = _jvp(lin, layer, t, label, "none", H, parts[name])
        out[f"cross_{name}"] = _quad(r, d_out - d_h1)  # r_kᵀ J_MLP X r_k, eq. (32)
    out["cross"] = out["cross_R"] + out["cross_q"] + out["cross_k"]
    return out


def pi_of_g(q: dict[str, np.ndarray], g: float) -> np.ndarray:
    """π_k(g) = r_kᵀ P(g) r_k, P(g) = (1 + g) P_q + (1 − g) P_k (eq. 26 via the measured parts)."""
    return (1.0 + g) * q["pi_q"] + (1.0 - g) * q["pi_k"]


def cross_of_g(q: dict[str, np.ndarray], g: float) -> np.ndarray:
    """r_kᵀ J_MLP[ρ(g) R + ξ(g) P(g)] r_k = ρ (cross_R + cross_k) + cross_q (eq. 32's cross term)."""
    return rho_gate(g) * (q["cross_R"] + q["cross_k"]) + q["cross_q"]


def coupled_quadratic_form(
    lin: LinearizedDiT,
    layer: int,
    t: int,
    label: int,
    H0: torch.Tensor,
    r: torch.Tensor,
    g: float,
    step: float = 1e-4,
) -> np.ndarray:
    """r_kᵀ(K_g − I) r_k of the replica-coupled block (eq. 19) by a central difference of its replica map.

    Independent of the path split: the pairs (H0 ± a r/√2) run through the block with `dit_validation.
    coupling`'s processor (eq. 18–19) at strength g, v⁺(a) = (out_A − out_B)/√2, and the derivative at a = 0
    is (v⁺(step) − v⁺(−step)) / (2 step) in float64 (truncation error O(step²) ≈ 1e-8 relative).
    """
    block = lin.transformer.transformer_blocks[layer]
    state = CouplingState()
    state.assign(g)  # validated by the caller's configuration
    saved = block.attn1.processor
    block.attn1.set_processor(CoupledAttnProcessor(state))
    K = r.shape[0]
    H = H0.to(torch.float64).expand(K, *H0.shape)
    r = r.to(torch.float64)
    ts = torch.full((2 * K,), int(t), dtype=torch.long)
    ys = torch.full((2 * K,), int(label), dtype=torch.long)

    def v_plus(a: float) -> torch.Tensor:
        pair = torch.cat([H + a * r / np.sqrt(2), H - a * r / np.sqrt(2)])  # (2K, N, D): rows i, i + K pair
        o = block(pair, timestep=ts, class_labels=ys)
        return (o[:K] - o[K:]) / np.sqrt(2)

    try:
        with torch.no_grad():
            dv = (v_plus(step) - v_plus(-step)) / (2 * step)
    finally:
        block.attn1.set_processor(saved)
    return _quad(r, dv - r)


def dominance(
    lin: LinearizedDiT, layer: int, t: int, label: int, H0: torch.Tensor, r: torch.Tensor
) -> dict[str, np.ndarray]:
    """Routing dominance ‖δA V0‖/‖A0 δV‖ per mode against the Appendix B bound, eq. (105).

    δS and δV are the JVP tangents of the attention logits and values of block `layer` along r_k (K, N, D);
    A0, V0 the primal attention map and values at H0; `theory.dominance_report` evaluates both sides per
    head. Returns (K,) arrays, medians over heads: `ratio`, `bound` and `eps_dv` = ‖P⊥δV‖/‖P0δV‖ (eq. 102),
    the token incoherence of the mode that decides whether Appendix B's premise (ε_δV ≪ 1) holds.
    """
    from theory import dominance_report

    proc = lin.processors[layer]
    H = H0.to(torch.float64).expand(r.shape[0], *H0.shape).contiguous()
    f = _block_call(lin, layer, t, label)

    def logits_values_map(x: torch.Tensor):
        f(x)
        return proc.last["S"], proc.last["V0"], proc.last["A0"]

    proc.record = True
    try:
        (_, V0, A0), (dS, dV, _) = jvp(logits_values_map, (H,), (r.to(torch.float64),))
    finally:
        proc.record, proc.last = False, {}
    rep = dominance_report(A0.numpy(), dS.numpy(), V0.numpy(), dV.numpy())  # (K, H) each
    ratio, bound = np.asarray(rep.ratio), np.asarray(rep.bound)
    return {
        "ratio": np.median(ratio, axis=-1),
        "bound": np.median(bound, axis=-1),
        "eps_dv": np.median(np.asarray(rep.eps_dV), axis=-1),
    }


def pushed_modes(
    lin: LinearizedDiT, x: torch.Tensor, phi: torch.Tensor, t: int, label: int, layers: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Branch directions pushed into the residual stream: modes at each block's input, by one JVP.

    x (C, H, W) a symmetric point, φ (F, C, H, W) unit directions in sample space. Returns the symmetric
    state H0 entering each block (L, N, D), the unit modes r_f^(ℓ) = J_ℓ φ_f / ‖J_ℓ φ_f‖ (L, F, N, D) with
    J_ℓ the Jacobian of the map from the sample to block ℓ's input (patch embedding and the blocks before
    ℓ), and the gains ‖J_ℓ φ_f‖ (L, F). These are the modes §2.5 asks for: aligned with the branch
    separation, in the coordinates where the block Jacobian is taken (its input).
    """
    model = lin.transformer
    F = phi.shape[0]
    X = x.to(torch.float64).expand(F, *x.shape).contiguous()
    ts = torch.full((F,), int(t), dtype=torch.long)
    ys = torch.full((F,), int(label), dtype=torch.long)
    blocks = [model.transformer_blocks[ell] for ell in layers]

    def block_inputs(z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        seen: list[torch.Tensor] = []
        hooks = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for b in blocks]
        try:
            model(z, timestep=ts, class_labels=ys)
        finally:
            for h in hooks:
                h.remove()
        return tuple(seen)

    primal, tangent = jvp(block_inputs, (X,), (phi.to(torch.float64),))
    H0 = torch.stack([p[0] for p in primal])  # (L, N, D): the same symmetric state in every row
    r = torch.stack(tangent)  # (L, F, N, D)
    gain = r.flatten(2).norm(dim=-1)  # (L, F)
    return H0, r / gain[..., None, None].clamp_min(1e-300), gain.numpy()


class StepProjector:
    """Signed projections p = r_kᵀ v of the replica difference (eq. 74) at chosen steps and layers.

    ``bases[s]`` (L, K, D) for each measured step s (the basis may change with s); :meth:`into` gives the
    capture consumer for a batch of pair rows and :meth:`on_step` advances with the sampler.
    """

    def __init__(self, bases: dict[int, torch.Tensor], M: int) -> None:
        self.steps = sorted(bases)
        self.bases = bases
        L, K, _ = next(iter(bases.values())).shape
        self.p = np.full((len(self.steps), L, K, M), np.nan)
        self._step = 0

    def into(self, rows: Sequence[int]):
        rows = list(rows)
        self._step = 0

        def consume(j: int, v: torch.Tensor) -> None:
            if self._step in self.bases:
                i = self.steps.index(self._step)
                self.p[i, j][:, rows] = (v @ self.bases[self._step][j].T.to(v)).T.cpu().numpy()

        return consume

    def on_step(self, step: int, timestep: int, latents: torch.Tensor) -> None:
        self._step = step + 1


def block_input_projections(
    bundle: DiTBundle,
    g: float,
    seeds: Sequence[int],
    sigma: float,
    num_steps: int,
    class_label: int,
    layers: Sequence[int],
    bases: dict[int, torch.Tensor],
    batch_size: int = 64,
) -> np.ndarray:
    """Protocol II's pair differences at each block's *input*, projected on step-dependent modes.

    Pairs start from eq. (67) with ``sigma``, stay coupled at g, DDIM η = 0 (§3.2). Returns
    p (S_b, L, K, M) at the steps of ``bases`` ({s: (L, K, D)}), where the block Jacobian is taken too.
    """
    seeds = list(seeds)
    proj = StepProjector(bases, len(seeds))
    for lo in range(0, len(seeds), batch_size):
        rows = list(range(lo, min(lo + batch_size, len(seeds))))
        with DifferenceCapture(
            bundle.transformer, layers, bundle.guidance_scale > 1.0, proj.into(rows), at="input"
        ):
            sample_pairs(
                bundle,
                [seeds[m] for m in rows],
                g=float(g),
                num_steps=num_steps,
                ddim_eta=0.0,
                sigma=sigma,
                class_label=class_label,
                guidance_scale=bundle.guidance_scale,
                device=bundle.device,
                callback=proj.on_step,
            )
    return proj.p
