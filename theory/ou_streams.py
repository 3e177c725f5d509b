"""Per-block random streams for the replica simulator (numpy and torch backends).

Pairs are split into blocks of ``block_size``; block ``b`` draws its standard normals from
its own stream seeded by ``(seed, purpose, b)`` (numpy ``SeedSequence``; a torch
``Generator`` seeded from it), so pair ``i``'s noise does not depend on how many pairs are
simulated. A partial last block still draws a full block and keeps the first rows.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .streams import numpy_generator, torch_generator

Backend = Literal["auto", "numpy", "numba", "torch"]
_STREAM_INIT, _STREAM_STEPS = 0, 1  # "purpose" tags: initial states, per-step noise


class _NormalStream:
    """Standard normals of shape (n, 2, d) per call, pair ``i`` drawn from block ``i // block_size``."""

    def __init__(
        self,
        n: int,
        d: int,
        seed: int,
        purpose: int,
        block_size: int,
        backend: Backend,
        device: Any,
        dtype: Any,
    ) -> None:
        self.n, self.d, self.B, self.backend = n, d, block_size, backend
        n_blocks = -(-n // block_size)
        if backend == "numpy":
            self.gens = [numpy_generator(seed, purpose, b) for b in range(n_blocks)]
        else:
            import torch

            self.torch = torch
            self.device, self.dtype = device, dtype
            self.gens = [torch_generator(seed, purpose, b, device=device) for b in range(n_blocks)]

    def draw(self, out: Any = None) -> Any:
        """The next (n, 2, d) normals, written into ``out`` when given (same values either way)."""
        n, d, B = self.n, self.d, self.B
        if self.backend == "numpy":
            out = np.empty((n, 2, d)) if out is None else out
            for b, gen in enumerate(self.gens):
                lo, hi = b * B, min((b + 1) * B, n)
                if hi - lo == B:
                    gen.standard_normal(out=out[lo:hi])
                else:  # partial last block: draw a full block so the stream does not depend on n
                    out[lo:hi] = gen.standard_normal((B, 2, d))[: hi - lo]
            return out
        torch = self.torch
        if out is None:
            out = torch.empty((n, 2, d), dtype=self.dtype, device=self.device)
        for b, gen in enumerate(self.gens):
            lo, hi = b * B, min((b + 1) * B, n)
            if hi - lo == B:
                torch.randn((B, 2, d), generator=gen, out=out[lo:hi])
            else:
                out[lo:hi] = torch.randn((B, 2, d), generator=gen, dtype=self.dtype, device=self.device)[
                    : hi - lo
                ]
        return out


def _resolve_backend(backend: Backend, device: Any, dtype: Any) -> tuple[Any, Any]:
    """``(device, dtype)`` for ``backend``; "auto" and "numba" run on numpy arrays (float64, CPU)."""
    if backend in ("auto", "numpy", "numba"):
        if device not in (None, "cpu"):
            raise ValueError(f"device must be None or 'cpu' for backend={backend!r}, got {device!r}")
        if dtype not in (None, np.float64):
            raise ValueError(f"dtype must be None or numpy.float64 for backend={backend!r}, got {dtype!r}")
        return None, np.float64
    if backend == "torch":
        import torch

        return torch.device(device if device is not None else "cpu"), dtype or torch.float64
    raise ValueError(f"backend must be 'auto', 'numpy', 'numba' or 'torch', got {backend!r}")
