"""synchrogap.theory — analytic and numerical theory of the synchronization gap.

Implements arXiv 2603.20987 §2 and Appendices A–B in float64. Public names are exactly
those in ``__all__``; everything else lives in private-by-convention modules.
This package never imports ``dit_validation``.
"""

from .appendix_b import (
    BoundCheck,
    DominanceReport,
    IdentityCheck,
    bound_eq95,
    bound_eq97,
    bound_eq98,
    bound_eq99,
    bound_eq104,
    bound_eq105,
    coherence,
    delta_A,
    dominance_report,
    identity_A0P0,
    identity_eq89,
    identity_eq90,
    identity_eq91,
    lambda_perp,
    n_eff,
    projectors,
    softmax_jacobian,
)
from .attention import BlockWeights, attention_weights, coupled_attention, mixture_weights
from .gating import rho, xi
from .linearization import (
    AttentionLayer,
    LinearizedDifference,
    Propagator,
    ToyDiTBlock,
    attention_difference,
    attention_difference_jvp,
    attention_difference_terms,
    attention_forward,
    block_forward,
    linearized_logits,
    pattern_term,
    propagator,
    random_attention_layer,
    random_toy_block,
    routing_term,
    softmax_jvp,
)

__all__ = [
    # coupled attention, eq. (16)-(19)
    "coupled_attention",
    "mixture_weights",
    "attention_weights",
    "BlockWeights",
    # linearization and propagator, eq. (20)-(33)
    "AttentionLayer",
    "ToyDiTBlock",
    "LinearizedDifference",
    "Propagator",
    "random_attention_layer",
    "random_toy_block",
    "softmax_jvp",
    "routing_term",
    "pattern_term",
    "linearized_logits",
    "attention_forward",
    "attention_difference",
    "attention_difference_jvp",
    "attention_difference_terms",
    "block_forward",
    "propagator",
    # Appendix B identities and bounds, eq. (85)-(106)
    "BoundCheck",
    "IdentityCheck",
    "DominanceReport",
    "projectors",
    "softmax_jacobian",
    "delta_A",
    "n_eff",
    "coherence",
    "lambda_perp",
    "identity_eq89",
    "identity_eq90",
    "identity_eq91",
    "identity_A0P0",
    "bound_eq95",
    "bound_eq97",
    "bound_eq98",
    "bound_eq99",
    "bound_eq104",
    "bound_eq105",
    "dominance_report",
    # gating, eq. (27)
    "rho",
    "xi",
]
