"""Testbed data (dit_validation.testbed.data) and the registered testbed encoders."""

import numpy as np
import pytest
import torch

from dit_validation.encoders import get_encoder
from dit_validation.testbed.data import (
    DIGITS_HELD_OUT,
    TrainStream,
    digits_split,
    held_out_set,
    load_digits_16,
    mixture_batch,
    num_classes,
)
from theory.multiscale import DEFAULT_MIXTURE, patterns


def test_digits_resized_scaled_and_split_fixed():
    full = load_digits_16()
    assert full.x.shape == (1797, 1, 16, 16) and full.x.dtype == torch.float32
    assert float(full.x.min()) >= -1.0 and float(full.x.max()) <= 1.0
    assert float(full.x.min()) == -1.0  # blank background maps to −1
    # bilinear 8 → 16 keeps the block means close to the original 8x8 pixels (scaled to [−1, 1])
    from sklearn.datasets import load_digits

    x8 = 2 * load_digits().images / 16.0 - 1
    pooled = full.x[:, 0].reshape(1797, 8, 2, 8, 2).mean(axis=(2, 4)).numpy()
    assert np.abs(pooled - x8).mean() < 0.15
    train, held = digits_split()
    assert held.x.shape[0] == DIGITS_HELD_OUT and train.x.shape[0] == 1797 - DIGITS_HELD_OUT
    train2, held2 = digits_split()
    assert torch.equal(held.x, held2.x) and torch.equal(train.labels, train2.labels)
    # disjoint: no held-out image appears in the training split
    tr = {row.tobytes() for row in train.x.numpy().reshape(train.x.shape[0], -1)}
    dup_in_full = len({row.tobytes() for row in full.x.numpy().reshape(1797, -1)}) < 1797
    if not dup_in_full:
        assert not any(row.tobytes() in tr for row in held.x.numpy().reshape(held.x.shape[0], -1))
    assert set(held.labels.tolist()) == set(range(10))


def test_mixture_batches_and_held_out_are_deterministic():
    a = mixture_batch(8, np.random.default_rng(5))
    b = mixture_batch(8, np.random.default_rng(5))
    assert torch.equal(a.x, b.x) and a.x.shape == (8, 1, 16, 16) and torch.all(a.labels == 0)
    assert torch.equal(held_out_set("mixture", 4).x, held_out_set("mixture", 4).x)
    s1, s2 = TrainStream("digits", 16, seed=3), TrainStream("digits", 16, seed=3)
    assert torch.equal(s1.next().x, s2.next().x)


def test_num_classes_and_bad_dataset():
    assert num_classes("mixture") == 1 and num_classes("digits") == 10
    with pytest.raises(ValueError, match=r"dataset must be one of \('mixture', 'digits'\), got 'cifar'"):
        num_classes("cifar")


def test_mixture_factor_encoder_reads_the_signs():
    enc = get_encoder("mixture-factors", None)
    phi = torch.from_numpy(patterns(DEFAULT_MIXTURE)).view(4, 1, 16, 16)
    feats = enc(phi * 3.0)
    np.testing.assert_allclose(feats.numpy(), 3.0 * np.eye(4), atol=1e-12)


def test_digits_cnn_encoder_features():
    enc = get_encoder("digits-cnn", None)
    held = digits_split()[1]
    f = enc(held.x[:5])
    assert f.shape == (5, 64) and f.dtype == torch.float64 and torch.all(f >= 0)
