"""Model presets, random re-initialization, loaders and the missing-weights error."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from diffusers import DiTTransformer2DModel

from dit_validation import models
from dit_validation.models import ModelNotFoundError, build_random_dit, load_checkpoint, resolve_model


def test_xl2_preset_is_the_pretrained_config():
    """diffusers' DiTTransformer2DModel defaults are DiT-XL/2's config: an independent reference."""
    defaults = {k: v.default for k, v in inspect.signature(DiTTransformer2DModel.__init__).parameters.items()}
    preset = models.PRESETS["XL_2"]
    for key in (
        "num_layers",
        "num_attention_heads",
        "attention_head_dim",
        "in_channels",
        "sample_size",
        "patch_size",
        "num_embeds_ada_norm",
    ):
        assert preset[key] == defaults[key], key
    assert preset["num_attention_heads"] * preset["attention_head_dim"] == 1152
    assert preset["out_channels"] == 2 * preset["in_channels"]  # learned sigma


def test_random_dit_is_seeded_and_not_adaln_zero():
    a = build_random_dit("tiny", seed=0, dtype=torch.float64)
    b = build_random_dit("tiny", seed=0, dtype=torch.float64)
    c = build_random_dit("tiny", seed=1, dtype=torch.float64)
    pa, pb, pc = (dict(x.transformer.named_parameters()) for x in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)
    # adaLN-zero would leave the modulation (hence every gate of eq. 13-14) and the output projection at 0
    assert pa["transformer_blocks.0.norm1.linear.weight"].abs().max() > 0
    assert pa["proj_out_2.weight"].abs().max() > 0
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = a.transformer(x, timestep=torch.tensor([10, 10]), class_labels=torch.tensor([0, 1])).sample
    assert out.shape == (2, 2, 8, 8) and out.abs().max() > 1e-3
    assert a.null_class == a.num_classes == 3 and a.latent_channels == 1 and a.vae is None
    assert next(a.transformer.parameters()).dtype == torch.float64


def test_missing_pretrained_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        models.load_pretrained_dit("facebook/DiT-XL-2-256")
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for needle in (
        "--model /path/to/DiT-XL-2-256",
        "huggingface-cli download facebook/DiT-XL-2-256",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        str(tmp_path),
    ):
        assert needle in msg, needle


def test_resolve_model_choices_and_errors(tmp_path, monkeypatch):
    assert resolve_model("random:tiny").name == "random:tiny"
    with pytest.raises(
        ValueError, match=r"unknown model 'nope'; choose one of .*facebook/DiT-XL-2-256.*random:tiny"
    ):
        resolve_model("nope")
    with pytest.raises(ValueError, match="unknown model 'random:huge'"):
        resolve_model("random:huge")
    monkeypatch.setattr(models, "SHIPPED_DIR", tmp_path / "none")
    with pytest.raises(ModelNotFoundError, match="shipped default checkpoint .* is absent"):
        resolve_model("shipped-default")


def test_load_checkpoint_roundtrip(tmp_path):
    src = build_random_dit("tiny", seed=3, dtype=torch.float32)
    src.transformer.save_pretrained(tmp_path)
    meta = {
        "dataset": "mixture",
        "pixel_space": True,
        "image_size": 8,
        "channels": 1,
        "num_classes": 3,
        "null_class": 3,
        "guidance_scale": 1.5,
        "encoder": "pixels",
        "scheduler": {
            "num_train_timesteps": 1000,
            "beta_schedule": "linear",
            "beta_start": 1e-4,
            "beta_end": 0.02,
        },
    }
    (tmp_path / "synchrogap.json").write_text(json.dumps(meta))
    b = resolve_model(str(tmp_path))
    assert (b.guidance_scale, b.encoder, b.null_class, b.pixel_space, b.vae) == (1.5, "pixels", 3, True, None)
    x = torch.randn(2, 1, 8, 8)
    kw = dict(timestep=torch.tensor([5, 500]), class_labels=torch.tensor([0, 3]))
    with torch.no_grad():
        torch.testing.assert_close(b.transformer(x, **kw).sample, src.transformer(x, **kw).sample)
    (tmp_path / "synchrogap.json").unlink()
    with pytest.raises(ModelNotFoundError, match="no synchrogap.json"):
        load_checkpoint(tmp_path)


def test_load_pretrained_from_local_directory(tmp_path):
    """A DiTPipeline-style directory (transformer/, vae/, scheduler/) loads offline with VAE and schedule."""
    from diffusers import AutoencoderKL, DDIMScheduler

    src = build_random_dit("tiny", seed=4, dtype=torch.float32)
    src.transformer.save_pretrained(tmp_path / "transformer")
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=1,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        scaling_factor=0.18215,
    )
    vae.save_pretrained(tmp_path / "vae")
    DDIMScheduler(beta_end=0.03, clip_sample=True).save_config(tmp_path / "scheduler")
    b = resolve_model(str(tmp_path))
    assert b.vae is not None and b.vae.config.scaling_factor == pytest.approx(0.18215)
    assert (
        b.scheduler_config["beta_end"] == pytest.approx(0.03) and b.scheduler_config["clip_sample"] is False
    )
    assert (b.guidance_scale, b.encoder, b.pixel_space, b.image_size) == (4.0, "resnet50", False, 16)
    assert b.null_class == 3
