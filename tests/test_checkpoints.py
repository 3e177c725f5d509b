"""Shipped testbed checkpoints load, beat the trivial denoiser, and reproduce their recorded metrics.

Deterministic evaluation: the fixed held-out batch of `testbed.train` (EVAL_N images per EVAL_TIMESTEPS
timestep, noise seed EVAL_SEED), float32 on CPU. Tolerance: 1e-3 relative on the mean ε-MSE (float32
reductions may differ in the last bits across thread counts and CPUs); the classifier's held-out
accuracy must match to one image (1/297).
"""

import json

import numpy as np
import pytest
import torch

from dit_validation.models import SHIPPED_DIR, load_checkpoint
from dit_validation.testbed.classifier import SHIPPED_CLASSIFIER, accuracy, load_classifier
from dit_validation.testbed.data import digits_split
from dit_validation.testbed.train import EVAL_TIMESTEPS, held_out_loss, reference_losses


@pytest.mark.parametrize("name", ["mixture", "digits", "mixture-deep"])
def test_shipped_dit_reproduces_record_and_beats_trivial(name):
    path = SHIPPED_DIR / name
    meta = json.loads((path / "synchrogap.json").read_text())
    record = json.loads((path / "training_record.json").read_text())
    dataset = name.removesuffix("-deep")
    assert meta["dataset"] == dataset and meta["pixel_space"] and meta["image_size"] == 16
    assert meta["null_class"] == meta["num_classes"] and meta["scheduler"]["beta_schedule"] == "linear"
    assert (path / "diffusion_pytorch_model.safetensors").stat().st_size <= 10 * 2**20
    bundle = load_checkpoint(path)
    assert bundle.num_classes == meta["num_classes"] and bundle.encoder == meta["encoder"]
    torch.set_num_threads(1)
    loss = held_out_loss(bundle.transformer, dataset)
    assert loss.shape == (len(EVAL_TIMESTEPS),)
    np.testing.assert_allclose(loss.mean(), record["held_out_loss_mean"], rtol=1e-3)
    np.testing.assert_allclose(loss, record["held_out_loss"], rtol=1e-2)
    refs = record["reference_losses_mean"]
    assert loss.mean() < 0.5 * refs["zero"]  # far better than ε̂ = 0
    # the recorded references are what the reference denoisers give on the same batch now
    np.testing.assert_allclose(np.mean(reference_losses(dataset)["zero"]), refs["zero"], rtol=1e-9)
    if dataset == "mixture":  # the exact score is known: the model is within 3 % of the Bayes ε-MSE
        np.testing.assert_allclose(np.mean(reference_losses(dataset)["exact"]), refs["exact"], rtol=1e-9)
        assert loss.mean() <= 1.03 * refs["exact"]


def test_deep_testbed_is_a_twelve_block_adaln_zero_dit():
    """Issue 14's deep model: ≥ 12 DiT blocks, adaLN-zero, patch 2, 3× the depth of the shipped mixture DiT
    on the same data; fails if the shipped file is swapped for a shallower or differently built model."""
    deep, base = load_checkpoint(SHIPPED_DIR / "mixture-deep"), load_checkpoint(SHIPPED_DIR / "mixture")
    cfg = deep.transformer.config
    assert deep.num_layers >= 12 and deep.num_layers == 3 * base.num_layers
    assert cfg.norm_type == "ada_norm_zero" and cfg.patch_size == 2
    assert cfg.num_attention_heads * cfg.attention_head_dim == base.transformer.config.num_attention_heads * (
        base.transformer.config.attention_head_dim
    )


def test_shipped_classifier_reproduces_accuracy():
    record = json.loads((SHIPPED_CLASSIFIER / "classifier.json").read_text())
    held = digits_split()[1]
    acc = accuracy(load_classifier(), held.x, held.labels)
    assert abs(acc - record["held_out_accuracy"]) <= 1 / 297 + 1e-12
    assert acc > 0.9


def test_train_cli_writes_a_loadable_checkpoint(tmp_path):
    """`synchrogap train` end to end at 3 steps: the files, the record and the loader contract."""
    from dit_validation.cli import main

    out = tmp_path / "mix"
    args = ["train", "--dataset", "mixture", "--steps", "3", "--batch-size", "4", "--gate-pairs", "8"]
    args += ["--out", str(out)]
    assert main(args) == 0
    files = ("config.json", "diffusion_pytorch_model.safetensors", "synchrogap.json", "training_record.json")
    for name in files:
        assert (out / name).is_file()
    record = json.loads((out / "training_record.json").read_text())
    assert record["steps"] == 3 and record["seed"] == 0 and record["command"].startswith("synchrogap train")
    assert set(record["reference_losses"]) == {"zero", "gaussian", "exact"}
    # the branch-validity gate of every factor, from the model's own samples
    gate = record["branch_validity"]["directions"]
    assert list(gate) == ["half", "quadrant", "block4", "checker"]
    assert record["branch_validity"]["settings"]["samples"] == 16
    for v in gate.values():
        assert 0.0 <= v["branch_midpoint_fraction"] <= 1.0
        assert v["learned"] == (v["branch_midpoint_fraction"] <= 0.05)
    # the Bayes denoiser is the floor: exact ≤ best Gaussian ≤ trivial on the fixed held-out batch
    ref = record["reference_losses_mean"]
    assert ref["exact"] <= ref["gaussian"] <= ref["zero"]
    bundle = load_checkpoint(out)
    assert bundle.encoder == "mixture-factors" and bundle.null_class == 1 and bundle.pixel_space
    loss = held_out_loss(bundle.transformer, "mixture").mean()
    np.testing.assert_allclose(loss, record["held_out_loss_mean"], rtol=1e-5)
