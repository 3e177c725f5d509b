"""Protocol I (§3.1): result contract, determinism, resume after a kill, config validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from dit_validation.protocol1 import Protocol1Config, decode_images, run_protocol1, table1
from dit_validation.results import ConfigMismatchError, load_result
from dit_validation.sampler import branched_row_steps

CFG = Protocol1Config(
    g=(0.4, 1.0), t_int=(0, 1, 2, 4), num_seeds=4, num_steps=4, seed_chunk=2, n_boot=20, batch_size=8
)


class Killed(Exception):
    pass


def _run(bundle, path, **kw):
    return run_protocol1(bundle, CFG, path, progress=False, **kw)


def test_result_file_contract(tiny64, tmp_path):
    meta, a = load_result(_run(tiny64, tmp_path / "p1.npz"))
    G, T, M = 2, 4, 4
    assert meta["kind"] == "protocol1" and meta["complete"] and len(meta["done"]) == (G + 1) * M
    assert meta["config"]["num_steps"] == 4 and meta["config"]["model"] == "random:tiny"
    for key, shape in {
        "a_feat": (G, T, M),
        "d_low": (G, T, M),
        "d_high": (G, T, M),
        "a_feat_median": (G, T),
        "commit_low": (G, T),
        "commit_high": (G, T),
        "fit_a_feat": (G, 4),
        "fit_low": (G, 4),
        "fit_high": (G, 4),
        "tau_spec": (G,),
        "tau_g": (G,),
        "tau_l": (G,),
        "delta_tau": (G,),
        "tau_spec_ci": (G, 2),
        "tau_g_ci": (G, 2),
        "tau_l_ci": (G, 2),
        "control_a_feat": (T, M),
        "control_a_feat_median": (T,),
        "control_fit_a_feat": (4,),
        "control_tau_spec": (),
        "control_tau_spec_ci": (2,),
    }.items():
        assert a[key].shape == shape, key
    assert np.all(np.isfinite(a["a_feat"])) and np.all(np.abs(a["a_feat"]) <= 1 + 1e-12)
    np.testing.assert_array_equal(a["commit_low"][:, 0], 0.0)  # baseline t_int = 0
    np.testing.assert_allclose(a["a_feat_median"], np.median(a["a_feat"], axis=2))
    np.testing.assert_allclose(a["delta_tau"], a["tau_l"] - a["tau_g"], equal_nan=True)  # eq. (73)
    # t_int = 0 means never coupled, so the result cannot depend on g
    np.testing.assert_allclose(a["a_feat"][0, 0], a["a_feat"][1, 0], rtol=1e-12)
    assert "tau_spec [95% CI]" in table1(tmp_path / "p1.npz")


def test_resume_after_kill_recomputes_nothing(tiny64, forward_counter, tmp_path):
    full = load_result(_run(tiny64, tmp_path / "full.npz"))[1]
    saves = []

    def kill_after_three(keys):
        saves.append(keys)
        if len(saves) == 3:
            raise Killed

    path = tmp_path / "killed.npz"
    with pytest.raises(Killed):
        _run(tiny64, path, unit_callback=kill_after_three)
    meta, part = load_result(path)
    assert not meta["complete"] and len(meta["done"]) == 6
    assert part["done_mask"].sum() + part["control_done"].sum() == 6
    assert np.isnan(part["a_feat"][~part["done_mask"][:, None, :].repeat(4, 1)]).all()
    bundle = tiny64
    with forward_counter(bundle.transformer) as count:
        _run(tiny64, path)
    rows_per_chunk = 2 * 2 * branched_row_steps(4, CFG.t_int)  # 2 seeds x 2 replicas per pair-step
    assert count.rows == 3 * rows_per_chunk  # only the three unfinished chunks ran
    meta, resumed = load_result(path)
    assert meta["complete"]
    for key in full:
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)
    # a complete file is not recomputed at all
    with forward_counter(bundle.transformer) as count:
        _run(tiny64, path)
    assert count.calls == 0


def test_rerun_is_identical_and_config_change_refused(tiny64, tmp_path):
    a = load_result(_run(tiny64, tmp_path / "a.npz"))[1]
    b = load_result(_run(tiny64, tmp_path / "a.npz", overwrite=True))[1]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(ConfigMismatchError, match="differs in: sigma"):
        run_protocol1(
            tiny64,
            dataclasses.replace(CFG, sigma=0.9),
            tmp_path / "a.npz",
            progress=False,
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(g=(0.5, 1.5)), r"g must lie in \[0, 1\], got 1.5"),
        (dict(t_int=(0, 2, 9)), r"t_int must lie in \[0, 4\], got 9"),
        (dict(t_int=(1, 2)), "t_int must contain 0"),
        (dict(sigma=-1.0), r"sigma must lie in \[0, inf\], got -1"),
        (dict(num_seeds=0), "num_seeds must be an integer >= 1, got 0"),
    ],
)
def test_config_validation(tiny64, change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CFG, **change).resolved(tiny64)


def test_decode_uses_vae_scaling_factor_from_config(tiny64):
    vae = (
        AutoencoderKL(
            in_channels=1,
            out_channels=1,
            latent_channels=1,
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=4,
            scaling_factor=0.37,
        )
        .double()
        .eval()
    )
    bundle = dataclasses.replace(tiny64, vae=vae, pixel_space=False)
    assert bundle.image_size == 16
    z = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = (vae.decode(z / 0.37).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(decode_images(bundle, z), ref)
    assert Protocol1Config().resolved(bundle).pool == 4  # default pool from the decoded image side


def test_encoder_registry(tiny64):
    from dit_validation.encoders import ENCODERS, get_encoder, register_encoder

    bundle = tiny64
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    assert get_encoder("pixels", bundle)(x).shape == (3, 64)
    with pytest.raises(RuntimeError, match="encoder 'resnet50' needs"):
        get_encoder("resnet50", bundle)
    with pytest.raises(ValueError, match=r"encoder must be one of \[.*'pixels'.*\], got 'nope'"):
        get_encoder("nope", bundle)
    register_encoder("test-mean", lambda b, d: lambda im: im.mean(dim=(2, 3)))
    try:
        assert get_encoder("test-mean", bundle)(x).shape == (3, 1)
    finally:
        ENCODERS.pop("test-mean")
