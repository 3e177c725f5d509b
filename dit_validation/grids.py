"""The paper's experimental grids and the package's quick CPU grid, each with its source (torch-free).

Every default coupling grid, step count and seed count of the protocols, the comparison, the theory file
and ``synchrogap reproduce`` comes from here, so that "the paper's grid" means one thing.
"""

from __future__ import annotations

__all__ = [
    "PAPER_G",
    "PROTOCOL1_G",
    "FIGURE_G",
    "PAPER_NUM_STEPS",
    "PAPER_NUM_SEEDS",
    "PROTOCOL1_DDIM_ETA",
    "PROTOCOL2_DDIM_ETA",
    "QUICK_G",
    "QUICK_COMPARE_G",
    "QUICK_STEPS",
    "QUICK_T_INT_STRIDE",
    "QUICK_SEEDS",
    "QUICK_PROTOCOL2_SEEDS",
    "QUICK_BOOT",
    "GRIDS",
    "SMOKE_G",
    "SMOKE_STEPS",
    "SMOKE_T_INT_STRIDE",
    "SMOKE_SEEDS",
    "SMOKE_BOOT",
]

#: Every coupling strength of §4: Protocol I's Table 1 grid plus g = 0 of Fig. 1 (Protocol II sweeps it all).
PAPER_G: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
#: Protocol I (§4.1, Table 1): g > 0 only; g = 0 is the separate shared-noise control of Fig. 5.
PROTOCOL1_G: tuple[float, ...] = tuple(g for g in PAPER_G if g > 0)
#: The couplings the paper's Protocol II figures show: Fig. 1 (g = 0), Fig. 9 (0.1), Fig. 10 (0.3, 0.9).
FIGURE_G: tuple[float, ...] = (0.0, 0.1, 0.3, 0.9)
#: 100 DDIM reverse steps (§4.1, §4.2).
PAPER_NUM_STEPS = 100
#: M = 32 paired seeds (§4.1).
PAPER_NUM_SEEDS = 32
#: Protocol I samples with DDIM η = 1, "effectively recovering DDPM" (§3.1, §4.1).
PROTOCOL1_DDIM_ETA = 1.0
#: Protocol II samples with deterministic DDIM, η = 0 (§4.2).
PROTOCOL2_DDIM_ETA = 0.0

# The quick grid: the couplings of the paper's figures, few seeds and steps, so the shipped default runs in
# minutes on 2 CPU cores. 50 steps divide the 1000 training steps (exact DDIM timesteps).
QUICK_G: tuple[float, ...] = tuple(g for g in FIGURE_G if g > 0)
#: The comparison's quick couplings: dense at small g, where the clones of the testbed still split. The
#: collapse verdict needs ≥ 3 couplings at which both directions of the gap split (dit_validation.verdicts);
#: on the figure grid (0, 0.1, 0.3, 0.9) only g = 0 and 0.1 had both, so the collapse could not be decided.
QUICK_COMPARE_G: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
QUICK_STEPS = 50
QUICK_T_INT_STRIDE = 5
QUICK_SEEDS = 16
#: Protocol II's measured seeds in the quick grid. On the shipped mixture model the held-out G_int − 1 at
#: g = 0 is −0.12, −0.10, −0.07 at blocks 1–3 (M = 512; benchmarks/bench_gint_calibration.py) with a seed
#: SE of ≈ 0.09/√M at blocks 2–3 (0.015 at M = 32 over 64 disjoint sets). M = 32 resolves the smallest of
#: them (t ≈ 4.7, power ≈ 0.99 at the 95% level); M = 16 (t ≈ 3.0–3.4) would miss it in roughly one run in
#: ten. The gaps at g = 0.3, 0.9 (|G_int − 1| ≲ 0.02) are not resolvable in CPU minutes. Docs: DESIGN.md.
QUICK_PROTOCOL2_SEEDS = 32
QUICK_BOOT = 200

#: The grids of ``synchrogap reproduce``, smallest first: a one-minute demo, CPU minutes, the paper's.
GRIDS: tuple[str, ...] = ("smoke", "quick", "full")

# The smoke grid (``reproduce --grid smoke``): a first run in about a minute that runs every stage and draws
# every figure; far too few samples for its numbers to decide anything. 20 steps divide 1000 (exact DDIM).
SMOKE_G: tuple[float, ...] = (0.0, 0.3, 0.9)  # Fig. 1 and Fig. 10's couplings: g = 0, and a weak and strong g
SMOKE_STEPS = 20
SMOKE_T_INT_STRIDE = 5
SMOKE_SEEDS = 4
SMOKE_BOOT = 50
