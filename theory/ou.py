"""Coupled reverse-time OU replicas (eq. 4–10): simulator, exact Gaussian transitions, mode variances.

Time convention. The paper writes eq. (4)–(6) with ``dt < 0``. Here everything is expressed
in the *forward* VP time ``t`` of :class:`~theory.schedules.VPSchedule`, run from ``t_grid[0]``
down to ``t_grid[-1]``, with the positive reverse-time increment ``dτ = −dt = t_k − t_{k+1}``.
In ``τ`` eq. (4)–(6) read (per replica, W̄ standard Brownian motions independent across replicas)

    dz^A = [½β z^A + β ∇log p_t(z^A) − g (z^A − z^B)] dτ + √β dW̄^A,          (eq. 4, 6)

so the coupling is a *restoring* force: with the modes ``u = (z^A+z^B)/√2``,
``v = (z^A−z^B)/√2`` (eq. 7) and the linear score ``−Σ_t⁻¹ z`` (eq. 8) each eigen-coordinate obeys

    du = a₀(t) u dτ + √β dW_u,    dv = (a₀(t) − 2g) v dτ + √β dW_v,         (eq. 9–10)
    a₀(t) = ½β(t) − β(t)/Σ_t,     Σ_t = α_t² λ + σ_t²,

with independent standard ``W_u, W_v``. ``g`` is per unit of VP time (as in eq. 4), constant
within each step (a per-step array allows schedules such as "g until t_int, then 0").

Exact transition over a step ``t₁ → t₂ < t₁`` for the scalar SDE ``dx = (a₀ − c) x dτ + √β dW``:
``x₂ = Φ x₁ + √Q ξ`` with, using ``d(α²)/dt = −β α²`` to integrate ``a₀`` in closed form,

    Φ = (α₁ Σ₂)/(α₂ Σ₁) · e^{−c (t₁−t₂)},
    Q = (Σ₂/α₂)² ∫_{t₂}^{t₁} β(s) α_s² Σ_s⁻² e^{−2c (s−t₂)} ds.

For ``c = 0`` the integral is closed-form, ``Q = Σ₂ (1 − α₁²/α₂²)/Σ₁``; for ``c > 0`` it is
evaluated by adaptive composite Gauss–Legendre quadrature whose panels follow the step size and
the spectrum (:mod:`theory._ou_quadrature`): ≤ 1e-10 relative error on any single step, a step
over the whole interval included (tested against ``scipy.integrate.quad``).

Backends (``backend=`` of :func:`simulate_replicas`):

* ``"numpy"`` — the reference implementation, float64.
* ``"numba"`` — compiled kernels (:mod:`theory._ou_numba`, optional ``fast`` extra) for
  ``GaussianData`` with either method; **bit-identical** to ``"numpy"`` (same draws from the
  same per-block generators, same float64 operations). Other data models and non-float64
  ``noise`` run the numpy code. Without numba installed it warns once and runs numpy.
* ``"auto"`` (default) — ``"numba"`` where installed and applicable, else ``"numpy"``, silently;
  the numbers are the same either way.
* ``"torch"`` — any dtype/device. For ``GaussianData`` it steps the modes ``u, v`` (eq. 9–10)
  in place (:mod:`theory._ou_torch`); other data models step ``z`` with the generic score.

Randomness. Pairs are split into blocks of ``block_size``; block ``b`` draws its normals from
its own stream seeded by ``(seed, purpose, b)`` (numpy ``SeedSequence``; torch ``Generator``
seeded from it). Hence pair ``i``'s trajectory depends only on ``(seed, i, block_size, d,
t_grid, backend, dtype, device)`` and not on the number of pairs simulated. It does depend on
torch versus numpy (whose normal generators differ; numpy, numba and auto share one), and on
torch's dtype/device. The torch u/v stepper uses its block's normals as the u/v noises directly.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from ._ou_quadrature import transition_table
from .ou_data import GaussianData, GaussianMixtureData, _const, _is_torch, marginal_variance, score
from .ou_streams import _STREAM_INIT, _STREAM_STEPS, Backend, _NormalStream, _resolve_backend
from .schedules import VPSchedule, beta
from .validation import as_float_array, check_positive_int, check_range

Method = Literal["euler_maruyama", "exact"]
Mode = Literal["common", "difference"]
ScoreFn = Callable[[Any, float], Any]

_SQRT_HALF = math.sqrt(0.5)


# ---------------------------------------------------------------------------------------------
# modes (eq. 7)
def common_difference(z: Any) -> tuple[Any, Any]:
    """``u = (z^A + z^B)/√2``, ``v = (z^A − z^B)/√2`` (eq. 7) for ``z`` of shape (..., 2, d)."""
    zA, zB = z[..., 0, :], z[..., 1, :]
    return (zA + zB) * _SQRT_HALF, (zA - zB) * _SQRT_HALF


def from_common_difference(u: Any, v: Any) -> Any:
    """Inverse of :func:`common_difference`: stack ``(u ± v)/√2`` to shape (..., 2, d)."""
    zA, zB = (u + v) * _SQRT_HALF, (u - v) * _SQRT_HALF
    if _is_torch(u):
        import torch

        return torch.stack([zA, zB], dim=-2)
    return np.stack([zA, zB], axis=-2)


# ---------------------------------------------------------------------------------------------
# exact linear transitions (eq. 9–10)
def _transition_table(
    data: GaussianData, sched: VPSchedule, t_from: np.ndarray, t_to: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized ``(Φ, Q)``, shape (S, d) each, for S steps ``t_from[i] → t_to[i]`` with damping ``c[i]``.

    Closed form for Φ and for Q where ``c = 0``; adaptive Gauss–Legendre quadrature whose panels
    follow the step size and the spectrum where ``c > 0`` (:mod:`theory._ou_quadrature`).
    """
    return transition_table(data.eigenvalues, sched, t_from, t_to, c)


