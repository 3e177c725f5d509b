"""Replica-coupled attention (eq. 18–19): reference, g = 0 exactness, A↔B symmetry, handle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dit_validation.coupling import CoupledAttnProcessor, CouplingState, install_coupling
from theory import coupled_attention


def _block_reference(q, k, v, g):
    """Independent float64 eq. (19): build the 2N x 2N logits (eq. 16–17), softmax per block (eq. 18)."""
    qa, qb = q
    ka, kb = k
    va, vb = v
    d = qa.shape[-1]

    def blk(qq, kk):
        s = qq @ kk.T / np.sqrt(d)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    out_a = (blk(qa, ka) @ va + g * blk(qa, kb) @ vb) / (1 + g)
    out_b = (blk(qb, kb) @ vb + g * blk(qb, ka) @ va) / (1 + g)
    return out_a, out_b


def _attention_core(attn, x):
    """Per-head q, k, v (B, H, N, d) float64 from the layer's own projections."""
    B, N, _ = x.shape
    H = attn.heads
    q = attn.to_q(x).view(B, N, H, -1).transpose(1, 2).double().numpy()
    k = attn.to_k(x).view(B, N, H, -1).transpose(1, 2).double().numpy()
    v = attn.to_v(x).view(B, N, H, -1).transpose(1, 2).double().numpy()
    return q, k, v


@pytest.mark.parametrize("g", [0.0, 0.3, 1.0])
def test_processor_matches_float64_block_reference(tiny64, g):
    torch.manual_seed(0)
    attn = tiny64.transformer.transformer_blocks[0].attn1
    x = torch.randn(2, 16, attn.to_q.in_features, dtype=torch.float64)  # one pair, N = 16 tokens
    with torch.no_grad():
        state = CouplingState()
        state.assign(g)
        out = CoupledAttnProcessor(state)(attn, x)
        q, k, v = _attention_core(attn, x)
        W, b = attn.to_out[0].weight.double().numpy(), attn.to_out[0].bias.double().numpy()
    ref = np.empty((2, 16, W.shape[1]))
    for h in range(attn.heads):
        ra, rb = _block_reference((q[0, h], q[1, h]), (k[0, h], k[1, h]), (v[0, h], v[1, h]), g)
        d = ra.shape[-1]
        ref[0, :, h * d : (h + 1) * d], ref[1, :, h * d : (h + 1) * d] = ra, rb
    ref = ref @ W.T + b
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_processor_matches_theory_coupled_attention(tiny64):
    attn = tiny64.transformer.transformer_blocks[1].attn1
    torch.manual_seed(1)
    x = torch.randn(6, 16, attn.to_q.in_features, dtype=torch.float64)  # 3 pairs
    g = np.array([0.0, 0.5, 1.0])  # pair 0 uncoupled: the inter call runs on the other rows only
    state = CouplingState()
    state.assign(np.concatenate([g, g]))  # one value per row, both replicas of a pair alike
    with torch.no_grad():
        out = CoupledAttnProcessor(state)(attn, x)
        q, k, v = _attention_core(attn, x)
        W, b = attn.to_out[0].weight.double().numpy(), attn.to_out[0].bias.double().numpy()
    for p in range(3):
        qq = np.stack([q[p], q[p + 3]])  # (2, H, N, d): replicas on axis 0
        kk = np.stack([k[p], k[p + 3]])
        vv = np.stack([v[p], v[p + 3]])
        ref = np.asarray(coupled_attention(qq, kk, vv, float(g[p])))  # (2, H, N, d)
        ref = ref.transpose(0, 2, 1, 3).reshape(2, 16, -1) @ W.T + b
        np.testing.assert_allclose(out[[p, p + 3]].numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bundle", ["tiny64", "tiny32"])
def test_g_zero_reproduces_unmodified_model(bundle, request):
    dit = request.getfixturevalue(bundle).transformer
    dtype = next(dit.parameters()).dtype
    torch.manual_seed(2)
    x = torch.randn(4, 1, 8, 8, dtype=dtype)
    t = torch.tensor([999, 500, 999, 10])
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        ref = dit(x, timestep=t, class_labels=y).sample
        with install_coupling(dit, g=0.0):
            out = dit(x, timestep=t, class_labels=y).sample
        # per-row zeros: still the unmodified output
        with install_coupling(dit) as h:
            h.set_g([0.0, 0.0, 0.0, 0.0])
            out2 = dit(x, timestep=t, class_labels=y).sample
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol * ref.abs().max().item())
    torch.testing.assert_close(out2, ref, rtol=tol, atol=tol * ref.abs().max().item())


