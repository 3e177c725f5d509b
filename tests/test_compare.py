"""Predicted vs measured (dit_validation.compare and its parts) against independent references.

* the exact-score column of a comparison reproduces the exact κ_f = 1 steps (the acceptance line);
* the DiT curvature H_f(s; g) against float64 central differences of the plain model, and its order;
* the pushed modes against finite differences of the block inputs;
* projections at block inputs against storing every hidden state;
* the gap, closure and §2.7 summaries against plain loops on synthetic arrays;
* a micro comparison end to end: schema, resume after a kill with identical arrays, refusal of another model.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import TINY_COMPARE

import theory
from dit_validation import compare_report
from dit_validation.branches import branch_directions
from dit_validation.compare import QUICK, _Run, run_compare
from dit_validation.coupling import install_coupling
from dit_validation.measure import StepProjector, block_input_projections, linearized_copy, pushed_modes
from dit_validation.models import resolve_model
from dit_validation.results import ConfigMismatchError, load_result
from dit_validation.step_predictor import difference_curvature
from theory.streams import numpy_generator


@pytest.fixture(scope="module")
def mixture():
    return resolve_model("mixture")


def test_exact_score_column_reproduces_kappa_one(mixture, tmp_path):
    """The comparison's exact column: the step-level estimator run on the exact ε at S = 50 lands within
    0.1 step of the exact κ_f = 1 step (brentq on the exact schedule) for every factor. Fails if the
    estimator's sign change, the symmetric points or the schedule map drift."""
    cfg = replace(QUICK, clone_seeds=4, sym_points=2, n_boot=5)
    run = _Run(mixture, cfg, tmp_path / "compare.npz", "mixture", overwrite=False)
    run.unit_directions()
    run.unit_exact()
    a = run.arrays
    assert np.all(np.isfinite(a["tau_exact_kappa"]))
    np.testing.assert_array_less(np.abs(a["tau_pred_step_exact"] - a["tau_exact_kappa"]), 0.1)
    # and the exact curvature estimate is the closed form (1 − κ)/c: to 1e-5 up to a few steps past each
    # crossing (where the sign change is read); late, where |H| grows to ~10², the central difference's
    # O(h²) truncation error reaches ~1e-2 relative at h = 1e-3
    sched = theory.DDPMSchedule()
    ab = sched.alphas_cumprod[theory.sampling_timesteps(sched, cfg.num_steps)]
    H_ref = theory.exact_curvature(theory.multiscale.DEFAULT_MIXTURE, ab)
    near = np.arange(cfg.num_steps)[:, None] <= a["tau_exact_kappa"][None, :] + 5
    np.testing.assert_allclose(a["H_exact"][near], H_ref[near], rtol=1e-5)
    np.testing.assert_allclose(a["H_exact"], H_ref, rtol=1e-2)


