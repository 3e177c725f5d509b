"""Protocol II (§3.2): streaming fixed-basis energies vs storing everything, bands, G_int, resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dit_validation.analysis import at_step, band_masks
from dit_validation.capture import gram_basis
from dit_validation.coupling import install_coupling
from dit_validation.gint import gint_heldout
from dit_validation.protocol2 import Protocol2Config, energies_for_g, run_protocol2, tau_from_protocol1
from dit_validation.results import load_result, make_meta, save_result
from dit_validation.sampler import BASIS_STREAMS, initial_pairs, make_scheduler, predict_eps, sample_pairs

B64 = torch.float64


def _block_outputs_at_start(bundle, cfg, g, seeds, streams):
    """Raw block outputs at s = 0 of the given pairs under coupling g, one forward, sliced by hand."""
    shape = (bundle.latent_channels, bundle.sample_size, bundle.sample_size)
    zA, zB = initial_pairs(list(seeds), shape, cfg.sigma, streams)
    store = {}
    hooks = [
        bundle.transformer.transformer_blocks[ell].register_forward_hook(
            lambda mod, args, out, ell=ell: store.__setitem__(ell, out.detach().clone())
        )
        for ell in cfg.layers
    ]
    M = len(seeds)
    t0 = int(make_scheduler(bundle, cfg.num_steps).timesteps[0])
    try:
        with install_coupling(bundle.transformer) as handle:
            predict_eps(
                bundle, handle, torch.cat([zA, zB]), t0, np.full(M, g), cfg.class_label, cfg.guidance_scale
            )
    finally:
        for h in hooks:
            h.remove()
    guided = cfg.guidance_scale > 1
    out = {}
    for ell, H in store.items():
        A, B = (H[:M], H[2 * M : 3 * M]) if guided else (H[:M], H[M:])
        out[ell] = ((A - B) / math.sqrt(2)).flatten(1).numpy()
    return out


def _reference_energies(bundle, cfg, g):
    """Store every block output of every step, then eq. (74)-(75) with a D x D eigendecomposition (eq. 42);
    the held-out basis from its own pairs' block outputs at s = 0, by the same D x D route."""
    store: dict[int, list[torch.Tensor]] = {ell: [] for ell in cfg.layers}
    hooks = [
        bundle.transformer.transformer_blocks[ell].register_forward_hook(
            lambda mod, args, out, ell=ell: store[ell].append(out.detach().clone())
        )
        for ell in cfg.layers
    ]
    seeds = list(range(cfg.seed_base, cfg.seed_base + cfg.num_seeds))
    try:
        sample_pairs(
            bundle,
            seeds,
            g=g,
            num_steps=cfg.num_steps,
            ddim_eta=cfg.ddim_eta,
            sigma=cfg.sigma,
            class_label=cfg.class_label,
            guidance_scale=cfg.guidance_scale,
        )
    finally:
        for h in hooks:
            h.remove()
    M, S = len(seeds), cfg.num_steps
    guided = cfg.guidance_scale > 1
    out = np.full((S, len(cfg.layers), cfg.num_modes), np.nan)
    lam0 = np.full((len(cfg.layers), cfg.num_modes), np.nan)
    held_sq = np.full((S, len(cfg.layers), cfg.gint_modes, M), np.nan)
    held_eig = np.full((len(cfg.layers), cfg.gint_modes), np.nan)
    Vb = _block_outputs_at_start(bundle, cfg, g, range(cfg.basis_pairs), BASIS_STREAMS)
    for j, ell in enumerate(cfg.layers):
        V = []
        for H in store[ell]:  # one forward per step (all seeds in one batch)
            A, B = (H[:M], H[2 * M : 3 * M]) if guided else (H[:M], H[M:])
            V.append(((A - B) / math.sqrt(2)).flatten(1).numpy())
        C0 = V[0].T @ V[0] / M  # (D, D), eq. (42)
        w, r = np.linalg.eigh(C0)
        w, r = w[::-1][: cfg.num_modes], r[:, ::-1][:, : cfg.num_modes]
        lam0[j] = w
        for s in range(S):
            out[s, j] = ((V[s] @ r) ** 2).sum(0) / ((V[0] @ r) ** 2).sum(0)  # eq. (75)
        wb, rb = np.linalg.eigh(Vb[ell].T @ Vb[ell] / cfg.basis_pairs)
        held_eig[j] = wb[::-1][: cfg.gint_modes]
        rb = rb[:, ::-1][:, : cfg.gint_modes]
        for s in range(S):
            held_sq[s, j] = ((V[s] @ rb) ** 2).T
    return lam0, out, held_eig, held_sq


