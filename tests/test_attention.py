"""Coupled replica attention, eq. (16)–(19): properties (i)–(iii) of §2.2 on numpy and torch.

References are independent of theory.attention: scipy.special.softmax for numpy and
torch.nn.functional.scaled_dot_product_attention for torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import coupled_attention, mixture_weights

# Shapes (2, ..., N, d): single head and (batch, heads) multi-head.
SHAPES = [(2, 7, 4), (2, 3, 2, 5, 8)]
TOL = 1e-13  # float64 round-off of a few matmuls and a softmax


def _ref_attention_np(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ordinary single-sequence attention softmax(qkᵀ/√d) v, eq. (16)+(18)."""
    return scipy.special.softmax(q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]), axis=-1) @ v


def _ref_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _qkv(shape: tuple[int, ...], seed: int, backend: str, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    arrs = [2.0 * rng.standard_normal(shape) for _ in range(3)]
    if backend == "torch":
        return [torch.tensor(a, dtype=dtype) for a in arrs]
    return arrs


def _ref(backend: str):
    return _ref_attention_torch if backend == "torch" else _ref_attention_np


def _close(a, b, tol=TOL) -> bool:
    a = a.detach().numpy() if hasattr(a, "detach") else a
    b = b.detach().numpy() if hasattr(b, "detach") else b
    return bool(np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b))))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES)
def test_decoupled_at_g0(backend, shape):
    """(i) g = 0: each replica is ordinary attention over its own tokens."""
    q, k, v = _qkv(shape, 0, backend)
    out = coupled_attention(q, k, v, 0.0)
    ref = _ref(backend)
    assert _close(out[0], ref(q[0], k[0], v[0]))
    assert _close(out[1], ref(q[1], k[1], v[1]))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_no_shared_partition_function_at_g0(backend):
    """Separate block softmax (18): at g = 0 replica A's output ignores replica B entirely."""
    q, k, v = _qkv((2, 6, 3), 1, backend)
    q2, k2, v2 = _qkv((2, 6, 3), 2, backend)
    for x, x2 in ((q, q2), (k, k2), (v, v2)):
        x2[0] = x[0]  # same replica A, different replica B
    a = coupled_attention(q, k, v, 0.0)[0]
    b = coupled_attention(q2, k2, v2, 0.0)[0]
    assert _close(a, b, 0.0)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("g", [0.0, 0.3, 1.0])
def test_exchange_symmetry(backend, shape, g):
    """(ii) swapping the replicas swaps the outputs, for every g."""
    q, k, v = _qkv(shape, 3, backend)
    out = coupled_attention(q, k, v, g)
    flip = (lambda x: x.flip(0)) if backend == "torch" else (lambda x: x[::-1])
    swapped = coupled_attention(flip(q), flip(k), flip(v), g)
    assert _close(swapped, flip(out), 0.0)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("g", [0.0, 0.5, 1.0])
def test_identical_replicas_give_ordinary_attention(backend, shape, g):
    """Normalization (iii): identical replicas reproduce ordinary attention at any g."""
    q, k, v = _qkv(shape, 4, backend)
    for x in (q, k, v):
        x[1] = x[0]
    out = coupled_attention(q, k, v, g)
    ref = _ref(backend)(q[0], k[0], v[0])
    assert _close(out[0], ref) and _close(out[1], ref)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES)
def test_mixture_formula(backend, shape):
    """eq. (19) against its four blocks computed with the independent reference softmax."""
    g = 0.37
    q, k, v = _qkv(shape, 5, backend)
    ref = _ref(backend)
    want_A = (ref(q[0], k[0], v[0]) + g * ref(q[0], k[1], v[1])) / (1 + g)
    want_B = (ref(q[1], k[1], v[1]) + g * ref(q[1], k[0], v[0])) / (1 + g)
    out, W = coupled_attention(q, k, v, g, return_weights=True)
    assert _close(out[0], want_A) and _close(out[1], want_B)
    for block in W:
        rows = block.sum(-1)
        assert _close(rows, rows * 0 + 1)


@given(g=st.floats(0.0, 1.0))
@settings(max_examples=200, deadline=None)
def test_mixture_weights_sum_to_one(g):
    w_intra, w_inter = mixture_weights(g)
    assert w_intra + w_inter == pytest.approx(1.0, abs=1e-15)
    assert w_intra == pytest.approx(1.0 / (1.0 + g), rel=1e-15)
    assert w_inter == pytest.approx(g / (1.0 + g), rel=1e-15, abs=1e-300)


