"""Keyed random streams: the one map from an integer key to an independent random stream.

Every random draw in synchrogap is named by a tuple of non-negative integers that says what it is
for, and nothing else: ``(seed, stream, step)`` for a sampler's noise, ``(seed, sample, step, stream)``
for the exact-score clone experiment, ``(seed, purpose, block)`` for the replica simulator. The key is
hashed by numpy's :class:`~numpy.random.SeedSequence`, so

* a draw never depends on how many other draws were made, on batching or on the order of a loop;
* two different keys give statistically independent streams (SeedSequence's guarantee).

numpy consumers get a PCG64 :class:`~numpy.random.Generator` seeded with the SeedSequence itself;
torch consumers get a ``torch.Generator`` (Mersenne twister on the CPU, Philox on CUDA) seeded with the
first 64-bit word the SeedSequence generates. The two backends therefore draw different numbers for the
same key; each is reproducible on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["stream_seed", "numpy_generator", "torch_generator", "numpy_normal", "torch_normal"]


def stream_seed(*key: int) -> np.random.SeedSequence:
    """The SeedSequence of ``key`` (non-negative integers); the package's only stream keying."""
    if not key:
        raise ValueError("a stream key needs at least one integer, got none")
    ints = []
    for k in key:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"stream key entries must be non-negative integers, got {key!r}")
        ints.append(int(k))
    return np.random.SeedSequence(ints)


def numpy_generator(*key: int) -> np.random.Generator:
    """A PCG64 generator for ``key`` (numpy's ``default_rng(SeedSequence(key))``)."""
    return np.random.default_rng(stream_seed(*key))


def torch_generator(*key: int, device: Any = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default CPU) seeded from ``key``'s first 64-bit word."""
    import torch

    word = stream_seed(*key).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator(device=device) if device is not None else torch.Generator()
    return gen.manual_seed(int(word))


def numpy_normal(key: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Standard normals of ``shape`` (float64) from the numpy stream of ``key``."""
    return numpy_generator(*key).standard_normal(tuple(shape))


def torch_normal(
    key: Sequence[int], shape: Sequence[int], dtype: Any = None, device: Any = None
) -> torch.Tensor:
    """Standard normals of ``shape`` from the torch stream of ``key`` (default float64 on the CPU)."""
    import torch

    gen = torch_generator(*key, device=device)
    return torch.randn(tuple(shape), generator=gen, dtype=dtype or torch.float64, device=device)
