"""Every paper figure renders from small synthetic result files in the contract's format.

Synthetic data (not a real run) on purpose: these tests check the figure layer alone — that each
renderer reads exactly the contract's array names (docs/DESIGN.md), writes valid non-empty PNG (and PDF
when asked) files, and that the table carries the numbers it was given.
"""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dit_validation.results import load_result, make_meta, save_result
from dit_validation.schema import SCHEMAS
from paper_figs import FIGURES, _style

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_result(
    fill,
    path: Path,
    kind: str,
    arrays: dict[str, np.ndarray],
    config: dict | None = None,
    optional: bool = True,
) -> Path:
    """Write a schema-valid result file through the package's one writer; arrays a figure does not read
    are placeholders (NaN), sized from the arrays given."""
    schema = SCHEMAS[kind]
    sizes: dict[str, int] = {}
    for name, value in arrays.items():
        for dim, n in zip(schema.arrays[name].dims, np.shape(value), strict=True):
            sizes.setdefault(dim, n)
    sizes = {"param": 4, "ci": 2, "fit3": 3, "branch": 3, "prediction": 4, **sizes}
    for spec in schema.arrays.values():
        for dim in spec.dims:
            sizes.setdefault(dim, 2)
    full = fill(kind, sizes, optional=optional, **arrays)
    meta = make_meta(kind, {"model": "synthetic-test", **(config or {})}, [0, 1, 2], complete=True)
    save_result(path, meta, full)
    return path


def _sig(t: np.ndarray, lo: float, hi: float, c: float, w: float) -> np.ndarray:
    return lo + (hi - lo) / (1.0 + np.exp(-(t - c) / w))


def protocol1_arrays(rng: np.random.Generator, g: np.ndarray, t_int: np.ndarray, m: int = 5) -> dict:
    n_g, n_t = g.size, t_int.size
    centers = 60.0 - 15.0 * g
    a_feat = np.stack([_sig(t_int, 0.2, 0.95, c, 6.0) for c in centers])[
        ..., None
    ] + 0.03 * rng.standard_normal((n_g, n_t, m))
    fit = np.stack([[0.2, 0.95, c, 6.0] for c in centers])
    fit_low = np.stack([[0.0, 1.0, c - 20, 5.0] for c in centers])
    fit_high = np.stack([[0.0, 1.0, c + 15, 5.0] for c in centers])
    commit_low = np.stack([_sig(t_int, *p) for p in fit_low])
    commit_high = np.stack([_sig(t_int, *p) for p in fit_high])
    return {
        "g": g,
        "t_int": t_int,
        "seeds": np.arange(m),
        "a_feat": a_feat,
        "d_low": rng.random((n_g, n_t, m)),
        "d_high": rng.random((n_g, n_t, m)),
        "a_feat_median": np.median(a_feat, axis=-1),
        "commit_low": commit_low,
        "commit_high": commit_high,
        "fit_a_feat": fit,
        "fit_low": fit_low,
        "fit_high": fit_high,
        "tau_spec": centers,
        "tau_g": centers - 20,
        "tau_l": centers + 15,
        "delta_tau": np.full(n_g, 35.0),
        "tau_spec_ci": np.stack([centers - 5, centers + 5], axis=1),
        "tau_g_ci": np.stack([centers - 25, centers - 15], axis=1),
        "tau_l_ci": np.stack([centers + 10, centers + 20], axis=1),
        "control_a_feat": _sig(t_int, 0.2, 0.9, 40.0, 5.0)[:, None] + 0.02 * rng.standard_normal((n_t, m)),
        "control_a_feat_median": _sig(t_int, 0.2, 0.9, 40.0, 5.0),
        "control_fit_a_feat": np.array([0.2, 0.9, 40.0, 5.0]),
        "control_tau_spec": np.array(40.0),
        "control_tau_spec_ci": np.array([35.0, 45.0]),
    }


