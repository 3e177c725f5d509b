"""synchrogap.dit_validation — measure in a Diffusion Transformer what ``theory`` predicts.

Replica-coupled attention (eq. 18–19) installed as diffusers attention processors,
Protocol I and II (§3), the in-package testbed and the predicted-vs-measured comparison.
"""

__all__: list[str] = []