@given(
    seed=st.integers(0, 2**32 - 1),
    N=st.integers(1, 12),
    d=st.integers(1, 6),
    g=st.floats(0.0, 1.0),
    log_temp=st.floats(-3.0, 3.0),
)
@settings(max_examples=150, deadline=None)
def test_properties_random(seed, N, d, g, log_temp):
    """(i)–(iii) for random shapes and logit temperatures from one-hot to uniform (numpy)."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((2, N, d)) for _ in range(3))
    q = q * 10.0**log_temp
    out = coupled_attention(q, k, v, g)
    assert np.allclose(coupled_attention(q[::-1], k[::-1], v[::-1], g), out[::-1], rtol=0, atol=0)
    out0 = coupled_attention(q, k, v, 0.0)
    assert np.allclose(out0[0], _ref_attention_np(q[0], k[0], v[0]), rtol=0, atol=1e-12)
    same = [np.stack([x[0], x[0]]) for x in (q, k, v)]
    assert np.allclose(
        coupled_attention(*same, g)[1], _ref_attention_np(q[0], k[0], v[0]), rtol=0, atol=1e-12
    )


def test_numpy_computes_in_float64():
    q, k, v = (x.astype(np.float32) for x in _qkv((2, 4, 3), 6, "numpy"))
    assert coupled_attention(q, k, v, 0.5).dtype == np.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_keeps_dtype(dtype):
    q, k, v = _qkv((2, 2, 4, 3), 7, "torch", dtype)
    assert coupled_attention(q, k, v, 0.5).dtype == dtype


def test_torch_autograd_gradcheck():
    """Gradients flow through all three inputs (float64 finite differences)."""
    q, k, v = (x.requires_grad_() for x in _qkv((2, 2, 3, 2), 8, "torch"))
    assert torch.autograd.gradcheck(lambda a, b, c: coupled_attention(a, b, c, 0.6), (q, k, v))


def test_stable_for_huge_logits():
    """A row maximum of ~1e4 must not overflow exp() (numerically stable softmax)."""
    q, k, v = _qkv((2, 5, 3), 9, "numpy")
    out = coupled_attention(1e4 * q, k, v, 0.5)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("g", [-0.1, 1.5])
def test_rejects_g_outside_unit_interval(g):
    q, k, v = _qkv((2, 4, 3), 0, "numpy")
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got " + str(g)):
        coupled_attention(q, k, v, g)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_rejects_bad_replica_axis(backend):
    q, k, v = _qkv((3, 4, 3), 0, backend)
    msg = r"q must stack the two replicas on a leading axis of size 2, got axis 0 of size 3"
    with pytest.raises(ValueError, match=msg):
        coupled_attention(q, k, v, 0.5)
    q2, k2, v2 = _qkv((2, 4, 3), 0, backend)
    with pytest.raises(ValueError, match=r"v must have shape \(2, \.\.\., N, d\)"):
        coupled_attention(q2, k2, v2[0], 0.5)


def test_rejects_mismatched_tokens_and_width():
    q, k, v = _qkv((2, 4, 3), 0, "numpy")
    with pytest.raises(ValueError, match=r"k has N=5 tokens but q has N=4"):
        coupled_attention(q, np.zeros((2, 5, 3)), v, 0.5)
    with pytest.raises(ValueError, match=r"v has N=6 tokens but q has N=4"):
        coupled_attention(q, k, np.zeros((2, 6, 3)), 0.5)
    with pytest.raises(ValueError, match=r"k has feature width d=2 but q has d=3"):
        coupled_attention(q, np.zeros((2, 4, 2)), v, 0.5)
    with pytest.raises(ValueError, match=r"v has feature width d=5 but q has d=3"):
        coupled_attention(q, k, np.zeros((2, 4, 5)), 0.5)
    with pytest.raises(TypeError, match="all numpy arrays or all torch tensors"):
        coupled_attention(q, torch.tensor(k), v, 0.5)
    with pytest.raises(ValueError, match="q must be finite"):
        coupled_attention(np.full((2, 4, 3), np.nan), k, v, 0.5)