def protocol2_arrays(rng: np.random.Generator, g: np.ndarray, n_layers: int = 6) -> dict:
    n_g, n_s, n_k, m = g.size, 5, 4, 3
    layers = np.arange(n_layers)
    energy_seed = rng.random((n_g, n_s, n_layers, n_k, m)) + 0.5
    lead = 1.0 + 0.1 * rng.random((n_g, n_layers))
    trail = lead * (1.0 + np.outer(1.0 - g, np.linspace(0, 2, n_layers)))
    return {
        "g": g,
        "steps": np.arange(n_s),
        "layers": layers,
        "seeds": np.arange(m),
        "eig0": np.broadcast_to(np.sort(rng.random((n_layers, n_k)))[:, ::-1], (n_g, n_layers, n_k)).copy(),
        "done_mask": np.ones(n_g, bool),
        "energy": energy_seed.mean(-1),
        "energy_seed": energy_seed,
        "tau_spec": np.array([3.0] * n_g),
        "lead": lead,
        "trail": trail,
        "lead_std": 0.1 * lead,
        "trail_std": 0.1 * trail,
        "G_int": trail / lead,
        "lead_band": np.broadcast_to(np.arange(n_k) < 2, (n_g, n_layers, n_k)).copy(),
        "trail_band": np.broadcast_to(np.arange(n_k) >= 2, (n_g, n_layers, n_k)).copy(),
        **heldout_arrays(rng, energy_seed, trail / lead - 1.0),
    }


def heldout_arrays(rng: np.random.Generator, proj: np.ndarray, excess: np.ndarray) -> dict:
    """Protocol II's held-out-basis arrays (dit_validation.gint) around a given G_int − 1 (g, layer)."""
    n_g, n_s, n_layers, n_k, m = proj.shape
    boot = excess[:, None, :] + 0.05 * rng.standard_normal((n_g, 20, n_layers))
    return {
        "basis_seeds": np.arange(8),
        "heldout_eig": np.broadcast_to(np.linspace(2.0, 1.0, n_k), (n_g, n_layers, n_k)).copy(),
        "heldout_proj": proj,
        "heldout_energy": proj.sum(-1) / proj[:, :1].sum(-1),
        "gint_excess": excess,
        "gint_excess_ci": np.stack([excess - 0.1, excess + 0.1], axis=-1),
        "gint_excess_boot": boot,
        "gint_null": 0.05 * rng.standard_normal((n_g, n_layers)),
        "gint_null_ci": np.broadcast_to([-0.3, 0.3], (n_g, n_layers, 2)).copy(),
    }


def theory_arrays() -> dict:
    kappa = np.linspace(0.0, 3.0, 61)
    pos = np.full_like(kappa, np.nan)
    above = kappa > 1.0
    # a stand-in curve with the pitchfork's shape (the real one comes from theory in test_reproduce)
    pos[above] = np.sqrt(3.0 * (kappa[above] - 1.0))
    g_grid = np.linspace(0.0, 1.0, 21)
    return {
        "kappa": kappa,
        "u_branches": np.stack([np.zeros_like(kappa), pos, -pos]),
        "u_stable": np.stack([~above, above, above]),
        "g_grid": g_grid,
        "rho": (1 - g_grid) / (1 + g_grid),
        "xi": 1 / (1 + g_grid),
        "g": np.array([0.0, 0.5, 1.0]),
        "rho_at_g": np.array([1.0, 1 / 3, 0.0]),
        "xi_at_g": np.array([1.0, 2 / 3, 0.5]),
    }


def kappa_map_arrays(rng: np.random.Generator, g: np.ndarray) -> dict:
    n_s, n_l, n_k = 12, 4, 3
    steps = np.arange(n_s, dtype=np.float64)
    # kappa grows with the step; the leading mode (k = 0) faster than the trailing one
    kappa = np.exp(0.3 * (steps[None, :, None, None] - 5.0) * (1.0 - 0.2 * np.arange(n_k)))
    kappa = np.broadcast_to(kappa, (g.size, n_s, n_l, n_k)).copy()
    kappa[0, 0, 0, 0] = -1.0  # a cell violating eq. (55): must be drawn grey, not crash
    s_spec = np.broadcast_to(5.0 / (1.0 - 0.2 * np.arange(n_k)), (g.size, n_l, n_k)).copy()
    return {
        "kappa_g": g,
        "kappa_vk": kappa,
        "steps": steps,
        "layers": np.arange(n_l),
        "modes": np.arange(n_k),
        "s_spec": s_spec,
        "gap_steps": s_spec[..., -1] - s_spec[..., 0],
    }


