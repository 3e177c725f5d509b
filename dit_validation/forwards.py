"""The process-wide tally of image-forwards: rows through the transformer, counted where they are run.

Every sampling and curvature forward goes through :func:`dit_validation.sampler.predict_eps`, which adds
the rows of its model batch here (a guided row is two model rows, conditional and null class, so it counts
twice). ``reproduce`` reads the tally before and after each stage and writes the difference beside the
stage's wall time into ``timings.json``. The forward-mode JVPs of the block measurements
(:mod:`dit_validation.measure`, :mod:`dit_validation.gamma`) run single blocks or a handful of rows and are
not counted.

torch-free, so that the commands layer can read it without loading torch.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["ForwardTally", "forwards"]


class ForwardTally:
    """Image-forwards run so far in this process, per model dtype (``"float32"``, ``"float64"``, …)."""

    def __init__(self) -> None:
        self.by_dtype: Counter[str] = Counter()

    def add(self, rows: int, dtype: str) -> None:
        """Count ``rows`` model rows run in ``dtype`` (the name without ``torch.``)."""
        self.by_dtype[dtype] += int(rows)

    @property
    def total(self) -> int:
        return sum(self.by_dtype.values())

    def snapshot(self) -> Counter[str]:
        """A copy of the per-dtype counts, to subtract from a later one (``later - earlier``)."""
        return Counter(self.by_dtype)


#: The tally :func:`dit_validation.sampler.predict_eps` counts into.
forwards = ForwardTally()
