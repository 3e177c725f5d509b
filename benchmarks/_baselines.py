"""torchsde baselines for bench_theory.py: the same problems as the package's simulator, through
``torchsde.sdeint(method="euler")`` in reverse time τ = t_start − t (torchsde is the optional
``bench`` extra and is imported only here).

* :class:`ForwardIncrements` — the Brownian motion torchsde's fixed-step Euler needs and no more:
  plain N(0, h) increments drawn from one seeded generator as the sweep moves forward. torchsde's
  default ``BrownianInterval`` builds a dependency tree so that any interval can be queried in any
  order (for adaptive steps and adjoints); a fixed-step forward sweep never uses that, and it
  costs about 44 % of torchsde's Euler run time here, so the baseline would be slowed by
  machinery it does not need.
* :func:`coupled_ou` — replica pairs under eq. (4)–(6) with the linear score of eq. (8).
* :func:`mixture_pairs` — cloned pairs (g = 0) under the exact score of ``½N(+μ, s2 I) + ½N(−μ, s2 I)``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torchsde

from theory import GaussianData, VPSchedule

Brownian = Literal["plain", "interval"]  # ForwardIncrements, or torchsde's default BrownianInterval


class ForwardIncrements(torchsde.BaseBrownian):
    """Brownian increments ``W(tb) − W(ta) ~ N(0, (tb − ta) I)`` of shape (batch, channels), drawn from
    ``generator`` in the order they are asked for.

    Only the queries of a fixed-step forward sweep are allowed — consecutive intervals
    ``[t0, t1], [t1, t2], …`` — because independent increments are then exactly a Brownian path; any
    other query (a point, a repeated or overlapping interval, Lévy area) raises instead of returning
    numbers that no Brownian path has.
    """

    def __init__(
        self, t0: float, shape: tuple[int, int], dtype: torch.dtype, generator: torch.Generator
    ) -> None:
        self._shape, self._dtype, self._gen = torch.Size(shape), dtype, generator
        self._t = float(t0)

    def __call__(
        self, ta: float, tb: float | None = None, return_U: bool = False, return_A: bool = False
    ) -> torch.Tensor:
        if tb is None or return_U or return_A:
            raise ValueError("ForwardIncrements answers interval queries only (no points, no Levy area)")
        ta, tb = float(ta), float(tb)
        if ta != self._t or tb <= ta:
            raise ValueError(
                f"ForwardIncrements needs consecutive forward intervals: expected ta = {self._t!r} < tb, "
                f"got ta = {ta!r}, tb = {tb!r}"
            )
        self._t = tb
        dW = torch.randn(self._shape, generator=self._gen, dtype=self._dtype, device=self._gen.device)
        return dW.mul_(math.sqrt(tb - ta))

    def __repr__(self) -> str:
        return f"ForwardIncrements(t={self._t}, shape={tuple(self._shape)}, dtype={self._dtype})"

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._gen.device

    @property
    def shape(self) -> torch.Size:
        return self._shape

    @property
    def levy_area_approximation(self) -> str:
        return "none"


def _schedule(sched: VPSchedule, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(β_t, α_t²)`` of the linear VP schedule (eq. 1–3) as torch scalars."""
    b0, b1 = sched.beta_min, sched.beta_max - sched.beta_min
    return b0 + b1 * t, torch.exp(-(b0 * t + 0.5 * b1 * t * t))


class _ReverseVP(torch.nn.Module):
    """A diagonal Itô SDE in reverse time τ = t_start − t with the VP diffusion √β_t (eq. 2); subclasses
    give the drift ``f``."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, sched: VPSchedule, t_start: float) -> None:
        super().__init__()
        self.sched, self.t_start = sched, t_start

    def g(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _ = _schedule(self.sched, self.t_start - tau)
        return torch.sqrt(b).expand_as(y)


def _euler_final(
    sde: _ReverseVP, y0: torch.Tensor, t_end: float, n_steps: int, brownian: Brownian, seed: int
) -> torch.Tensor:
    """Final states (N, 2, d) of ``n_steps`` torchsde Euler steps of ``sde`` from ``y0`` (N, 2, d)."""
    n, _, d = y0.shape
    span = sde.t_start - t_end
    ts = torch.tensor([0.0, span], dtype=y0.dtype, device=y0.device)
    if brownian == "plain":
        gen = torch.Generator(device=y0.device).manual_seed(seed)
        bm = ForwardIncrements(0.0, (n, 2 * d), y0.dtype, gen)
    elif brownian == "interval":
        bm = torchsde.BrownianInterval(
            0.0, span, size=(n, 2 * d), dtype=y0.dtype, device=y0.device, entropy=seed
        )
    else:
        raise ValueError(f"brownian must be 'plain' or 'interval', got {brownian!r}")
    with torch.no_grad():
        ys = torchsde.sdeint(sde, y0.reshape(n, 2 * d), ts, bm=bm, method="euler", dt=span / n_steps)
    return ys[-1].view(n, 2, d)


def coupled_ou(
    data: GaussianData,
    sched: VPSchedule,
    t_start: float,
    t_end: float,
    g: float,
    n_steps: int,
    y0: torch.Tensor,
    *,
    brownian: Brownian = "plain",
    seed: int = 0,
) -> torch.Tensor:
    """Final states (N, 2, d) of ``n_steps`` Euler steps from ``y0`` (N, 2, d) at ``t_start`` to ``t_end``."""
    n, _, d = y0.shape
    lam = torch.tensor(data.eigenvalues, dtype=y0.dtype, device=y0.device)  # copy: the array is read-only

    class CoupledOU(_ReverseVP):
        def f(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            b, a2 = _schedule(sched, t_start - tau)
            S = a2 * lam + (1.0 - a2)
            z = y.view(n, 2, d)
            drift = 0.5 * b * z - b * z / S - g * (z - z.flip(1))  # eq. (4)-(6), linear score eq. (8)
            return drift.reshape(n, 2 * d)

    return _euler_final(CoupledOU(sched, t_start), y0, t_end, n_steps, brownian, seed)


def mixture_pairs(
    mu: np.ndarray,
    s2: float,
    sched: VPSchedule,
    t_start: float,
    t_end: float,
    n_steps: int,
    y0: torch.Tensor,
    *,
    brownian: Brownian = "plain",
    seed: int = 0,
) -> torch.Tensor:
    """Final states (N, 2, d): uncoupled replicas under the exact symmetric-mixture score."""
    n, _, d = y0.shape
    mu_t = torch.tensor(mu, dtype=y0.dtype, device=y0.device)

    class Mixture(_ReverseVP):
        def f(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            b, a2 = _schedule(sched, t_start - tau)
            a, var = torch.sqrt(a2), a2 * s2 + (1.0 - a2)
            z = y.view(2 * n, d)
            mean = a * torch.tanh(a * (z @ mu_t) / var)[:, None] * mu_t  # posterior mean α E[±μ | z]
            return (0.5 * b * z + b * (mean - z) / var).reshape(n, 2 * d)

    return _euler_final(Mixture(sched, t_start), y0, t_end, n_steps, brownian, seed)
