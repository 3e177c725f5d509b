"""Compiled replica steppers (numba): the numpy path of :func:`theory.ou.simulate_replicas`, fused.

Importing this module needs numba (the optional ``fast`` extra); :mod:`theory.ou` falls back to
numpy when the import fails. Each kernel advances one block of pairs, in place, over K steps and
draws that block's normals from the block's own PCG64 ``numpy.random.Generator`` (numba reads
and advances the very same generator object), so the output is **bit-identical** to the numpy
path:

* the same draws in the same order — per step a full block of ``(block_size, 2, d)`` standard
  normals in C order (a partial last block draws the full block and uses its first rows), and
  numba's ``Generator.standard_normal`` is numpy's ziggurat over the same bit generator;
* the same float64 operations in the same order — the step coefficients are computed by the
  numpy code (:func:`theory.ou._em_coefficients`, :func:`theory.ou._exact_coefficients`) and
  passed in, and each element is combined exactly as numpy's whole-array expressions do
  (no fastmath, so LLVM neither reassociates nor contracts into FMAs).

Layout: ``z`` is a C-contiguous (nb, 2, d) float64 view of the block's rows; ``buf`` is a
(block_size, 2, d) scratch array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from .ou_streams import _NormalStream

_SQRT_HALF = math.sqrt(0.5)


@numba.njit(cache=True, nogil=True)
def _draw(gen: np.random.Generator, buf: np.ndarray) -> None:  # pragma: no cover - compiled
    flat = buf.reshape(-1)
    for i in range(flat.size):
        flat[i] = gen.standard_normal()


@numba.njit(cache=True, nogil=True)
def em_update(
    z: np.ndarray, xi: np.ndarray, c1: np.ndarray, c3: float, hg: float, coupled: bool
) -> None:  # pragma: no cover - compiled
    """``z ← ξ c₃ + z c₁ (+ swap(z) h g)``: :func:`theory.ou._em_step_linear`, element by element."""
    n, _, d = z.shape
    for i in range(n):
        for j in range(d):
            za, zb = z[i, 0, j], z[i, 1, j]
            oa = xi[i, 0, j] * c3
            oa = oa + za * c1[j]
            ob = xi[i, 1, j] * c3
            ob = ob + zb * c1[j]
            if coupled:
                oa = oa + zb * hg
                ob = ob + za * hg
            z[i, 0, j] = oa
            z[i, 1, j] = ob


@numba.njit(cache=True, nogil=True)
def exact_update(
    z: np.ndarray, xi: np.ndarray, phi_u: np.ndarray, sq_u: np.ndarray, phi_v: np.ndarray, sq_v: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Exact step of eq. (9)–(10): :func:`theory.ou._exact_step`, element by element."""
    n, _, d = z.shape
    for i in range(n):
        for j in range(d):
            za, zb = z[i, 0, j], z[i, 1, j]
            xa, xb = xi[i, 0, j], xi[i, 1, j]
            u = (za + zb) * _SQRT_HALF  # eq. (7)
            v = (za - zb) * _SQRT_HALF
            xu = (xa + xb) * _SQRT_HALF
            xv = (xa - xb) * _SQRT_HALF
            u = u * phi_u[j] + xu * sq_u[j]  # eq. (9)
            v = v * phi_v[j] + xv * sq_v[j]  # eq. (10)
            z[i, 0, j] = (u + v) * _SQRT_HALF
            z[i, 1, j] = (u - v) * _SQRT_HALF


