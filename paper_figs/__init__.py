"""paper_figs — one small script per figure of arXiv 2603.20987, reading result files only.

Each module exposes ``render(result_path, out_dir) -> list[Path]`` (PNG and PDF, or CSV/Markdown
for the table) and a command line ``python -m paper_figs.<name> RESULT --out DIR``. Nothing here
recomputes an experiment: every number drawn comes from a ``.npz`` result file written by
``dit_validation`` (Protocol I/II, compare) or ``dit_validation.theory_run`` (theory).

``FIGURES`` maps each module name to the result kind it reads, so ``synchrogap reproduce`` and the
README can route every result file to its renderers without string dispatch elsewhere.
"""

from __future__ import annotations

# module name -> result kind (``__meta__["kind"]``) it renders; order = order in the paper.
FIGURES: dict[str, str] = {
    "mode_energy": "protocol2",  # Figs. 1, 9, 10
    "gint_vs_rho": "protocol2",  # G_int - 1 (eq. 80) vs rho(g): the collapse, eq. (66)
    "feature_similarity": "protocol1",  # Figs. 2-4 and the g = 0 control, Fig. 5
    "commitment": "protocol1",  # Figs. 6-8
    "table1": "protocol1",  # Table 1 (+ tau_g, tau_l, delta tau)
    "bifurcation": "theory",  # u*(kappa), eq. (49)
    "gates": "theory",  # rho(g), xi(g), eq. (27)
    "kappa_map": "theory",  # predicted kappa_{v,k}(s, l; g), eq. (50)
    "predicted_vs_measured": "compare",  # predicted (3 ways) vs measured speciation, gap vs rho(g)
    "depth": "depth",  # depth localization three ways (Figs. 1, 9, 10 with the prediction overlaid)
}

__all__ = ["FIGURES"]
