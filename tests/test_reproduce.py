"""The main job: theory_run's file against independent references, reproduce's stages, resume and failure.

The end-to-end runs use ``random:tiny`` (2 layers, 8×8 pixels) with a tiny plan so they take
seconds; the shipped-default timing is measured by hand (README, "Run times"), not here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DEPTH
from hypothesis import given, settings
from hypothesis import strategies as st

from dit_validation import reproduce
from dit_validation.boundary import ReportedError
from dit_validation.compare import CompareConfig
from dit_validation.compare_report import PREDICTIONS
from dit_validation.protocol1 import Protocol1Config
from dit_validation.protocol2 import Protocol2Config
from dit_validation.results import ResultFileError, load_result, make_meta, save_result
from dit_validation.sampler import branched_row_steps
from dit_validation.summary import fmt_step, read_timings
from dit_validation.theory_run import TheoryRunConfig, run_theory, theory_arrays

# ---------------------------------------------------------------- theory_run: reference tests


def test_pitchfork_branches_solve_eq49_and_have_the_right_stability() -> None:
    a = theory_arrays(TheoryRunConfig(kappa_max=4.0, n_kappa=401))
    kappa, u, stable = a["kappa"], a["u_branches"], a["u_stable"]
    above = kappa > 1.0
    # nonzero branches exist exactly above the pitchfork κ = 1 (eq. 51) and solve u = κ tanh u (eq. 49)
    assert np.all(np.isnan(u[0, ~above])) and np.all(np.isnan(u[2, ~above]))
    assert np.all(u[2, above] > 0) and np.allclose(u[0, above], -u[2, above], rtol=0, atol=0)
    np.testing.assert_allclose(u[2, above], kappa[above] * np.tanh(u[2, above]), rtol=1e-12, atol=1e-14)
    assert np.all(u[1] == 0.0)
    # independent reference: the map u -> κ tanh u has slope κ at 0 and κ sech²(u*) < 1 on the branches
    np.testing.assert_array_equal(stable[1], kappa < 1.0)
    assert np.all(stable[0, above]) and np.all(stable[2, above])
    assert not stable[0, ~above].any()
    # near threshold u*² ≈ 3(κ − 1) (Landau expansion of tanh to third order)
    near = (kappa > 1.0) & (kappa < 1.02)
    np.testing.assert_allclose(u[2, near] ** 2, 3.0 * (kappa[near] - 1.0), rtol=0.03)


def test_gates_match_closed_forms() -> None:
    a = theory_arrays(TheoryRunConfig(n_g_grid=11, g=(0.0, 0.5, 1.0)))
    g = a["g_grid"]
    np.testing.assert_allclose(a["rho"], (1 - g) / (1 + g), rtol=1e-15)  # eq. (27)
    np.testing.assert_allclose(a["xi"], 1 / (1 + g), rtol=1e-15)
    np.testing.assert_allclose(a["rho_at_g"], [1.0, 1 / 3, 0.0], atol=1e-15)
    np.testing.assert_allclose(a["xi_at_g"], [1.0, 2 / 3, 0.5], rtol=1e-15)


def test_theory_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"kappa_max must lie in \(1, inf\], got 0.5"):
        TheoryRunConfig(kappa_max=0.5)
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.5"):
        TheoryRunConfig(g=(0.0, 1.5))
    with pytest.raises(ValueError, match="n_kappa must be an integer >= 3, got 2"):
        TheoryRunConfig(n_kappa=2)


@settings(max_examples=25, deadline=None)
@given(kappa_max=st.floats(1.01, 50.0), n=st.integers(3, 60))
def test_pitchfork_bounds_property(kappa_max: float, n: int) -> None:
    a = theory_arrays(TheoryRunConfig(kappa_max=kappa_max, n_kappa=n))
    u, kappa = a["u_branches"][2], a["kappa"]
    ok = np.isfinite(u)
    # 0 < u* ≤ κ (tanh < 1; equality once tanh u* rounds to 1 in float64) and u* grows with κ
    assert np.all(u[ok] > 0) and np.all(u[ok] <= kappa[ok])
    assert np.all(np.diff(u[ok]) > 0)


def _write_compare(
    path: Path, fill, model: str = "x", config: dict | None = None, num_layers: int = 3, dim: int = 6
) -> Path:
    """A schema-valid compare file: synthetic κ maps and per-block steps, placeholders elsewhere."""
    rng = np.random.default_rng(0)
    G, Sb, L, F = 3, 9, num_layers, 4
    arrays = {
        "g": np.array([0.0, 0.5, 1.0]),
        "kappa": np.exp(rng.normal(0, 1, (G, Sb, L, F))),
        "tau_pred_block": rng.uniform(0, 40, (G, L, F)),
        "block_steps": np.arange(0, 45, 5),
        "layers": np.arange(L),
        "factor": np.arange(F),
        "factor_names": np.array(["a", "b", "c", "d"]),
        "direction_source": np.array("factors"),
        "prediction_names": np.array(PREDICTIONS),
    }
    sizes = {"g": G, "step_b": Sb, "layer": L, "factor": F, "t_int": 3, "step": 5, "seed": 2, "param": 4}
    sizes.update(ci=2, fit3=3, prediction=3, dim=dim, rmode=2, boot=5)
    full = fill("compare", sizes, optional=False, **arrays)
    save_result(path, make_meta("compare", {**(config or {}), "model": model}, [], complete=True), full)
    return path


def test_run_theory_writes_contract_file(tmp_path: Path, make_arrays) -> None:
    cmp_path = _write_compare(tmp_path / "compare.npz", make_arrays, model="tiny")
    path = run_theory(TheoryRunConfig(n_kappa=11, model="tiny"), tmp_path / "theory.npz", cmp_path)
    meta, a = load_result(path)
    assert meta["kind"] == "theory" and meta["complete"] and meta["config"]["compare"] == str(cmp_path)
    assert a["kappa_vk"].shape == (3, 9, 3, 4) and a["u_branches"].shape == (3, 11)
    _, c = load_result(cmp_path)
    np.testing.assert_array_equal(a["kappa_vk"], c["kappa"])
    s_spec = c["tau_pred_block"]
    np.testing.assert_allclose(a["gap_steps"], s_spec[..., -1] - s_spec[..., 0], rtol=1e-12)  # eq. (65)
    # a file of another kind is refused, naming it
    with pytest.raises(ResultFileError, match="theory.npz.*holds a theory result, expected a compare"):
        run_theory(TheoryRunConfig(n_kappa=11), tmp_path / "t2.npz", path)


# ---------------------------------------------------------------- reproduce: stages, resume, failure


def tiny_plan(compare: object | None = None) -> reproduce.ReproducePlan:
    steps = 5  # divides DiT's 1000 training steps, so DDIM's timestep rule is exact
    return reproduce.ReproducePlan(
        model="random:tiny",
        grid="quick",
        protocol1=Protocol1Config(
            g=(0.3, 0.9), t_int=(0, 1, 3, 5), num_seeds=3, num_steps=steps, n_boot=20, seed_chunk=3
        ),
        protocol2=Protocol2Config(
            g=(0.0, 0.3, 0.9), num_seeds=3, num_steps=steps, basis_pairs=16, gint_modes=4, n_boot=20
        ),
        theory=TheoryRunConfig(n_kappa=21, n_g_grid=11),
        compare=compare,
        depth=TINY_DEPTH,
    )


def _fake_run_compare(fill):
    """Stands in for dit_validation.compare.run_compare in the orchestration tests: writes a contract-shaped
    file. The real compare is tested in tests/test_compare.py; here only reproduce's routing of its file into
    theory_run and the κ-map figures is under test."""

    def run_compare(bundle, cfg, out_dir, model_name="", overwrite=False, progress=False, share=None):  # noqa: ANN001, ANN202
        config = {k: v for k, v in asdict(cfg).items() if v is not None}  # as compare records its config
        config |= {"class_label_used": 0, "dataset": "random", "num_layers": bundle.num_layers}
        dim = bundle.latent_channels * bundle.sample_size**2
        return _write_compare(Path(out_dir) / "compare.npz", fill, model_name, config, bundle.num_layers, dim)

    return run_compare


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, make_arrays) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("reproduce")
    mp = pytest.MonkeyPatch()
    mp.setattr(reproduce.compare_mod, "run_compare", _fake_run_compare(make_arrays))
    try:
        paths = reproduce.run_reproduce(out_dir=out, progress=False, plan=tiny_plan(CompareConfig()))
    finally:
        mp.undo()
    return out, paths


def test_reproduce_writes_every_stage_and_figure(tiny_run: tuple[Path, dict[str, Path]]) -> None:
    out, paths = tiny_run
    for kind in ("theory", "protocol1", "protocol2", "compare"):
        meta, _ = load_result(paths[kind])
        assert meta["kind"] == kind and meta["complete"], kind
    _, th = load_result(paths["theory"])
    assert "kappa_vk" in th  # theory re-run with the compare file (stage theory_compare)
    figs = {p.name for p in (out / "figures").iterdir()}
    expected = {
        "fig_mode_energy_all.png",
        "fig_mode_energy_g0.00.png",
        "fig_feature_similarity.png",
        "fig_control_g0.png",
        "fig_commitment.png",
        "table1.csv",
        "table1.md",
        "fig_bifurcation.png",
        "fig_gates.png",
        "fig_gint_vs_rho.png",
        "fig_kappa_map_g0.00.png",
    }
    assert expected <= figs, expected - figs
    assert all((out / "figures" / f).stat().st_size > 0 for f in figs)
    # protocol2 read s = τ_spec(g) from protocol1 (eq. 77); g = 0 from the shared-noise control
    _, p1 = load_result(paths["protocol1"])
    _, p2 = load_result(paths["protocol2"])
    np.testing.assert_allclose(p2["tau_spec"], [float(p1["control_tau_spec"]), *p1["tau_spec"]], rtol=1e-12)


def test_summary_reports_tau_spec_gap_and_depth(tiny_run: tuple[Path, dict[str, Path]]) -> None:
    out, paths = tiny_run
    text = (out / "summary.txt").read_text()
    _, p1 = load_result(paths["protocol1"])
    assert "tau_spec [95% CI]" in text and "delta_tau" in text
    assert fmt_step(p1["tau_spec"][0], 0, 5) in text
    assert "G_int" in text and "largest" in text and "layer" in text
    assert "ctrl" in text
    _, d = load_result(out / "depth.npz")
    # prediction 2 is in the summary too, with the depth stage's reason for its verdict
    assert "depth_localization" in text and str(d["prediction2_reason"][0]) in text


def test_timings_count_image_forwards_per_stage(tiny_run: tuple[Path, dict[str, Path]]) -> None:
    """timings.json holds each stage's wall time and image-forwards; the protocols' counts are their plans'
    closed forms (the package's tally, counted in predict_eps, against the sampling plan)."""
    out, _ = tiny_run
    t = json.loads((out / "timings.json").read_text())
    # Protocol I: 2 g and the g = 0 control, 3 seeds, a pair forward per trunk and branch step
    p1 = 3 * 3 * 2 * branched_row_steps(5, (0, 1, 3, 5))
    # Protocol II: 3 g, 3 pairs, one forward at s = 0 for the basis (eq. 42-43), then 5 steps; and the
    # held-out basis pairs at s = 0 (dit_validation.gint), one pair forward each per g
    basis = 16  # the tiny plan's basis_pairs
    p2 = 3 * 3 * 2 * (1 + 5) + 3 * basis * 2
    assert (t["protocol1"]["image_forwards"], t["protocol2"]["image_forwards"]) == (p1, p2) == (288, 204)
    assert t["protocol1"]["image_forwards_by_dtype"] == {"float32": p1}
    assert t["theory"]["image_forwards"] == 0 and t["figures"]["image_forwards"] == 0
    assert all(v["wall_s"] > 0 for v in t.values())
    text = (out / "summary.txt").read_text()
    assert f"protocol1 {p1:,}" in text and "image-forwards: " in text


def test_summary_reads_timings_written_before_forwards_were_counted(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    path.write_text(
        json.dumps({"protocol1": 55.2, "compare": {"wall_s": 3.0, "image_forwards": 7}, "x": "?"})
    )
    assert read_timings(path) == {
        "protocol1": {"wall_s": 55.2, "image_forwards": 0, "image_forwards_by_dtype": {}},
        "compare": {"wall_s": 3.0, "image_forwards": 7, "image_forwards_by_dtype": {}},
    }
    path.write_text("[1, 2]")
    assert read_timings(path) == {}


def test_rerun_skips_finished_stages(
    tiny_run: tuple[Path, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, paths = tiny_run

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished stage was re-run")

    monkeypatch.setattr(reproduce, "run_protocol1", boom)
    monkeypatch.setattr(reproduce, "run_protocol2", boom)
    monkeypatch.setattr(reproduce.compare_mod, "run_compare", boom)
    before = paths["protocol1"].stat().st_mtime_ns
    reproduce.run_reproduce(out_dir=out, progress=False, plan=tiny_plan(CompareConfig()))
    assert paths["protocol1"].stat().st_mtime_ns == before


def test_rerun_with_another_plan_refuses(tiny_run: tuple[Path, dict[str, Path]]) -> None:
    out, _ = tiny_run
    other = tiny_plan(CompareConfig())
    other = replace(other, protocol1=replace(other.protocol1, num_seeds=4))
    with pytest.raises(ValueError, match="holds a reproduce run with another plan .*protocol1"):
        reproduce.run_reproduce(out_dir=out, progress=False, plan=other)
    assert json.loads((out / "reproduce.json").read_text())["protocol1"]["num_seeds"] == 3


def test_failing_compare_fails_loudly_after_drawing_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_run: tuple[Path, dict[str, Path]]
) -> None:
    # reuse the finished protocol files so this test only exercises the failure path
    src, _ = tiny_run
    for name in ("protocol1.npz", "protocol2.npz", "reproduce.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("compare broke")

    monkeypatch.setattr(reproduce.compare_mod, "run_compare", boom)
    with pytest.raises(ReportedError, match=r"stage\(s\) failed: compare \(RuntimeError: compare broke\)"):
        reproduce.run_reproduce(out_dir=tmp_path, progress=False, plan=tiny_plan(CompareConfig()))
    assert not (tmp_path / "compare.npz").exists()  # never a faked file
    assert (tmp_path / "figures" / "fig_feature_similarity.png").is_file()
    assert "Protocol I" in (tmp_path / "summary.txt").read_text()


def test_make_plan_grids() -> None:
    quick, full = reproduce.make_plan("m", "quick"), reproduce.make_plan("m", "full")
    # full = the paper's grid (§4.1-4.2): 6 g x every t_int x 32 seeds x 100 steps; Protocol II at 7 g
    assert full.protocol1.g == (0.1, 0.3, 0.5, 0.7, 0.9, 1.0) and full.protocol1.t_int is None
    assert full.protocol1.num_seeds == 32 and full.protocol1.num_steps == 100
    assert full.protocol2.g == (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0) and full.protocol2.layers is None
    assert quick.protocol1.num_steps < full.protocol1.num_steps
    assert set(quick.protocol2.g) >= {0.0, 0.1, 0.3, 0.9}  # Figs. 1, 9, 10
    with pytest.raises(ValueError, match="grid must be one of smoke, quick, full, got 'huge'"):
        reproduce.make_plan("m", "huge")  # type: ignore[arg-type]


def test_cli_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dit_validation.cli import main

    assert (
        main(["reproduce", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    )
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for a model that cannot load


def test_theory_run_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dit_validation.theory_run import main

    assert main(["--out", str(tmp_path / "t.npz"), "--kappa-max", "2.5"]) == 0
    assert str(tmp_path / "t.npz") in capsys.readouterr().out
    _, a = load_result(tmp_path / "t.npz")
    assert a["kappa"][-1] == 2.5
    assert main(["--out", str(tmp_path / "u.npz"), "--kappa-max", "0.5"]) == 2
    assert "kappa_max must lie in (1, inf], got 0.5" in capsys.readouterr().err
