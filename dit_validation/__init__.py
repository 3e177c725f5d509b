"""synchrogap.dit_validation — measure in a Diffusion Transformer what ``theory`` predicts.

Replica-coupled attention (eq. 18–19) installed as diffusers attention processors, Protocol I and II
(§3), the in-package testbed and the predicted-vs-measured comparison.

Layers, each importing only from the ones before it (``tests/test_architecture.py`` checks this):

1. ``theory`` (numpy/scipy; torch only inside autodiff functions);
2. torch-free results and summaries: ``schema``, ``results``, ``analysis``, ``gint``, ``fits``,
   ``clone_tau``, ``grids``, ``boundary``, ``_logging``, ``compare_report``, ``causal_stats``, ``theory_run``,
   ``rundir`` (run lock, quarantine), ``summary`` — and the figures (``paper_figs``), which read result
   files through them;
3. the engine: ``models``, ``layout``, ``heads``, ``coupling``, ``sampler``, ``capture``, ``encoders``,
   ``testbed``;
4. protocols and measurements: ``metrics``, ``protocol1``, ``protocol2``, ``measure``, ``gamma``,
   ``causal``, ``patching``, ``compare``;
5. commands: ``reproduce``, ``cli``.

Public names load lazily (PEP 562), so ``import dit_validation.results`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # models
    "DiTBundle": "models",
    "ModelNotFoundError": "models",
    "PRESETS": "models",
    "build_random_dit": "models",
    "load_checkpoint": "models",
    "load_pretrained_dit": "models",
    "resolve_model": "models",
    # replica layout and coupling, eq. (18)-(19)
    "ReplicaLayout": "layout",
    "CoupledAttnProcessor": "coupling",
    "CouplingHandle": "coupling",
    "install_coupling": "coupling",
    "DifferenceCapture": "capture",
    "gram_basis": "capture",
    # sampler, eq. (67)-(69)
    "replica_init": "sampler",
    "replica_correlation": "sampler",
    "sample_pairs": "sampler",
    "sample_branched": "sampler",
    # metrics and fits, eq. (70)-(73)
    "feature_cosine": "metrics",
    "d_low": "metrics",
    "d_high": "metrics",
    "commitment_score": "metrics",
    "sigmoid": "fits",
    "fit_sigmoid": "fits",
    "bootstrap_center": "fits",
    "fit_rise_batch": "fits",
    "SigmoidFit": "fits",
    # the measured speciation step from clone agreement
    "TauStatus": "clone_tau",
    "fit_speciation": "clone_tau",
    "paired_differences": "clone_tau",
    "ENCODERS": "encoders",
    "get_encoder": "encoders",
    "register_encoder": "encoders",
    # protocols
    "Protocol1Config": "protocol1",
    "run_protocol1": "protocol1",
    "Protocol2Config": "protocol2",
    "run_protocol2": "protocol2",
    # result files
    "SCHEMAS": "schema",
    "SchemaError": "schema",
    "Result": "results",
    "save_result": "results",
    "load_result": "results",
    "make_meta": "results",
    "ConfigMismatchError": "results",
    "ResultFileError": "results",
    # run directories: one run at a time, damaged files moved aside
    "run_lock": "rundir",
    "RunLockedError": "rundir",
    "quarantine": "rundir",
    "read_stage": "rundir",
    # the main job and the theory result file
    "ReproducePlan": "reproduce",
    "make_plan": "reproduce",
    "run_reproduce": "reproduce",
    "TheoryRunConfig": "theory_run",
    "run_theory": "theory_run",
    # block quantities inside the DiT, score gain, predicted vs measured
    "block_quantities": "measure",
    "linearized_copy": "measure",
    "estimate_gamma": "gamma",
    "CompareConfig": "compare",
    "run_compare": "compare",
    # where in depth the branch decision is made, causally (§2.7 prediction 2)
    "CausalConfig": "causal",
    "causal_trajectories": "causal",
    "causal_depth": "causal",
    "prediction2_verdict": "causal_stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dit_validation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