def compare_arrays(rng: np.random.Generator, g: np.ndarray) -> dict:
    n_f, n_t, n_l, n_s = 3, 10, 4, 20
    t_int = np.arange(0, 50, 5)
    tau = np.array([10.0, 20.0, 30.0])
    fit = np.stack([[0.5, 1.0, c, 3.0] for c in tau])
    agree = np.stack([_sig(t_int, *p) for p in fit])  # (F, T)
    rho = (1 - g) / (1 + g)
    steps = np.arange(n_s)
    H = np.stack([1.0 - steps / 10.0 * (f + 1) / 3 for f in range(n_f)], axis=-1)  # (S, F), zero at 30/(f+1)
    splits = np.ones((g.size, n_f), bool)
    splits[-1, 1:] = False  # strong coupling: the local directions never split
    tau_meas = np.where(splits, tau + 2.0, np.nan)
    gap = np.where(splits[:, -1], 20.0 * rho, np.nan)
    return {
        "g": g,
        "rho": rho,
        "factor": np.arange(n_f),
        "factor_names": np.array(["half", "quadrant", "checker"]),
        "direction_source": np.array("factors"),
        "t_int": t_int,
        "steps": steps,
        "layers": np.arange(n_l),
        "agree": np.broadcast_to(agree[None, :, :, None], (g.size, n_f, n_t, 4)).copy(),
        "fit_meas": np.broadcast_to(fit, (g.size, n_f, 4)).copy(),
        "tau_meas": tau_meas,
        "tau_meas_ci": np.stack([tau_meas - 2, tau_meas + 2], -1),
        "splits": splits,
        "H_step": np.broadcast_to(H, (g.size, n_s, n_f)).copy(),
        "tau_pred_step": np.array([[10.0, 15.0, np.inf]] * g.size),
        "tau_pred_biroli": tau - 1,
        "tau_pred_block": np.full((g.size, n_l, n_f), np.nan),
        "tau_exact_kappa": tau - 0.5,
        "H_exact": H,
        "agree_exact": np.broadcast_to(agree[:, :, None], (n_f, n_t, 4)).copy(),
        "agree_theory": agree,
        "gap_meas": gap,
        "gap_meas_ci": np.stack([gap - 3, gap + 3], -1),
        "gap_pred_step": np.full(g.size, np.inf),
        "gap_lead": np.zeros(g.size, int),
        "gap_trail": np.full(g.size, n_f - 1),
        "gap_fit_meas": np.array([20.0, 0.0, 1.0]),
        "gap_slope_ci": np.array([15.0, 25.0]),
    }


def assert_valid_outputs(paths: list[Path]) -> None:
    assert paths, "renderer returned no files"
    for p in paths:
        assert p.exists(), p
        data = p.read_bytes()
        if p.suffix == ".png":
            assert data.startswith(PNG_MAGIC), p
            assert len(data) > 5_000, f"{p} is suspiciously small ({len(data)} bytes)"
            img = mpimg.imread(p)
            assert img.shape[0] > 200 and img.shape[1] > 200, img.shape
            assert float(np.std(img)) > 0.01, f"{p} is blank"
        elif p.suffix == ".pdf":
            assert data.startswith(b"%PDF"), p
            assert len(data) > 2_000, p
        else:
            assert len(data) > 50, p


@pytest.fixture(scope="module")
def result_files(tmp_path_factory: pytest.TempPathFactory, make_arrays) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    g = np.array([0.1, 0.5, 1.0])
    return {
        "protocol1": write_result(
            make_arrays,
            tmp / "p1.npz",
            "protocol1",
            protocol1_arrays(rng, g, np.arange(0, 100, 10)),
            {"num_steps": 100},
        ),
        "protocol2": write_result(
            make_arrays, tmp / "p2.npz", "protocol2", protocol2_arrays(rng, np.array([0.0, 0.3, 0.9]))
        ),
        "theory": write_result(make_arrays, tmp / "theory.npz", "theory", theory_arrays(), optional=False),
        "theory_kappa": write_result(
            make_arrays,
            tmp / "theory_k.npz",
            "theory",
            {**theory_arrays(), **kappa_map_arrays(rng, np.array([0.0, 0.5, 1.0]))},
        ),
        "compare": write_result(
            make_arrays, tmp / "compare.npz", "compare", compare_arrays(rng, np.array([0.0, 0.3, 0.6, 1.0]))
        ),
    }


