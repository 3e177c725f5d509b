"""Theory-side result file: everything ``theory`` predicts that the paper's figures draw.

One ``.npz`` of kind ``"theory"`` (result contract of docs/DESIGN.md) holding

* the pitchfork of the modal self-consistency u = κ tanh u (eq. 49): ``kappa`` (K,),
  ``u_branches`` (3, K) = (−u*, 0, +u*) with NaN where a nonzero branch does not exist (κ ≤ 1),
  ``u_stable`` (3, K) bool (linear stability of the map u ↦ κ tanh u);
* the attention gates of eq. (27) on a fine grid: ``g_grid`` (N,), ``rho`` (N,), ``xi`` (N,), and at
  the protocol grid ``g`` (G,): ``rho_at_g``, ``xi_at_g`` (G,);
* when a ``compare`` result file is given: the
  predicted modal speciation parameter over (s, ℓ) for every g of the compare grid ``kappa_g`` (G_c,),
  ``kappa_vk`` (G_c, S_m, L, K) — computed by ``compare`` from the measured one-block gain η_k(g)
  (eq. 44/46) and m_k, c_k into κ_{v,k} = γ m_k² / (c_k((1 − η_k)c_k + γ)) (eq. 50) — with
  ``steps`` (S_m,), ``layers`` (L,), ``modes`` (K,), the predicted speciation steps ``s_spec``
  (G_c, L, K) (first κ = 1 crossing, eq. 51; inf = never) and the predicted gap ``gap_steps``
  (G_c, L) = s_spec(trailing) − s_spec(leading) (eq. 65) with leading = first mode and trailing =
  last mode of ``modes`` (ordered by the initial covariance eigenvalues, eq. 42).

It is a thin step: every formula is a ``theory`` function; this module only lays out grids and
writes the file. ``synchrogap reproduce`` calls :func:`run_theory` before and after ``compare``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from theory import (
    branch_stability,
    branches,
    rho,
    synchronization_gap,
    xi,
)
from theory.validation import check_g, check_positive_int, check_range

from ._logging import configure_logging
from .boundary import UsageError, guarded
from .grids import PAPER_G
from .results import make_meta, save_result
from .rundir import check_input

logger = logging.getLogger(__name__)

__all__ = ["TheoryRunConfig", "theory_arrays", "kappa_from_compare", "run_theory"]


@dataclass(frozen=True)
class TheoryRunConfig:
    """Grids of the theory result file.

    ``kappa_max``/``n_kappa``: κ axis of the bifurcation diagram (κ = 1 is the pitchfork, eq. 51);
    ``n_g_grid``: resolution of the ρ(g), ξ(g) curves; ``g``: the protocol grid (default: the paper's).
    """

    kappa_max: float = 3.0
    n_kappa: int = 601
    n_g_grid: int = 201
    g: tuple[float, ...] = PAPER_G
    model: str = "theory"

    def __post_init__(self) -> None:
        check_range("kappa_max", self.kappa_max, 1.0, None, lo_open=True)
        check_positive_int("n_kappa", self.n_kappa, minimum=3)
        check_positive_int("n_g_grid", self.n_g_grid, minimum=2)
        check_g(np.asarray(self.g, dtype=np.float64))


def bifurcation_arrays(kappa: np.ndarray) -> dict[str, np.ndarray]:
    """``u_branches``, ``u_stable`` (3, K) of eq. (49) on the κ grid, NaN where ±u* do not exist."""
    u = np.asarray(branches(kappa), dtype=np.float64).T.copy()  # (3, K): (−u*, 0, +u*)
    stable = np.asarray(branch_stability(kappa), dtype=bool).T.copy()
    below = kappa <= 1.0  # the nonzero branches are born at the pitchfork κ = 1 (eq. 51)
    u[0, below] = np.nan
    u[2, below] = np.nan
    stable[0, below] = False
    stable[2, below] = False
    return {"kappa": kappa, "u_branches": u, "u_stable": stable}


def kappa_from_compare(compare: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Lay out the per-block κ maps that ``compare`` evaluated, for the theory file's heat maps.

    ``compare`` evaluated κ_{v,k}(s, ℓ; g) (eq. 50, NaN where undefined) along its branch directions at its
    measured steps, and the first crossings (eq. 51, ``tau_pred_block``); this renames them (modes = the
    branch directions, global → local) and forms ``gap_steps`` (G, L) = s_spec(last) − s_spec(first)
    (eq. 65, NaN where either is undefined or neither speciates).
    """
    s_spec = np.asarray(compare["tau_pred_block"], dtype=np.float64)  # (G, L, F)
    gap = np.asarray(synchronization_gap(s_spec[..., -1], s_spec[..., 0]), dtype=np.float64)  # eq. (65)
    return {
        "kappa_g": np.asarray(compare["g"], dtype=np.float64),
        "kappa_vk": np.asarray(compare["kappa"], dtype=np.float64),
        "s_spec": s_spec,
        "gap_steps": gap,
        "steps": np.asarray(compare["block_steps"], dtype=np.float64),
        "layers": np.asarray(compare["layers"]),
        "modes": np.asarray(compare["factor"]),
        **(
            {"mode_names": np.asarray(compare["factor_names"]).astype(str)}
            if "factor_names" in compare
            else {}
        ),
        **({"mode_learned": np.asarray(compare["learned"], dtype=bool)} if "learned" in compare else {}),
    }


def theory_arrays(
    config: TheoryRunConfig, compare: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """All arrays of the theory result file (see the module docstring)."""
    kappa = np.linspace(0.0, config.kappa_max, config.n_kappa, dtype=np.float64)
    g_grid = np.linspace(0.0, 1.0, config.n_g_grid, dtype=np.float64)
    g = np.asarray(config.g, dtype=np.float64)
    arrays: dict[str, np.ndarray] = {
        **bifurcation_arrays(kappa),
        "g_grid": g_grid,
        "rho": np.asarray(rho(g_grid)),  # eq. (27)
        "xi": np.asarray(xi(g_grid)),
        "g": g,
        "rho_at_g": np.atleast_1d(rho(g)),
        "xi_at_g": np.atleast_1d(xi(g)),
    }
    if compare is not None:
        arrays.update(kappa_from_compare(compare))
    return arrays


def run_theory(config: TheoryRunConfig, out_path: str | Path, compare_path: str | Path | None = None) -> Path:
    """Compute :func:`theory_arrays` (from ``compare_path`` when given and present) and write ``out_path``."""
    compare = None
    if compare_path is not None:  # κ maps of another model's comparison would be drawn under this name
        want = {} if config.model == TheoryRunConfig.model else {"model": config.model}
        _, compare = check_input(compare_path, "compare", want, f"the theory file of {config.model}")
    arrays = theory_arrays(config, compare)
    config_dict: dict[str, Any] = asdict(config)
    config_dict["compare"] = str(compare_path) if compare is not None else None
    save_result(out_path, make_meta("theory", config_dict, [], ["theory"], complete=True), arrays)
    logger.info("theory result written to %s", out_path)
    return Path(out_path)


def _main(argv: list[str] | None = None) -> int:
    """``python -m dit_validation.theory_run --out theory.npz [--compare compare.npz]``."""
    import argparse

    parser = argparse.ArgumentParser(description="write the theory result file (pitchfork, gates, κ maps)")
    parser.add_argument("--out", type=Path, required=True, help="theory result file (.npz)")
    parser.add_argument("--compare", type=Path, default=None, help="compare result file for the κ maps")
    parser.add_argument("--kappa-max", type=float, default=TheoryRunConfig.kappa_max)
    parser.add_argument("--model", default=TheoryRunConfig.model, help="name shown in figure titles")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        cfg = TheoryRunConfig(kappa_max=args.kappa_max, model=args.model)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} is a directory; give a result file path (.npz)")
    print(run_theory(cfg, args.out, args.compare))
    return 0


main = guarded(_main, "python -m dit_validation.theory_run")

if __name__ == "__main__":
    raise SystemExit(main())