def test_difference_curvature_equals_plain_model_central_difference(tiny64):
    """At g = 0 the coupled difference channel is the plain model: H = σ⁻¹ φᵀ(ε(x+hφ) − ε(x−hφ))/(2h),
    computed here without the coupling processor or the replica layout."""
    b = tiny64
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 8, 8, generator=gen, dtype=torch.float64)
    phi = torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    phi = phi / phi.flatten(1).norm(dim=1)[:, None, None, None]
    t, sigma, h = 500, 0.7, 1e-3
    with install_coupling(b.transformer) as handle:
        H = difference_curvature(b, handle, x, phi, t, sigma, 0.0, 1, h)

    def eps(z):
        with torch.no_grad():
            ts = torch.full((z.shape[0],), t)
            return b.transformer(
                z, timestep=ts, class_labels=torch.ones(z.shape[0], dtype=torch.long)
            ).sample[:, :1]

    ref = np.empty((3, 2))
    for f in range(2):
        d = (eps(x + 1e-4 * phi[f]) - eps(x - 1e-4 * phi[f])) / 2e-4
        ref[:, f] = (d * phi[f]).flatten(1).sum(1).numpy() / sigma
    np.testing.assert_allclose(H, ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("g", [0.3, 1.0])
def test_coupled_curvature_is_a_second_order_difference(tiny64, g):
    """The one-sided evaluation is a central difference (the replica difference is odd in h by exchange
    symmetry): halving h changes H by O(h²), i.e. about 4× less each time."""
    b = tiny64
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    phi = torch.randn(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    phi = phi / phi.norm()
    with install_coupling(b.transformer) as handle:
        H = [difference_curvature(b, handle, x, phi, 300, 0.5, g, 0, h) for h in (0.4, 0.2, 0.1)]
    d1, d2 = np.abs(H[0] - H[1]), np.abs(H[1] - H[2])
    np.testing.assert_allclose(d1 / d2, 4.0, rtol=0.15)


def test_pushed_modes_are_block_input_derivatives(tiny64):
    """r_f^(ℓ) ∝ ∂H_ℓ/∂x φ_f by one JVP = float64 central differences of the captured block inputs."""
    lin = linearized_copy(tiny64.transformer)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 8, 8, generator=gen, dtype=torch.float64)
    phi = torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    phi = phi / phi.flatten(1).norm(dim=1)[:, None, None, None]
    H0, r, gain = pushed_modes(lin, x, phi, 400, 1, [0, 1])

    def inputs(z):
        seen = []
        hooks = [
            blk.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
            for blk in lin.transformer.transformer_blocks
        ]
        with torch.no_grad():
            lin.transformer(
                z,
                timestep=torch.full((z.shape[0],), 400),
                class_labels=torch.ones(z.shape[0], dtype=torch.long),
            )
        for h in hooks:
            h.remove()
        return torch.stack(seen)  # (L, B, N, D)

    h = 1e-5
    fd = (inputs(x + h * phi) - inputs(x - h * phi)) / (2 * h)  # (L, F, N, D)
    torch.testing.assert_close(H0, inputs(x[None])[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gain, fd.flatten(2).norm(dim=-1).numpy(), rtol=1e-6)
    torch.testing.assert_close(r, fd / fd.flatten(2).norm(dim=-1)[..., None, None], rtol=1e-6, atol=1e-8)


def test_block_input_projections_equal_stored_hidden_states(tiny64):
    """Signed projections of eq. (74) at block inputs at the measured steps = storing every block input."""
    b = tiny64
    D = 16 * 16  # tiny: 16 tokens x hidden 16
    gen = torch.Generator().manual_seed(3)
    bases = {s: torch.randn(2, 2, D, generator=gen, dtype=torch.float64) for s in (0, 2)}
    p = block_input_projections(b, 0.4, range(5), 0.5, 4, 1, [0, 1], bases, batch_size=2)
    store = {ell: [] for ell in (0, 1)}
    hooks = [
        b.transformer.transformer_blocks[ell].register_forward_pre_hook(
            lambda _m, a, ell=ell: store[ell].append(a[0].clone())
        )
        for ell in (0, 1)
    ]
    from dit_validation.sampler import sample_pairs

    try:
        sample_pairs(
            b,
            list(range(5)),
            g=0.4,
            num_steps=4,
            ddim_eta=0.0,
            sigma=0.5,
            class_label=1,
            guidance_scale=b.guidance_scale,
        )
    finally:
        for h in hooks:
            h.remove()
    for i, s in enumerate((0, 2)):
        for ell in (0, 1):
            H = store[ell][s]
            v = ((H[:5] - H[5:]) / math.sqrt(2)).flatten(1)
            np.testing.assert_allclose(p[i, ell], (bases[s][ell] @ v.T).numpy(), rtol=1e-10, atol=1e-12)
    assert StepProjector(bases, 5).p.shape == (2, 2, 2, 5)


def test_branch_directions():
    """Mixture: the factor patterns, their half separations A_f, Λ = A² + s², centroids global → local; the
    symmetric map puts points on every decision boundary. (Band directions of other models:
    tests/test_branches.py, against the exact-score sampler.)"""
    mix = theory.multiscale.DEFAULT_MIXTURE
    d = branch_directions(resolve_model("mixture"))
    np.testing.assert_array_equal(d.phi, theory.multiscale.patterns(mix))
    np.testing.assert_allclose(d.Lambda, np.square(mix.amplitudes) + mix.s**2)
    np.testing.assert_allclose(d.half_separation, mix.amplitudes)
    assert d.source == "factors" and set(d.band) == {"factor"} and np.all(np.diff(d.centroid) > 0)
    pts = d.symmetric(np.random.default_rng(0).standard_normal((3, mix.dim)), 0.5)
    np.testing.assert_allclose(pts @ d.phi.T, 0.0, atol=1e-12)


# ---------------------------------------------------------------- summaries on synthetic arrays


def _synthetic(G=4, F=3, S=20, seed=0):
    rng = np.random.default_rng(seed)
    g = np.linspace(0.0, 0.9, G)
    return {
        "g": g,
        "rho": np.atleast_1d(theory.rho(g)),
        "splits": np.ones((G, F), bool),
        "tau_meas": np.array([[5.0, 8.0, 11.0]] * G) + rng.normal(0, 0.1, (G, F)),
        "tau_pred_step": np.array([[5.0, 9.0, np.inf]] * G),
        "tau_pred_biroli": np.array([4.0, 7.0, 10.0]),
        "H_step": np.ones((G, S, F)),
        "m_state": np.ones((S, F)),
        "state_bimodal": np.zeros((S, F), bool),
    }


def test_gaps_against_plain_loops():
    a = _synthetic()
    G = a["g"].size
    block = {"tau_pred_block": np.full((G, 2, 3), np.nan)}
    boot = a["tau_meas"][:, 2:3] - a["tau_meas"][:, 0:1] + np.random.default_rng(1).normal(0, 0.5, (G, 200))
    M = 48
    out = compare_report.gaps(a, block, boot, M)
    np.testing.assert_allclose(out["gap_meas"], a["tau_meas"][:, 2] - a["tau_meas"][:, 0])
    assert np.all(np.isnan(out["gap_pred_step"]))  # the last direction never crosses: no step-level gap
    np.testing.assert_allclose(out["gap_pred_biroli"], 6.0)
    # Student's interval with the bootstrap standard error (clone_tau.student_interval), written out
    k = scipy.stats.t.ppf(0.975, M - 1) * math.sqrt(M / (M - 1))
    half = k * boot.std(axis=1)
    np.testing.assert_allclose(
        out["gap_meas_ci"], np.stack([out["gap_meas"] - half, out["gap_meas"] + half], 1)
    )
    x, y = a["rho"], out["gap_meas"]
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    assert out["gap_fit_meas"][0] == pytest.approx(slope)
    assert compare_report.gap_pair(4) == (0, 3)
    # another pair of directions: the gap between them
    out2 = compare_report.gaps(a, block, boot, M, pair=(1, 2))
    np.testing.assert_allclose(out2["gap_meas"], a["tau_meas"][:, 2] - a["tau_meas"][:, 1])
    # the convention: neither direction splits → no window (0); only one splits → undefined
    a["splits"] = np.array(
        [[True, True, True], [False, True, False], [False, True, True], [True, True, True]]
    )
    a["tau_pred_step"] = np.array(
        [[5.0, 9.0, 12.0], [np.inf, 9.0, np.inf], [5.0, 9.0, np.inf], [np.nan, 1.0, 2.0]]
    )
    out = compare_report.gaps(a, block, boot, M)
    assert np.isfinite(out["gap_meas"][0]) and out["gap_meas"][1] == 0.0 and np.isnan(out["gap_meas"][2])
    np.testing.assert_array_equal(out["gap_pred_step"][:3], [7.0, 0.0, np.nan])
    assert np.isnan(out["gap_pred_step"][3])  # undefined (NaN) is not "never"
    # the fit against rho runs through the couplings where both split: a conventional 0 is no point of it
    a["splits"] = np.array([[True, True, True]] * 3 + [[False, True, False]])
    out = compare_report.gaps(a, block, boot, M)
    assert out["gap_meas"][3] == 0.0
    x, y = a["rho"][:3], out["gap_meas"][:3]
    np.testing.assert_allclose(out["gap_fit_meas"][:2], np.polyfit(x, y, 1), rtol=1e-12)
    assert not np.allclose(out["gap_fit_meas"][:2], np.polyfit(a["rho"], out["gap_meas"], 1))


def test_measured_tau_labels_clamped_values_instead_of_printing_the_bound():
    """compare.md's measured column: a τ or CI end clamped to the split grid reads "before step 0" /
    "after step 50", never 0.00 or 50.00; a direction that never splits reads "no split"."""
    from dit_validation.clone_tau import TauStatus

    a = {
        "t_int": np.arange(0, 51, 5),
        "tau_meas": np.array([[0.0, 12.5, 50.0, np.nan, 30.0]]),
        "tau_meas_ci": np.array([[[0.0, 4.0], [0.0, 20.1], [41.0, 50.0], [np.nan, np.nan], [25.0, 35.0]]]),
        "tau_meas_status": np.array(
            [[TauStatus.BEFORE, TauStatus.INSIDE, TauStatus.AFTER, TauStatus.NO_SPLIT, TauStatus.INSIDE]]
        ),
    }
    text = [compare_report._tau_text(a, "tau_meas", (0, f)) for f in range(5)]
    assert text == [
        "before step 0 [before step 0, 4.00]",
        "12.50 [before step 0, 20.10]",
        "after step 50 [41.00, after step 50]",
        "no split",
        "30.00 [25.00, 35.00]",
    ]
    assert compare_report._tau_text(a, "tau_meas", (0, 0), 1, ci=False) == "before step 0"
    a["tau_meas_status"][0, 4] = TauStatus.NOT_LEARNED  # the gate refused it: no τ, whatever is stored
    assert compare_report._tau_text(a, "tau_meas", (0, 4)) == "not learned"


def test_closure_ratio_against_a_loop():
    """Eq. (56): propagate m from the first bimodal step with J_s = c₁ + b_s σ_t H; divide by measured m."""
    S, F = 12, 2
    a = {"g": np.array([0.0])}
    rng = np.random.default_rng(5)
    a["H_step"] = rng.normal(0, 1, (1, S, F))
    a["m_state"] = rng.uniform(0.5, 2, (S, F))
    a["state_bimodal"] = np.zeros((S, F), bool)
    a["state_bimodal"][4:, 0] = True
    got = compare_report.closure_ratio(a, S)
    sched = theory.DDPMSchedule()
    ab = sched.alphas_cumprod[theory.sampling_timesteps(sched, S)]
    want = np.full((S, F), np.nan)
    m = a["m_state"][4, 0]
    for s in range(4, S):
        want[s, 0] = m / a["m_state"][s, 0]
        ab_prev = ab[s + 1] if s + 1 < S else 1.0
        c1 = math.sqrt(ab_prev / ab[s])
        sig = math.sqrt(1 - ab[s])
        m *= c1 + (math.sqrt(1 - ab_prev) - c1 * sig) * sig * a["H_step"][0, s, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------- a micro comparison end to end

MICRO = replace(TINY_COMPARE, g=(0.0, 0.5), num_steps=6, n_boot=10)


class Killed(Exception):
    pass


@pytest.mark.slow
def test_micro_compare_resumes_and_refuses_another_model(tiny32, tmp_path, monkeypatch):
    full = load_result(
        run_compare(tiny32, MICRO, tmp_path / "full", model_name="random:tiny", progress=False)
    )
    assert full.complete and full.arrays["tau_meas"].shape == (2, 2)
    assert str(full.arrays["direction_source"]) == "bands"
    # kill after the third unit, resume: identical arrays
    calls = {"n": 0}
    original = _Run.save

    def save_then_die(self, unit, complete=False):
        original(self, unit, complete)
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed

    monkeypatch.setattr(_Run, "save", save_then_die)
    with pytest.raises(Killed):
        run_compare(tiny32, MICRO, tmp_path / "resumed", model_name="random:tiny", progress=False)
    monkeypatch.setattr(_Run, "save", original)
    partial = load_result(tmp_path / "resumed" / "compare.npz")
    assert not partial.complete and len(partial.meta["done"]) == 3
    resumed = load_result(
        run_compare(tiny32, MICRO, tmp_path / "resumed", model_name="random:tiny", progress=False)
    )
    for key, value in full.arrays.items():
        np.testing.assert_array_equal(resumed.arrays[key], value, err_msg=key)
    # another model (or grid) into the same directory is refused, naming what differs
    with pytest.raises(ConfigMismatchError, match="differs in: .*model"):
        run_compare(tiny32, MICRO, tmp_path / "full", model_name="mixture", progress=False)
    assert (tmp_path / "full" / "compare.md").read_text().startswith("# Predicted vs measured — random:tiny")


def test_block_kappa_matches_eq50_by_a_plain_loop():
    """η (eq. 46 + the eq. 32 cross term, π(g) of eq. 26: the block's Jacobian J) and κ (eq. 50 in J,
    γκ_f/(c(1 − J) + γκ_f)) against a per-element loop, with the conventions: m = 0 where the EM finds no
    bimodality (κ = 0), NaN where eq. (55) fails or γ ≤ 0."""
    from dit_validation.compare import block_kappa

    rng = np.random.default_rng(3)
    shape = (5, 3, 4)
    parts = {
        k: 0.3 * rng.standard_normal(shape)
        for k in ("lambda_mlp", "chi", "pi_q", "pi_k", "cross_R", "cross_q", "cross_k")
    }
    gamma = rng.uniform(-0.2, 2.0, shape)
    m, c = rng.uniform(0.0, 2.0, shape), rng.uniform(0.2, 2.0, shape)
    bimodal = rng.random(shape) < 0.7
    for g in (0.0, 0.4, 1.0):
        eta, kappa, status = block_kappa(parts, gamma, m, c, bimodal, g)
        rho, xi = (1 - g) / (1 + g), 1 / (1 + g)
        for idx in np.ndindex(shape):
            q = {k: v[idx] for k, v in parts.items()}
            pi_g = (1 + g) * q["pi_q"] + (1 - g) * q["pi_k"]
            e = (
                1
                + q["lambda_mlp"]
                + rho * q["chi"]
                + xi * pi_g
                + rho * (q["cross_R"] + q["cross_k"])
                + q["cross_q"]
            )
            assert eta[idx] == pytest.approx(e, rel=1e-12, abs=1e-14)
            mm = m[idx] if bimodal[idx] else 0.0
            bracket = (1 - e) * c[idx] + gamma[idx] * mm**2 / c[idx]  # (1 − η)c + γ with η = K, not J
            if gamma[idx] <= 0:
                assert np.isnan(kappa[idx]) and status[idx] == int(theory.KappaStatus.GAMMA_NOT_POSITIVE)
            elif mm == 0:
                assert kappa[idx] == 0.0
            elif bracket <= 0:
                assert np.isnan(kappa[idx]) and status[idx] == int(theory.KappaStatus.VIOLATES_55)
            else:
                assert kappa[idx] == pytest.approx(gamma[idx] * mm**2 / (c[idx] * bracket), rel=1e-12)


@pytest.mark.parametrize("num_steps", [50, 100])
def test_block_kappa_on_a_residual_map_with_known_answer(num_steps):
    """The per-block pipeline on a map whose answer is known: one exact DDIM step in x̃ = x/α_t, a 'block'
    whose score-free part is the identity like a residual block's (K̃ = 1, theory.exact_step). Its Jacobian J
    along φ_f by float64 central differences (what the JVP gives for a block), γ by the package's fit of eq.
    (36) to its odd response (dit_validation.gamma), m̃, c̃ exact: block_kappa must give κ = κ_f = m²/c
    (relative 1e-8·(1 + c/γ + κ_f), the finite-difference error of J amplified), with eq. (55) holding at
    every step, and its κ = 1 crossing the exact κ_f = 1 step within 0.05 step.

    Fails with J read as η in eq. (50) (the double count of γ(κ_f − 1)/c): that gives κ_f/(2 − κ_f) and
    'violates (55)' from κ_f = 2 on — checked here too.
    """
    from dit_validation.compare import block_kappa
    from dit_validation.gamma import estimate_gamma

    mix, sched = theory.multiscale.DEFAULT_MIXTURE, theory.DDPMSchedule()
    ek = theory.exact_step_kappa(mix, sched, num_steps, coordinates="x_over_alpha")
    phi = theory.multiscale.patterns(mix).reshape(mix.num_factors, 1, mix.size, mix.size)
    S, F = ek.m.shape
    J, gamma = np.full((S, F), np.nan), np.full((S, F), np.nan)
    for s in range(S):
        ab_t, ab_prev = float(ek.alpha_bar_t[s]), float(ek.alpha_bar_prev[s])

        def step(z, ab_t=ab_t, ab_prev=ab_prev):  # the block: x̃ ↦ x̃⁺
            x = np.sqrt(ab_t) * z
            eps = theory.multiscale.mixture_eps(mix, x, ab_t)
            return theory.ddim_step(x, eps, ab_t, ab_prev, 0.0, None) / np.sqrt(ab_prev)

        z0 = theory.symmetric_points(mix, ab_t, 1, numpy_generator(11, s))[0] / np.sqrt(ab_t)
        h = 1e-4 * min(np.sqrt(float(ek.c[s, 0])), float(ek.c[s, 0]) / float(ek.m[s].max()))
        J[s] = theory.directional_curvature(step, z0[None], phi, 1.0, h)[0]
        for f in range(F):

            def odd(a, f=f, step=step, z0=z0):
                out = step(np.stack([z0 + t * phi[f] for t in a] + [z0 - t * phi[f] for t in a]))
                return np.sum((out[: a.size] - out[a.size :]) * phi[f], axis=(1, 2, 3)) / 2

            gamma[s, f] = estimate_gamma(odd, float(ek.m[s, f]), float(ek.c[s, f])).gamma
    parts = {k: np.zeros((S, F)) for k in ("chi", "pi_q", "pi_k", "cross_R", "cross_q", "cross_k")}
    parts["lambda_mlp"] = J - 1.0  # η of eq. (46) = 1 + λ: the whole measured slope
    eta, kappa, status = block_kappa(parts, gamma, ek.m, ek.c, np.ones((S, F), bool), 0.0)
    np.testing.assert_allclose(eta, J, rtol=1e-15)
    assert np.all(status == int(theory.KappaStatus.DEFINED))
    # δκ/κ = c δJ/γ: the ~3e-9 relative error of the central difference of J, times cJ/γ ≈ c/γ + κ_f
    tol = 1e-8 * (1.0 + ek.c / ek.gamma[:, None] + ek.kappa_limit)
    assert np.all(np.abs(kappa / ek.kappa_limit - 1.0) < tol)
    exact = theory.exact_speciation_step(mix, sched, num_steps)
    np.testing.assert_allclose(theory.speciation_step(kappa, ek.steps, axis=0), exact, atol=0.05)
    old = np.asarray(theory.speciation_parameter(gamma, ek.m, ek.c, J))  # J in η's place
    kf = ek.kappa_limit
    np.testing.assert_allclose(old[kf < 1.9], (kf / (2 - kf))[kf < 1.9], rtol=1e-5)
    assert np.all(np.isnan(old[kf > 2.1]))


def test_predictions_markdown_states_each_verdict_with_its_interval_and_prediction_2_per_g():
    """predictions.md: each of the four §2.7 rows carries its verdict, the estimate with the paired interval
    that decides it and the reason; a depth file gives prediction 2 at g = 0 and a row per g with both causal
    shares. Fails if a verdict is mislabelled, an interval or a g row goes missing, or a table row breaks."""
    from dit_validation.verdicts import compare_verdicts

    G, F, M, B = 2, 3, 48, 300
    rng = np.random.default_rng(3)
    tau = np.array([[10.0, 14.0, 19.0], [9.0, 12.0, 13.0]])
    a = _synthetic(G=G, F=F)
    a |= {
        "factor_names": np.array(["half", "quadrant", "checker"]),
        "tau_meas": tau,
        "tau_meas_ci": np.stack([tau - 2, tau + 2], -1),
        "tau_meas_status": np.zeros((G, F), np.int64),
        "tau_meas_boot": tau[..., None] + rng.normal(0, 3, (G, 1, B)) + rng.normal(0, 0.5, (G, F, B)),
        "splits": np.ones((G, F), bool),
        "learned": np.array([True, True, False]),  # the checker was refused by the gate
        "agree": np.zeros((G, F, 2, M)),
        "t_int": np.arange(0, 51, 5),
        "gap_meas": np.array([4.0, 3.0]),
        "gap_meas_ci": np.array([[3.0, 5.0], [2.0, 4.0]]),
    }
    a |= compare_verdicts(a)
    d = {
        "g": np.array([0.0, 0.9]),
        "layers": np.arange(12),
        "uniform_share": np.asarray(0.25),
        "gint_depth": np.array([0.61, 0.3]),
        "gint_depth_ci": np.array([[0.42, 0.77], [0.1, 0.5]]),
        "gint_resolved": np.arange(12) == np.array([[11], [-1]]),
        "curvature_share_last_quarter": np.array([0.08, np.nan]),
        "curvature_share_last_quarter_ci": np.array([[0.06, 0.10], [np.nan, np.nan]]),
        "patch_share_last_quarter": np.array([0.05, np.nan]),
        "patch_share_last_quarter_ci": np.array([[0.0, 0.12], [np.nan, np.nan]]),
        "prediction2_verdict": np.array([-1, 0]),
        "prediction2_margin": np.array([-0.15, np.nan]),
        "prediction2_reason": np.array(
            ["curvature decomposition: CI [0.06, 0.10] below the uniform share", "x"]
        ),
    }
    text = compare_report.predictions_markdown(({"config": {"model": "m"}}, a), ({}, d))
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in text.splitlines() if ln.startswith("| ")}
    hier = rows["1. hierarchy"]
    assert "| holds | +4.00 [" in hier and "tau(quadrant) - tau(half)" in hier and "not learned" in hier
    assert "| FAILS | -0.15 share above the uniform 0.25" in rows["2. depth_localization"]
    assert "| holds | +4.00 [" in rows["3. natural_gap"]
    assert "| undefined | n/a |" in rows["4. collapse"] and "fewer than 3" in rows["4. collapse"]
    assert rows["0"].startswith("| 0 | 0.08 [0.06, 0.10] | 0.05 [0.00, 0.12] | FAILS | 1/12 |")
    assert rows["0.9"].startswith("| 0.9 | — | — | undefined | 0/12 |")
    assert rows["half → quadrant"].endswith("| holds |")
    assert not any("  " in ln for ln in text.splitlines())  # no double spaces left by an empty CI