@pytest.mark.parametrize("name", [n for n, kind in FIGURES.items() if kind in ("protocol1", "protocol2")])
def test_protocol_figures_render(name: str, result_files: dict[str, Path], tmp_path: Path) -> None:
    module = importlib.import_module(f"paper_figs.{name}")
    paths = module.render(result_files[FIGURES[name]], tmp_path)
    assert_valid_outputs(paths)


def test_mode_energy_one_file_per_g(result_files: dict[str, Path], tmp_path: Path) -> None:
    from paper_figs import mode_energy

    names = {p.name for p in mode_energy.render(result_files["protocol2"], tmp_path)}
    for g in ("g0.00", "g0.30", "g0.90"):
        assert f"fig_mode_energy_{g}.png" in names
    assert "fig_mode_energy_all.png" in names
    assert not any(n.endswith(".pdf") for n in names)  # PNG only unless asked (issue 13: savefig dominated)
    with _style.formats("png", "pdf"):
        names = {p.name for p in mode_energy.render(result_files["protocol2"], tmp_path / "pdf")}
    assert "fig_mode_energy_g0.30.pdf" in names and "fig_mode_energy_all.pdf" in names


def test_table1_carries_the_numbers(result_files: dict[str, Path], tmp_path: Path) -> None:
    from paper_figs import table1

    csv_path, md_path = table1.render(result_files["protocol1"], tmp_path)
    with csv_path.open() as fh:
        table = list(csv.DictReader(fh))
    # g = 0.1, 0.5, 1.0 then the g = 0 control; tau_spec = 60 - 15 g by construction above
    assert [r["g"] for r in table] == ["0.1", "0.5", "1", "0 (control)"]
    assert [r["tau_spec"] for r in table[:3]] == ["58.5", "52.5", "45.0"]
    assert table[0]["tau_spec_lo"] == "53.5" and table[0]["tau_spec_hi"] == "63.5"
    assert table[1]["delta_tau"] == "35.0"
    assert table[3]["tau_spec"] == "40.0"
    md = md_path.read_text()
    assert "| 0.5 | 52.5 [47.5, 57.5] | 32.5 | 67.5 | 35.0 |" in md
    md_rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith(("| g ", "| ---"))]
    assert md_rows == [table1.markdown_row(r) for r in table]  # CSV and Markdown: the same cells
    assert "synthetic-test" in md and "100 sampling steps" in md
    # Δτ's paired interval decides "> 0"; without one (an old file) the verdict is undefined
    assert table[1]["delta_tau_verdict"] == "undefined"
    rows = table1.rows(
        {**load_result(result_files["protocol1"])[1], "delta_tau_ci": np.array([[30.0, 40.0]] * 3)}
    )
    assert rows[1]["delta_tau_verdict"] == "> 0" and "35.0 [30.0, 40.0] | > 0 |" in table1.markdown_row(
        rows[1]
    )


@pytest.mark.parametrize("name", ["bifurcation", "gates"])
def test_theory_figures_render(name: str, result_files: dict[str, Path], tmp_path: Path) -> None:
    module = importlib.import_module(f"paper_figs.{name}")
    assert_valid_outputs(module.render(result_files["theory"], tmp_path))


def test_sigmoid_matches_contract() -> None:
    # y = lo + (hi - lo)/(1 + exp(-(t - center)/width)): midpoint at center, limits lo and hi
    p = np.array([0.2, 0.9, 40.0, 5.0])
    assert _style.fit_curve(np.array([40.0]), p)[0] == pytest.approx(0.55)
    assert _style.fit_curve(np.array([-1e4, 1e4]), p) == pytest.approx([0.2, 0.9])