@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_streaming_projection_equals_stored_reference(tiny64, guidance):
    bundle = tiny64
    cfg = Protocol2Config(
        g=(0.5,),
        num_seeds=5,
        num_steps=4,
        num_modes=4,
        guidance_scale=guidance,
        batch_size=2,
        basis_pairs=7,
        gint_modes=3,
    ).resolved(bundle)
    got = energies_for_g(bundle, cfg, 0.5)
    ref_lam0, ref, ref_held_eig, ref_held_sq = _reference_energies(bundle, cfg, 0.5)
    np.testing.assert_allclose(got.eig0, ref_lam0, rtol=1e-9)
    np.testing.assert_allclose(got.energy_seed.mean(-1), ref, rtol=1e-7)
    np.testing.assert_allclose(got.energy_seed.mean(-1)[0], 1.0, rtol=1e-9)  # λ_k(0, ℓ) = 1 by construction
    # held-out basis: rows stored in float64 for a float64 model, so the same tolerance holds
    np.testing.assert_allclose(got.heldout_eig, ref_held_eig, rtol=1e-9)
    np.testing.assert_allclose(got.heldout_proj, ref_held_sq, rtol=1e-7, atol=1e-12)


def test_gram_basis_is_the_covariance_eigenbasis():
    rng = np.random.default_rng(0)
    V0 = torch.tensor(rng.normal(size=(6, 40)) * np.linspace(3, 0.5, 40))
    r, lam = gram_basis(V0, 6)
    C0 = (V0.T @ V0 / 6).numpy()
    np.testing.assert_allclose(lam.numpy(), np.linalg.eigvalsh(C0)[::-1][:6], rtol=1e-10)
    np.testing.assert_allclose((r @ r.T).numpy(), np.eye(6), atol=1e-10)  # orthonormal rows
    np.testing.assert_allclose(r.numpy() @ C0 @ r.numpy().T, np.diag(lam.numpy()), atol=1e-10)
    r2, lam2 = gram_basis(torch.cat([V0[:3], V0[:3]]), 6)  # rank 3: trailing modes are NaN
    assert np.isfinite(lam2[:3].numpy()).all() and np.isnan(lam2[3:].numpy()).all()


def test_bands_interpolation_and_tau_lookup(tmp_path, make_arrays):
    lam0 = np.array([[4.0, 3.0, 2.0, 1.0, np.nan]])
    lead, trail = band_masks(lam0, 0.25, 0.5)
    assert lead.tolist() == [[True, False, False, False, False]]
    assert trail.tolist() == [[False, False, True, True, False]]
    x = np.arange(5.0)[:, None] * 2
    np.testing.assert_allclose(at_step(x, 1.25), [2.5])
    np.testing.assert_allclose(at_step(x, 99), [8.0])
    p1 = tmp_path / "p1.npz"
    arrays = make_arrays(
        "protocol1",
        {"g": 2, "t_int": 2, "seed": 1, "param": 4, "ci": 2},
        g=[0.1, 0.5],
        tau_spec=[60.0, 40.0],
        control_tau_spec=53.0,
    )
    save_result(p1, make_meta("protocol1", {}, [], complete=True), arrays)
    np.testing.assert_allclose(tau_from_protocol1(p1, [0.0, 0.1, 0.3]), [53.0, 60.0, 50.0])
    with pytest.raises(ValueError, match=r"covers g in \[0, 0.5\] .* but g = 0.9 was asked for"):
        tau_from_protocol1(p1, [0.9])
    # provenance: another model's or another step count's τ is refused, naming the file and the field
    meta = make_meta("protocol1", {"model": "random:small", "num_steps": 50}, [], complete=True)
    save_result(p1, meta, arrays)
    with pytest.raises(ValueError, match=r"p1.npz' was made with model = 'random:small', .* model = 'x'"):
        tau_from_protocol1(p1, [0.1], model="x")
    with pytest.raises(ValueError, match=r"made with num_steps = 50, .* needs num_steps = 20"):
        tau_from_protocol1(p1, [0.1], model="random:small", num_steps=20)


