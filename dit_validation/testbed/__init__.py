"""In-package ground-truth testbed (issue #5): data with known speciation, small DiTs trained here.

Importing this package registers the testbed encoders ("mixture-factors", "digits-cnn") in
`dit_validation.encoders.ENCODERS`.
"""

from ..encoders import register_encoder
from .factor_encoder import digits_cnn_encoder, mixture_factors_encoder

register_encoder("mixture-factors", mixture_factors_encoder)
register_encoder("digits-cnn", digits_cnn_encoder)

__all__ = ["digits_cnn_encoder", "mixture_factors_encoder"]