@settings(max_examples=10, deadline=None)
@given(g=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_full_model_is_replica_exchange_symmetric(tiny64, g, seed):
    """Swapping the halves (A ↔ B) swaps the outputs (property (ii) after eq. 19)."""
    dit = tiny64.transformer
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=gen)
    t = torch.tensor([700, 700, 700, 700])
    y = torch.tensor([1, 2, 1, 2])
    swap = torch.tensor([2, 3, 0, 1])
    with torch.no_grad(), install_coupling(dit, g=g):
        out = dit(x, timestep=t, class_labels=y).sample
        out_s = dit(x[swap], timestep=t, class_labels=y[swap]).sample
    torch.testing.assert_close(out_s, out[swap], rtol=1e-10, atol=1e-10)


def test_coupling_changes_output_and_handle_restores(tiny64):
    dit = tiny64.transformer
    originals = [b.attn1.processor for b in dit.transformer_blocks]
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t, y = torch.tensor([500, 500]), torch.tensor([0, 0])
    with torch.no_grad():
        ref = dit(x, timestep=t, class_labels=y).sample
        h = install_coupling(dit, blocks=[1], g=0.7)
        assert isinstance(dit.transformer_blocks[1].attn1.processor, CoupledAttnProcessor)
        assert dit.transformer_blocks[0].attn1.processor is originals[0]
        coupled = dit(x, timestep=t, class_labels=y).sample
        h.set_g(0.0)
        assert h.g == 0.0
        back = dit(x, timestep=t, class_labels=y).sample
        h.remove()
    assert (coupled - ref).abs().max() > 1e-6
    torch.testing.assert_close(back, ref, rtol=1e-12, atol=1e-12)
    assert [b.attn1.processor for b in dit.transformer_blocks] == originals


def test_bad_inputs_have_clear_messages(tiny64):
    dit = tiny64.transformer
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.5"):
        install_coupling(dit, g=1.5)
    with pytest.raises(ValueError, match=r"blocks must lie in \[0, 1\], got 5"):
        install_coupling(dit, blocks=[5])
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with install_coupling(dit, g=0.5), pytest.raises(ValueError, match="even batch"):
        dit(x, timestep=torch.tensor([1, 1, 1]), class_labels=torch.tensor([0, 0, 0]))
    with (
        install_coupling(dit) as h,
        pytest.raises(ValueError, match="both replicas of a pair the same value"),
    ):
        h.set_g([0.1, 0.2, 0.3, 0.4])
    with install_coupling(dit) as h, pytest.raises(ValueError, match="per-row g has 6 entries"):
        h.set_g([0.1, 0.2, 0.3, 0.1, 0.2, 0.3])
        dit(x[:2], timestep=torch.tensor([1, 1]), class_labels=torch.tensor([0, 0]))


@settings(max_examples=10, deadline=None)
@given(g=st.floats(0.0, 1.0))
def test_per_row_g_of_equal_values_equals_scalar_g(tiny64, g):
    dit = tiny64.transformer
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    kw = dict(timestep=torch.tensor([300] * 4), class_labels=torch.tensor([0, 1, 0, 1]))
    with torch.no_grad(), install_coupling(dit, g=g) as h:
        scalar = dit(x, **kw).sample
        h.set_g([g, g, g, g])
        vector = dit(x, **kw).sample
    torch.testing.assert_close(vector, scalar, rtol=1e-12, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(g=st.floats(0.0, 1.0))
def test_mixed_rows_equal_each_pair_alone(tiny64, g):
    """Coupled and uncoupled pairs in one batch (the inter call on g ≠ 0 rows only) = each pair alone."""
    dit = tiny64.transformer
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    kw = dict(timestep=torch.tensor([300] * 4), class_labels=torch.tensor([0, 1, 0, 1]))
    with torch.no_grad(), install_coupling(dit) as h:
        h.set_g([g, 0.0, g, 0.0])
        mixed = dit(x, **kw).sample
        h.set_g(g)
        alone_0 = dit(x[[0, 2]], timestep=kw["timestep"][:2], class_labels=kw["class_labels"][[0, 2]]).sample
        h.set_g(0.0)
        alone_1 = dit(x[[1, 3]], timestep=kw["timestep"][:2], class_labels=kw["class_labels"][[1, 3]]).sample
    torch.testing.assert_close(mixed[[0, 2]], alone_0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixed[[1, 3]], alone_1, rtol=1e-12, atol=1e-12)