def linear_transition(
    data: GaussianData, sched: VPSchedule, t_from: float, t_to: float, c: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(Φ, Q)``, shape (d,) each, of ``dx = (a₀ − c) x dτ + √β dW`` from ``t_from`` to ``t_to``.

    ``c = 0`` is the common mode (eq. 9), ``c = 2g`` the difference mode (eq. 10). Closed form
    for ``Φ`` always and for ``Q`` when ``c == 0``; adaptive Gauss–Legendre quadrature otherwise,
    relative error ≤ 1e-10 for any step (module docstring).
    """
    check_range("t_from", t_from, 0.0, sched.T)
    check_range("t_to", t_to, 0.0, t_from)
    check_range("c", c, 0.0, None)
    Phi, Q = _transition_table(
        data, sched, np.array([float(t_from)]), np.array([float(t_to)]), np.array([float(c)])
    )
    return Phi[0], Q[0]


def mode_variance(
    data: GaussianData,
    sched: VPSchedule,
    t: Any,
    g: float = 0.0,
    mode: Mode = "difference",
    t_start: float | None = None,
    var_start: Any = 1.0,
) -> np.ndarray:
    """Variance of ``u`` (``mode="common"``) or ``v`` (``"difference"``) at times ``t`` under eq. (9)/(10).

    Starts from variance ``var_start`` (scalar or (d,)) at ``t_start`` (default ``sched.T``);
    independent ``N(0, I)`` replicas give ``var_start = 1`` for both modes, a shared
    initialization ``z^A = z^B`` gives ``0`` for ``v``. Returns shape ``t.shape + (d,)``:
    ``Φ² var_start + Q`` over ``[t, t_start]`` in one exact step (closed form for the common mode;
    adaptive quadrature, relative error ≤ 1e-10, for ``g > 0``). Solves the Lyapunov ODE
    ``dP/dτ = 2(a₀ − c)P + β``.
    """
    t_start = sched.T if t_start is None else t_start
    t_arr = as_float_array("t", t)
    check_range("t", t_arr, 0.0, t_start)
    check_range("g", g, 0.0, None)
    c = 0.0 if mode == "common" else 2.0 * g  # eq. (10): the coupling acts on v only
    if mode not in ("common", "difference"):
        raise ValueError(f"mode must be 'common' or 'difference', got {mode!r}")
    v0 = np.broadcast_to(as_float_array("var_start", var_start), (data.dim,))
    check_range("var_start", v0, 0.0, None)
    t_flat = t_arr.ravel()
    Phi, Q = _transition_table(
        data, sched, np.full(t_flat.shape, float(t_start)), t_flat, np.full(t_flat.shape, c)
    )
    return (Phi**2 * v0 + Q).reshape(t_arr.shape + (data.dim,))


def init_replicas(
    n_pairs: int,
    dim: int,
    *,
    seed: int = 0,
    shared: bool = False,
    backend: Backend = "numpy",
    device: Any = None,
    dtype: Any = None,
    block_size: int = 4096,
) -> Any:
    """Replica pairs at ``t = T``: ``z^A, z^B ~ N(0, I)`` independent, or ``z^A = z^B`` if ``shared``.

    Shape (n_pairs, 2, dim), per-block streams as in the module docstring; ``"auto"`` and
    ``"numba"`` give the numpy array.
    """
    n_pairs = check_positive_int("n_pairs", n_pairs)
    dim = check_positive_int("dim", dim)
    block_size = check_positive_int("block_size", block_size)
    device, dtype = _resolve_backend(backend, device, dtype)
    arrays = "torch" if backend == "torch" else "numpy"
    z = _NormalStream(n_pairs, dim, seed, _STREAM_INIT, block_size, arrays, device, dtype).draw()
    if shared:
        z[:, 1] = z[:, 0]
    return z


def _check_grid(t_grid: Any, sched: VPSchedule) -> np.ndarray:
    t = as_float_array("t_grid", t_grid)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"t_grid must be a 1-D array of at least 2 times, got shape {t.shape}")
    check_range("t_grid", t, 0.0, sched.T)
    if np.any(np.diff(t) >= 0):
        raise ValueError("t_grid must be strictly decreasing (reverse process runs from t_grid[0] down)")
    return t


def _load_numba() -> Any:
    """The compiled kernels module, or ``None`` when numba cannot be imported."""
    try:  # sys.modules first: a test can hide numba by removing the module and the import
        return importlib.import_module(f"{__package__}._ou_numba")
    except ImportError:
        return None


def _select_backend(backend: Backend, data: Any, noise: Any) -> tuple[str, Any]:
    """``(array backend, numba kernels or None)`` for the ``backend`` argument (module docstring)."""
    if backend not in ("auto", "numba"):
        return backend, None
    if not isinstance(data, GaussianData) or (
        noise is not None and not (isinstance(noise, np.ndarray) and noise.dtype == np.float64)
    ):
        return "numpy", None  # the kernels cover the linear score with float64 noise only
    kernels = _load_numba()
    if kernels is None and backend == "numba":
        warnings.warn(
            "backend='numba' needs numba (pip install 'synchrogap[fast]'); running the numpy backend, "
            "which gives the same numbers",
            RuntimeWarning,
            stacklevel=3,
        )
    return "numpy", kernels


def simulate_replicas(
    data: GaussianData | GaussianMixtureData | ScoreFn,
    sched: VPSchedule,
    t_grid: Sequence[float] | np.ndarray,
    z_init: Any,
    g: float | Sequence[float] | np.ndarray = 0.0,
    *,
    method: Method = "euler_maruyama",
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
    dtype: Any = None,
    block_size: int = 4096,
    noise: Any = None,
    callback: Callable[[int, float, Any], None] | None = None,
) -> Any:
    """Integrate the coupled reverse SDE (eq. 4–6) for replica pairs; returns the final state.

    ``data``: a data model (exact score) or any ``score(z, t)`` callable acting on the last axis
    of (..., d) arrays/tensors of the chosen backend. ``z_init``: (n_pairs, 2, d), e.g. from
    :func:`init_replicas` or a cloned state. ``g``: scalar or per-step array (len(t_grid) − 1),
    ``≥ 0``. ``method``: ``"euler_maruyama"`` (any score; strong order 1 here because the noise
    is additive) or ``"exact"`` (``GaussianData`` only: the exact transition of eq. 9–10, no
    discretization error). Both consume the same standard normals ``ξ^A, ξ^B`` per step (EM
    scales them by ``√(β dτ)``; the exact step uses ``(ξ^A ± ξ^B)/√2`` as the u/v noises), so
    ``noise`` — an optional (n_steps, n_pairs, 2, d) array of standard normals — drives both
    with one Brownian path. ``callback(k, t_k, z)`` is called for k = 0 (initial state) …
    n_steps. ``backend``: ``"auto"`` (numba where installed, else numpy: same numbers),
    ``"numpy"``, ``"numba"`` or ``"torch"`` (module docstring). Sign convention: module docstring.
    """
    t = _check_grid(t_grid, sched)
    n_steps = t.size - 1
    g_arr = np.broadcast_to(as_float_array("g", g), (n_steps,)) if np.ndim(g) == 0 else as_float_array("g", g)
    if g_arr.shape != (n_steps,):
        raise ValueError(f"shape mismatch: g must be a scalar or have shape ({n_steps},), got {g_arr.shape}")
    check_range("g", g_arr, 0.0, None)
    device, dtype = _resolve_backend(backend, device, dtype)
    if backend == "torch":
        import torch

        z = torch.as_tensor(z_init, dtype=dtype, device=device).clone()
    else:
        z = np.array(z_init, dtype=np.float64)
    if z.ndim != 3 or z.shape[1] != 2:
        raise ValueError(f"z_init must have shape (n_pairs, 2, d), got {tuple(z.shape)}")
    n, _, d = z.shape
    if isinstance(data, (GaussianData, GaussianMixtureData)):
        if data.dim != d:
            raise ValueError(f"shape mismatch: z_init has d={d} but data has dim={data.dim}")
        score_fn: ScoreFn = lambda x, tt: score(data, sched, x, tt)  # noqa: E731
    elif callable(data):
        score_fn = data
    else:
        raise TypeError(f"data must be a data model or a score callable, got {type(data).__name__}")
    if method == "exact" and not isinstance(data, GaussianData):
        raise ValueError("method='exact' needs GaussianData (a linear score); use 'euler_maruyama'")
    if method not in ("euler_maruyama", "exact"):
        raise ValueError(f"method must be 'euler_maruyama' or 'exact', got {method!r}")
    if noise is not None and tuple(noise.shape) != (n_steps, n, 2, d):
        raise ValueError(
            f"shape mismatch: noise must have shape {(n_steps, n, 2, d)}, got {tuple(noise.shape)}"
        )
    arrays, kernels = _select_backend(backend, data, noise)
    stream = None
    if noise is None:
        stream = _NormalStream(
            n, d, seed, _STREAM_STEPS, check_positive_int("block_size", block_size), arrays, device, dtype
        )

    if method == "exact":  # all transitions up front: per step only the two affine maps remain
        Phi_u, Q_u = _transition_table(data, sched, t[:-1], t[1:], np.zeros(n_steps))
        Phi_v, Q_v = _transition_table(data, sched, t[:-1], t[1:], 2.0 * g_arr)  # eq. (10): c = 2g
        tables = (Phi_u, np.sqrt(Q_u), Phi_v, np.sqrt(Q_v))
    if kernels is not None:
        if method == "exact":
            return kernels.run_exact(z, t, tables, stream, noise, callback)
        coef = [
            _em_coefficients(data, sched, float(t[k]), float(t[k + 1]), float(g_arr[k]))
            for k in range(n_steps)
        ]
        return kernels.run_em(z, t, coef, g_arr, stream, noise, callback)
    if arrays == "torch" and isinstance(data, GaussianData):
        from ._ou_torch import run_uv

        if method == "exact":
            scale, shift = np.stack(tables[::2], axis=1), np.stack(tables[1::2], axis=1)  # (K, 2, d)
            return run_uv(z, t, scale, shift, False, stream, noise, callback)
        scale = np.empty((n_steps, 2, d))
        shift = np.empty(n_steps)
        for k in range(n_steps):  # u: 1 + h a₀ (eq. 9); v: 1 + h (a₀ − 2g) (eq. 10)
            scale[k], shift[k] = _uv_em_coefficients(
                data, sched, float(t[k]), float(t[k + 1]), float(g_arr[k])
            )
        return run_uv(z, t, scale, shift, True, stream, noise, callback)

    if callback is not None:
        callback(0, float(t[0]), z)
    for k in range(n_steps):
        t1, t2 = float(t[k]), float(t[k + 1])
        xi = stream.draw() if stream is not None else noise[k]
        if method == "euler_maruyama" and isinstance(data, GaussianData):
            z = _em_step_linear(data, sched, z, xi, t1, t2, float(g_arr[k]), owned=stream is not None)
        elif method == "euler_maruyama":
            z = _em_step(score_fn, sched, z, xi, t1, t2, float(g_arr[k]))
        else:
            z = _exact_step(z, xi, *(tab[k] for tab in tables))
        if callback is not None:
            callback(k + 1, t2, z)
    return z


def _em_step(score_fn: ScoreFn, sched: VPSchedule, z: Any, xi: Any, t1: float, t2: float, g: float) -> Any:
    """One Euler–Maruyama step of eq. (4)–(6) in reverse time ``dτ = t1 − t2`` (drift at ``t1``)."""
    h = t1 - t2
    b = float(beta(sched, t1))
    drift = 0.5 * b * z + b * score_fn(z, t1)  # eq. (4)-(6) with dt = −dτ
    if g != 0.0:
        swapped = z.flip(1) if _is_torch(z) else z[:, ::-1, :]  # (n, 2, d): rows (z^B, z^A)
        drift = drift - g * (z - swapped)
    return z + h * drift + math.sqrt(b * h) * xi


def _em_coefficients(
    data: GaussianData, sched: VPSchedule, t1: float, t2: float, g: float
) -> tuple[np.ndarray, float, float]:
    """``(c₁, c₃, h g)`` of the fused linear EM step ``z′ = c₃ ξ + c₁ z + h g swap(z)`` (eq. 4–8).

    ``c₁ = 1 + h(½β − β/Σ_t − g)`` (d,), ``c₃ = √(β h)``, drift at ``t1``, ``h = t1 − t2``. The
    numpy and numba steppers both use these very numbers.
    """
    h = t1 - t2
    b = float(beta(sched, t1))
    c1 = 1.0 + h * (0.5 * b - b / marginal_variance(data, sched, t1) - g)
    return c1, math.sqrt(b * h), h * g


def _uv_em_coefficients(
    data: GaussianData, sched: VPSchedule, t1: float, t2: float, g: float
) -> tuple[np.ndarray, float]:
    """EM in the modes: ``((1 + h a₀, 1 + h(a₀ − 2g)), √(β h))``, shapes ((2, d), scalar) (eq. 9–10)."""
    h = t1 - t2
    b = float(beta(sched, t1))
    a0 = 0.5 * b - b / marginal_variance(data, sched, t1)
    return np.stack([1.0 + h * a0, 1.0 + h * (a0 - 2.0 * g)]), math.sqrt(b * h)


def _em_step_linear(
    data: GaussianData, sched: VPSchedule, z: Any, xi: Any, t1: float, t2: float, g: float, owned: bool
) -> Any:
    """:func:`_em_step` for the linear score (eq. 8), fused into ``c₃ ξ + c₁ z + h g swap(z)`` (numpy).

    Same arithmetic as the generic step up to rounding order. When ``owned`` (the noise buffer
    was drawn for this step only) the result is accumulated in place in ``xi``. The numba
    kernel ``_ou_numba.em_update`` performs exactly these operations element by element.
    """
    c1, c3, hg = _em_coefficients(data, sched, t1, t2, g)  # c1: (d,)
    out = np.multiply(xi, c3, out=xi if owned else None)
    out += z * c1
    if g != 0.0:
        out += z[:, ::-1, :] * hg
    return out


def _exact_step(
    z: Any, xi: Any, Phi_u: np.ndarray, sq_u: np.ndarray, Phi_v: np.ndarray, sq_v: np.ndarray
) -> Any:
    """Exact transition of eq. (9)–(10) over one step, given its ``(Φ, √Q)`` (module docstring)."""
    u, v = common_difference(z)
    xi_u, xi_v = common_difference(xi)  # independent standard normals
    u = u * _const(Phi_u, u) + xi_u * _const(sq_u, u)  # eq. (9)
    v = v * _const(Phi_v, v) + xi_v * _const(sq_v, v)  # eq. (10)
    return from_common_difference(u, v)
