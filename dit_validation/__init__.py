"""synchrogap.dit_validation — measure in a Diffusion Transformer what ``theory`` predicts.

Replica-coupled attention (eq. 18–19) installed as diffusers attention processors,
Protocol I and II (§3), the in-package testbed and the predicted-vs-measured comparison.
"""

from .compare import CompareConfig, run_compare
from .coupling import CoupledAttnProcessor, CouplingHandle, install_coupling
from .encoders import ENCODERS, get_encoder, register_encoder
from .fits import SigmoidFit, bootstrap_center, fit_sigmoid, sigmoid
from .gamma import estimate_gamma
from .measure import block_quantities, linearized_copy
from .metrics import commitment_score, d_high, d_low, feature_cosine
from .models import (
    PRESETS,
    DiTBundle,
    ModelNotFoundError,
    build_random_dit,
    load_checkpoint,
    load_pretrained_dit,
    resolve_model,
)
from .protocol1 import Protocol1Config, run_protocol1
from .protocol2 import Protocol2Config, run_protocol2
from .reproduce import ReproducePlan, make_plan, run_reproduce
from .results import ConfigMismatchError, load_result, save_result
from .sampler import replica_correlation, replica_init, sample_branched, sample_pairs
from .theory_run import TheoryRunConfig, run_theory

__all__: list[str] = [
    # models
    "DiTBundle",
    "ModelNotFoundError",
    "PRESETS",
    "build_random_dit",
    "load_checkpoint",
    "load_pretrained_dit",
    "resolve_model",
    # coupling, eq. (18)-(19)
    "CoupledAttnProcessor",
    "CouplingHandle",
    "install_coupling",
    # sampler, eq. (67)-(69)
    "replica_init",
    "replica_correlation",
    "sample_pairs",
    "sample_branched",
    # metrics and fits, eq. (70)-(73)
    "feature_cosine",
    "d_low",
    "d_high",
    "commitment_score",
    "sigmoid",
    "fit_sigmoid",
    "bootstrap_center",
    "SigmoidFit",
    "ENCODERS",
    "get_encoder",
    "register_encoder",
    # protocols
    "Protocol1Config",
    "run_protocol1",
    "Protocol2Config",
    "run_protocol2",
    # result files
    "save_result",
    "load_result",
    "ConfigMismatchError",
    # the main job and the theory result file
    "ReproducePlan",
    "make_plan",
    "run_reproduce",
    "TheoryRunConfig",
    "run_theory",
    # issue #5: block quantities inside the DiT, score gain, predicted vs measured
    "block_quantities",
    "linearized_copy",
    "estimate_gamma",
    "CompareConfig",
    "run_compare",
]
