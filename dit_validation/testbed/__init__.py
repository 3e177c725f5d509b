"""In-package ground-truth testbed: data with known speciation, small DiTs trained here.

``data`` (the multi-scale mixture and sklearn digits), ``train`` (``synchrogap train``), ``classifier``
(the digits CNN) and ``factor_encoder`` (the testbed's feature encoders of eq. 70, listed in
``dit_validation.encoders.ENCODERS``).
"""