def test_run_protocol2_file_and_resume(tiny64, forward_counter, tmp_path):
    bundle = tiny64
    cfg = Protocol2Config(
        g=(0.0, 0.6),
        num_seeds=4,
        num_steps=4,
        tau_spec=(1.5, 2.0),
        batch_size=4,
        basis_pairs=16,
        gint_modes=4,
        n_boot=50,
    )
    full = load_result(run_protocol2(bundle, cfg, tmp_path / "full.npz", progress=False))
    meta, a = full
    G, S, L, K, M, Kh = 2, 4, 2, 4, 4, 4
    for key, shape in {
        "basis_seeds": (16,),
        "heldout_eig": (G, L, Kh),
        "heldout_proj": (G, S, L, Kh, M),
        "heldout_energy": (G, S, L, Kh),
        "gint_excess": (G, L),
        "gint_excess_ci": (G, L, 2),
        "gint_excess_boot": (G, 50, L),
        "gint_null": (G, L),
        "gint_null_ci": (G, L, 2),
        "eig0": (G, L, K),
        "energy": (G, S, L, K),
        "energy_seed": (G, S, L, K, M),
        "lead": (G, L),
        "trail": (G, L),
        "lead_std": (G, L),
        "G_int": (G, L),
        "lead_band": (G, L, K),
        "tau_spec": (G,),
    }.items():
        assert a[key].shape == shape, key
    np.testing.assert_allclose(a["energy_seed"].mean(-1), a["energy"], rtol=1e-12)
    np.testing.assert_allclose(a["G_int"], a["trail"] / a["lead"])  # eq. (80)
    # eq. (77)-(78): g = 0 read at s = τ = 1.5 (halfway between steps 1 and 2), g = 0.6 at s = 2
    for i, e in ((0, 0.5 * (a["energy"][0, 1] + a["energy"][0, 2])), (1, a["energy"][1, 2])):
        np.testing.assert_allclose(a["lead"][i], [e[j, a["lead_band"][i, j]].mean() for j in range(L)])
        np.testing.assert_allclose(a["trail"][i], [e[j, a["trail_band"][i, j]].mean() for j in range(L)])
    assert meta["complete"] and meta["done"] == ["g=0", "g=0.6"]
    # the held-out G_int: eq. (75) over the measured seeds at the same fractional τ, bands of K = 4
    for i, tau in enumerate((1.5, 2.0)):
        p = a["heldout_proj"][i]
        np.testing.assert_allclose(a["gint_excess"][i], gint_heldout(p[0], at_step(p, tau)) - 1.0)
        lo, hi = a["gint_excess_ci"][i].T
        assert np.all(lo <= hi) and np.isfinite(a["gint_null"][i]).all()
    np.testing.assert_allclose(a["heldout_energy"][:, 0], 1.0)  # eq. (75) at s = 0

    class Killed(Exception):
        pass

    def kill(keys):
        raise Killed

    path = tmp_path / "killed.npz"
    with pytest.raises(Killed):
        run_protocol2(bundle, cfg, path, progress=False, unit_callback=kill)
    assert load_result(path)[0]["done"] == ["g=0"]
    with forward_counter(bundle.transformer) as count:
        run_protocol2(bundle, cfg, path, progress=False)
    # for the remaining g only: one forward for the paper's basis, 16 / 4 for the held-out one, S steps
    assert count.calls == 1 + 4 + S
    resumed = load_result(path)[1]
    for key in a:
        np.testing.assert_array_equal(resumed[key], a[key], err_msg=key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(g=(1.2,)), r"g must lie in \[0, 1\], got 1.2"),
        (dict(num_modes=9), r"num_modes must lie in \[1, 4\]"),
        (dict(tau_spec=(1.0, 2.0)), "tau_spec needs one value per g"),
        (dict(layers=(0, 7)), r"layers must lie in \[0, 1\], got 7"),
        (dict(sigma=0.0), r"sigma must lie in \(0, inf\], got 0"),
        (dict(gint_modes=40, basis_pairs=32), r"gint_modes must lie in \[1, 32\] \(basis_pairs"),
        (dict(basis_pairs=1), r"basis_pairs must be an integer >= 2, got 1"),
        (dict(n_boot=5), r"n_boot must be an integer >= 10, got 5"),
        (dict(basis_seed_base=-1), r"basis_seed_base must be an integer >= 0, got -1"),
    ],
)
def test_config_validation(tiny64, change, message):
    base = Protocol2Config(g=(0.3,), num_seeds=4, num_steps=4)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(base, **change).resolved(tiny64)


def test_heldout_basis_does_not_depend_on_the_measured_seeds(tiny64):
    """Changing which or how many seeds are measured leaves the held-out basis untouched (its pairs live on
    their own streams); the paper's basis, built from the measured seeds, moves with them."""
    base = Protocol2Config(
        g=(0.5,), num_seeds=3, num_steps=3, basis_pairs=9, gint_modes=4, batch_size=2
    ).resolved(tiny64)
    a = energies_for_g(tiny64, base, 0.5)
    more = energies_for_g(tiny64, dataclasses.replace(base, num_seeds=5, num_modes=5), 0.5)
    other = energies_for_g(tiny64, dataclasses.replace(base, seed_base=100), 0.5)
    np.testing.assert_array_equal(more.heldout_eig, a.heldout_eig)
    np.testing.assert_array_equal(other.heldout_eig, a.heldout_eig)
    # seeds 0-2 are measured in both runs: their projections agree, so the basis vectors are the same
    np.testing.assert_allclose(more.heldout_proj[..., :3], a.heldout_proj, rtol=1e-10, atol=1e-14)
    assert not np.allclose(more.eig0[:, :3], a.eig0)  # the paper's basis moved with the measured seeds
    moved = energies_for_g(tiny64, dataclasses.replace(base, basis_seed_base=50), 0.5)
    assert not np.allclose(moved.heldout_eig, a.heldout_eig)  # another held-out set: another basis