def test_cli_main_writes_files(
    result_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from paper_figs import gates

    assert _style.main_for(gates.render, "gates", [str(result_files["theory"]), "--out", str(tmp_path)]) == 0
    assert "fig_gates.png" in capsys.readouterr().out
    assert_valid_outputs([tmp_path / "fig_gates.png"])
    assert not (tmp_path / "fig_gates.pdf").exists()
    argv = [str(result_files["theory"]), "--out", str(tmp_path / "pdf"), "--pdf"]
    assert _style.main_for(gates.render, "gates", argv) == 0
    assert_valid_outputs([tmp_path / "pdf" / "fig_gates.png", tmp_path / "pdf" / "fig_gates.pdf"])


def test_kappa_map_one_figure_per_g(result_files: dict[str, Path], tmp_path: Path) -> None:
    from paper_figs import kappa_map

    paths = kappa_map.render(result_files["theory_kappa"], tmp_path)
    assert_valid_outputs(paths)
    assert sorted(p.name for p in paths if p.suffix == ".png") == [
        "fig_kappa_map_g0.00.png",
        "fig_kappa_map_g0.50.png",
        "fig_kappa_map_g1.00.png",
    ]
    # without compare-derived maps the renderer writes nothing rather than an empty figure
    assert kappa_map.render(result_files["theory"], tmp_path / "none") == []


def _drawn_axes(module, monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Stem → the visible axes of every figure ``module`` saves (its ``_style.save`` wrapped)."""
    drawn: dict[str, list] = {}
    real_save = module._style.save

    def keep(fig, out_dir, stem):  # noqa: ANN001, ANN202
        drawn[stem] = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
        return real_save(fig, out_dir, stem)

    monkeypatch.setattr(module._style, "save", keep)
    return drawn


def test_kappa_map_draws_every_direction_with_a_finite_kappa(
    tmp_path: Path, make_arrays, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: the maps of the directions that have a finite κ > 0 (was: always f = 0 and the last, grey
    where only f = 2 had κ); where none has, the leading and trailing panels say so."""
    from paper_figs import kappa_map

    arrays = kappa_map_arrays(np.random.default_rng(0), np.array([0.0, 0.5, 1.0]))
    kappa = np.full_like(arrays["kappa_vk"], np.nan)
    kappa[0, 3:, :, 1] = 2.0  # g = 0: only the middle direction has κ
    kappa[1, :, 1:, 1] = 0.5  # g = 0.5: the middle one and the trailing one
    kappa[1, 2, 2, 2] = 3.0
    kappa[2, :, :, 0] = 0.0  # g = 1: κ = 0 (m = 0) and undefined only, no κ = 1 crossing
    arrays["kappa_vk"] = kappa
    arrays["s_spec"][2] = np.nan
    arrays["mode_learned"] = np.ones(kappa.shape[-1], bool)
    arrays["mode_names"] = np.array([f"f = {k}" for k in range(kappa.shape[-1])])
    path = write_result(make_arrays, tmp_path / "t.npz", "theory", {**theory_arrays(), **arrays})
    drawn = _drawn_axes(kappa_map, monkeypatch)
    kappa_map.render(path, tmp_path)
    titles = {stem: [ax.get_title() for ax in axes] for stem, axes in drawn.items()}
    assert titles["fig_kappa_map_g0.00"] == ["direction f = 1"]
    assert titles["fig_kappa_map_g0.50"] == ["direction f = 1", "trailing direction f = 2"]
    assert titles["fig_kappa_map_g1.00"] == ["leading direction f = 0", "trailing direction f = 2"]
    for ax in drawn["fig_kappa_map_g1.00"]:
        assert any("no κ > 0 here" in t.get_text() for t in ax.texts)
    zero, undefined = (
        [t.get_text() for t in ax.get_legend().get_texts()] for ax in drawn["fig_kappa_map_g1.00"]
    )
    for labels in (zero, undefined):  # nothing of the kind drawn: no contour, no κ = 1 crossing
        assert not any("contour" in lb or "s_{spec}" in lb for lb in labels)
    assert any("κ = 0" in lb for lb in zero) and not any("undefined" in lb for lb in zero)
    assert any("undefined" in lb for lb in undefined) and not any("κ = 0" in lb for lb in undefined)
    # a direction the gate refused is not drawn for its κ: at g = 0 only f = 1 has κ, and it is not learned
    arrays["mode_learned"] = np.array([True, False, True])
    path = write_result(make_arrays, tmp_path / "t2.npz", "theory", {**theory_arrays(), **arrays})
    drawn = _drawn_axes(kappa_map, monkeypatch)
    kappa_map.render(path, tmp_path / "gated")
    titles = {stem: [ax.get_title() for ax in axes] for stem, axes in drawn.items()}
    assert titles["fig_kappa_map_g0.00"] == ["leading direction f = 0", "trailing direction f = 2"]
    assert kappa_map.shown_modes(kappa[0], np.array([False, True, False])) == [1]
    assert [ax.get_legend() for ax in drawn["fig_kappa_map_g0.00"]][0] is not None


def test_predicted_vs_measured_legends_only_list_drawn_marks(
    result_files: dict[str, Path], tmp_path: Path, make_arrays, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: no legend entry without a mark (per-block eq. 50 undefined everywhere), and the step-level
    Δ of fig_gap_vs_rho stays visible beside a measured Δ of the same value (dodged, hollow)."""
    from paper_figs import predicted_vs_measured

    rng = np.random.default_rng(1)
    arrays = compare_arrays(rng, np.array([0.0, 0.5, 1.0]))
    arrays["tau_pred_block"] = np.full_like(arrays["tau_pred_block"], np.nan)
    arrays["gap_pred_step"] = np.asarray(arrays["gap_meas"], dtype=float).copy()  # prediction = measurement
    path = write_result(make_arrays, tmp_path / "c.npz", "compare", arrays)
    drawn = _drawn_axes(predicted_vs_measured, monkeypatch)
    predicted_vs_measured.render(path, tmp_path)
    labels = [t.get_text() for t in drawn["fig_factor_tau"][0].get_legend().get_texts()]
    assert labels and not any("per-block" in lb for lb in labels)
    (ax,) = drawn["fig_gap_vs_rho"]
    meas = next(c for c in ax.containers if c.get_label().startswith("measured")).lines[0]
    pred = next(ln for ln in ax.get_lines() if ln.get_label().startswith("step-level predicted"))
    np.testing.assert_allclose(pred.get_ydata(), meas.get_ydata())
    assert np.all(np.asarray(pred.get_xdata()) - np.asarray(meas.get_xdata()) > 0.01)  # dodged in ρ
    assert pred.get_markerfacecolor() == "none"


def test_predicted_vs_measured_renders_all_parts(result_files: dict[str, Path], tmp_path: Path) -> None:
    from paper_figs import predicted_vs_measured

    paths = predicted_vs_measured.render(result_files["compare"], tmp_path)
    assert_valid_outputs(paths)
    stems = {p.stem for p in paths}
    assert stems == {"fig_factor_tau", "fig_curvature", "fig_factor_agreement", "fig_gap_vs_rho"}


def test_depth_figure_draws_one_panel_per_g_with_every_profile(
    make_arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fig_depth: a panel per g with the causal profiles (curvature change, patch effects with error bars)
    where they were measured, Protocol II's |G_int − 1|, and prediction 2's verdict in the title; what a
    panel cannot draw is said in its title. Fails if a panel, a measured profile or a verdict goes missing."""
    from paper_figs import depth

    rng = np.random.default_rng(0)
    G, L, F = 4, 12, 3
    measured = np.arange(G) < 2  # causal measurements at g = 0 and 0.1; patching at g = 0 only
    eff = np.where(np.arange(G)[:, None, None] == 0, rng.normal(0, 0.05, (G, F, L)), np.nan)
    arrays = {
        "g": np.array([0.0, 0.1, 0.3, 0.9]),
        "layers": np.arange(L),
        "factor": np.arange(F),
        "uniform_share": np.asarray(0.25),
        "gint_profile": rng.uniform(0, 1, (G, L)),
        "gint_depth": rng.uniform(0, 1, G),
        "gint_depth_ci": np.sort(rng.uniform(0, 1, (G, 2)), axis=1),
        "curv_change": np.where(measured[:, None, None], rng.normal(0, 1, (G, F, L + 1)), np.nan),
        "curvature_share_last_quarter": np.where(measured, 0.1, np.nan),
        "curvature_share_last_quarter_ci": np.where(measured[:, None], [0.05, 0.15], np.nan),
        "patch_effect": eff,
        "patch_effect_ci": np.stack([eff - 0.02, eff + 0.02], -1),
        "patch_resolved": np.arange(G)[:, None] == np.zeros((1, F)),
        "patch_share_last_quarter": np.array([0.3, np.nan, np.nan, np.nan]),
        "patch_share_last_quarter_ci": np.array([[0.2, 0.4]] + [[np.nan, np.nan]] * 3),
        "prediction2_verdict": np.array([-1, 1, 0, 0]),
    }
    path = write_result(make_arrays, tmp_path / "depth.npz", "depth", arrays)
    drawn = {}
    real_save = depth._style.save

    def keep(fig, out_dir, stem):  # noqa: ANN001, ANN202
        drawn["axes"] = [ax for ax in fig.axes if ax.get_visible()]
        return real_save(fig, out_dir, stem)

    monkeypatch.setattr(depth._style, "save", keep)
    paths = depth.render(path, tmp_path)
    assert_valid_outputs(paths)
    assert [p.stem for p in paths] == ["fig_depth"]
    axes = drawn["axes"]
    heads = [ax.get_title().split(" (")[0] for ax in axes]
    assert heads == [
        "g = 0: prediction 2 FAILS",
        "g = 0.1: prediction 2 holds",
        "g = 0.3: prediction 2 undefined",
        "g = 0.9: prediction 2 undefined",
    ]
    labels = [[ln.get_label() for ln in ax.get_lines()] for ax in axes]
    containers = [[c.get_label() for c in ax.containers] for ax in axes]  # error-bar plots
    assert all(any(lb.startswith("|G_int − 1|") for lb in ls) for ls in labels)
    assert [any(lb.startswith("|Δ curvature|") for lb in ls) for ls in labels] == [True, True, False, False]
    assert [any(lb.startswith("|patch effect|") for lb in cs) for cs in containers] == [True] + [False] * 3
    titles = [ax.get_title() for ax in axes]
    assert ["patching: not run at this g" in t for t in titles] == [False, True, True, True]
    assert ["curvature: no learned direction" in t for t in titles] == [False, False, True, True]
    for ax in axes:  # no legend entry without a mark: every labelled line draws at least one point
        for ln in ax.get_lines():
            if not ln.get_label().startswith("_"):
                assert np.isfinite(np.asarray(ln.get_ydata(), dtype=float)).any(), ln.get_label()


@settings(max_examples=40, deadline=None)
@given(
    lo=st.floats(-5, 5),
    span=st.floats(0.01, 5),
    center=st.floats(-50, 150),
    width=st.floats(0.05, 30),
)
def test_sigmoid_is_monotone_and_bounded(lo: float, span: float, center: float, width: float) -> None:
    t = np.linspace(-100.0, 200.0, 301)
    y = _style.fit_curve(t, np.array([lo, lo + span, center, width]))
    assert np.all(np.isfinite(y)) and np.all(np.diff(y) >= 0)
    assert np.all(y >= lo - 1e-12) and np.all(y <= lo + span + 1e-12)


@settings(max_examples=30, deadline=None)
@given(tau=st.lists(st.one_of(st.floats(-20, 120), st.just(float("nan"))), min_size=1, max_size=6))
def test_table1_rows_round_trip(tau: list[float]) -> None:
    from paper_figs import table1

    t = np.asarray(tau)
    arrays = {
        "t_int": np.arange(0, 101, 10),
        "g": np.linspace(0.1, 1.0, t.size),
        "tau_spec": t,
        "tau_spec_ci": np.stack([t - 1, t + 1], 1),
        "tau_g": t - 2,
        "tau_l": t + 3,
    }
    rows = table1.rows(arrays)
    assert len(rows) == t.size
    for r, x in zip(rows, t, strict=True):
        if not np.isfinite(x):
            assert r["tau_spec"] == "n/a" and r["delta_tau"] == "n/a"
            continue
        assert float(r["delta_tau"]) == pytest.approx(5.0, abs=0.051)  # Δτ = τ_l − τ_g, eq. (73)
        if x < 0:  # outside the sampled grid [0, 100]: said in words, never a clipped number
            assert r["tau_spec"] == "before step 0"
        elif x > 100:
            assert r["tau_spec"] == "after step 100"
        else:
            assert float(r["tau_spec"]) == pytest.approx(x, abs=0.05 + 1e-9)
        assert table1.markdown_row(r).count(r["tau_spec"]) >= 1  # the Markdown carries the same cell
