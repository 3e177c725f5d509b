"""synchrogap.theory — analytic and numerical theory of the synchronization gap.

Implements arXiv 2603.20987 §2 and Appendices A–B in float64. Public names are exactly
those in ``__all__``; everything else lives in private-by-convention modules.
This package never imports ``dit_validation``.
"""

from .gating import rho, xi

__all__ = [
    # gating, eq. (27)
    "rho",
    "xi",
]
