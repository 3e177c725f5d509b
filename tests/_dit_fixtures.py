"""Shared fixtures for the dit_validation tests: tiny random DiTs and a forward counter."""

from __future__ import annotations

import functools

import torch

from dit_validation.models import DiTBundle, build_random_dit


@functools.lru_cache(maxsize=4)
def tiny_bundle(dtype: torch.dtype = torch.float64, seed: int = 0) -> DiTBundle:
    """The `tiny` preset with seeded random weights (cached: tests must not mutate it)."""
    return build_random_dit("tiny", seed=seed, dtype=dtype)


class ForwardCounter:
    """Counts transformer forwards (a forward pre-hook) so tests can prove work was skipped."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.rows = 0
        self._h = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args, kwargs=None):
        self.calls += 1
        self.rows += int(args[0].shape[0]) if args else 0

    def remove(self) -> None:
        self._h.remove()

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