@numba.njit(cache=True, nogil=True)
def em_block(
    gen: np.random.Generator,
    z: np.ndarray,
    buf: np.ndarray,
    c1: np.ndarray,
    c3: np.ndarray,
    hg: np.ndarray,
    coupled: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """K Euler–Maruyama steps of one block; ``c1`` (K, d), ``c3``/``hg``/``coupled`` (K,)."""
    for k in range(c1.shape[0]):
        _draw(gen, buf)
        em_update(z, buf, c1[k], c3[k], hg[k], coupled[k])


@numba.njit(cache=True, nogil=True)
def exact_block(
    gen: np.random.Generator,
    z: np.ndarray,
    buf: np.ndarray,
    phi_u: np.ndarray,
    sq_u: np.ndarray,
    phi_v: np.ndarray,
    sq_v: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """K exact steps of one block; every table (K, d)."""
    for k in range(phi_u.shape[0]):
        _draw(gen, buf)
        exact_update(z, buf, phi_u[k], sq_u[k], phi_v[k], sq_v[k])


# ---------------------------------------------------------------------------------------------
# drivers (plain Python): one kernel call per block, or per step when a callback or explicit noise needs it
def _drive(
    z: np.ndarray,
    t: np.ndarray,
    stream: _NormalStream | None,
    noise: np.ndarray | None,
    callback: Callable[[int, float, Any], None] | None,
    run_block: Callable[[Any, np.ndarray, np.ndarray, int, int], None],
    run_step: Callable[[int], None],
) -> np.ndarray:
    """Drive a compiled stepper: ``run_block(gen, rows, buf, k0, k1)`` advances one block's rows
    (in place) over steps k0 … k1−1 drawing from its generator; ``run_step(k)`` advances every
    row over step k with ``noise[k]``. Block-major (one kernel call per block) unless a
    callback needs every intermediate state."""
    n_steps = t.size - 1
    if callback is not None:
        callback(0, float(t[0]), z)
    if stream is None:
        for k in range(n_steps):
            run_step(k)
            if callback is not None:
                callback(k + 1, float(t[k + 1]), z)
        return z
    buf = np.empty((stream.B, 2, z.shape[2]))  # a full block of normals per step (ou_streams)
    blocks = [(gen, z[b * stream.B : (b + 1) * stream.B]) for b, gen in enumerate(stream.gens)]
    if callback is None:
        for gen, rows in blocks:
            run_block(gen, rows, buf, 0, n_steps)
        return z
    for k in range(n_steps):
        for gen, rows in blocks:
            run_block(gen, rows, buf, k, k + 1)
        callback(k + 1, float(t[k + 1]), z)
    return z


def run_em(
    z: np.ndarray,
    t: np.ndarray,
    coef: list[tuple[np.ndarray, float, float]],
    g_arr: np.ndarray,
    stream: _NormalStream | None,
    noise: np.ndarray | None,
    callback: Callable[[int, float, Any], None] | None,
) -> np.ndarray:
    """Euler–Maruyama (linear score) through the compiled kernels; bit-identical to the numpy loop."""
    c1 = np.stack([c[0] for c in coef])  # (K, d)
    c3 = np.array([c[1] for c in coef])  # (K,)
    hg = np.array([c[2] for c in coef])
    coupled = g_arr != 0.0  # the numpy step adds the swap term only where g ≠ 0

    def run_block(gen: Any, rows: np.ndarray, buf: np.ndarray, k0: int, k1: int) -> None:
        em_block(gen, rows, buf, c1[k0:k1], c3[k0:k1], hg[k0:k1], coupled[k0:k1])

    def run_step(k: int) -> None:
        em_update(z, np.ascontiguousarray(noise[k]), c1[k], c3[k], hg[k], coupled[k])

    return _drive(z, t, stream, noise, callback, run_block, run_step)


def run_exact(
    z: np.ndarray,
    t: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    stream: _NormalStream | None,
    noise: np.ndarray | None,
    callback: Callable[[int, float, Any], None] | None,
) -> np.ndarray:
    """Exact transitions through the compiled kernels; bit-identical to the numpy loop."""
    Phi_u, sq_u, Phi_v, sq_v = (np.ascontiguousarray(tab) for tab in tables)  # (K, d) each

    def run_block(gen: Any, rows: np.ndarray, buf: np.ndarray, k0: int, k1: int) -> None:
        exact_block(gen, rows, buf, Phi_u[k0:k1], sq_u[k0:k1], Phi_v[k0:k1], sq_v[k0:k1])

    def run_step(k: int) -> None:
        exact_update(z, np.ascontiguousarray(noise[k]), Phi_u[k], sq_u[k], Phi_v[k], sq_v[k])

    return _drive(z, t, stream, noise, callback, run_block, run_step)
