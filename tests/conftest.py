"""Shared pytest configuration.

Hypothesis: the "ci" profile (no deadline — the machine is shared and timings jitter;
derandomized — the same examples on every run, so a failure always reproduces) is loaded by
default; choose another with ``HYPOTHESIS_PROFILE=dev``.
GPU: tests marked ``@pytest.mark.gpu`` are skipped when no CUDA device is visible.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
