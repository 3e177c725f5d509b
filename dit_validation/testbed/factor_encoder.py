"""Testbed feature encoders for eq. (70), registered in `dit_validation.encoders.ENCODERS` on import.

mixture-factors: the projections ⟨x, φ_f⟩ (F features): the exact sufficient statistics of the factor signs,
    so cos(φ(x^A), φ(x^B)) measures agreement of the generated factors and nothing else.
digits-cnn: the penultimate features (64) of the shipped digits classifier (`testbed.classifier`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from theory.multiscale import DEFAULT_MIXTURE, factor_projections

from .classifier import load_classifier

Encode = Callable[[torch.Tensor], torch.Tensor]


def mixture_factors_encoder(bundle, device: str | torch.device = "cpu") -> Encode:
    """images (B, 1, H, W) → ⟨x, φ_f⟩ (B, F) float64."""

    @torch.no_grad()
    def encode(images: torch.Tensor) -> torch.Tensor:
        x = images.detach().double().cpu().numpy()
        return torch.from_numpy(factor_projections(DEFAULT_MIXTURE, x)).to(device)

    return encode


def digits_cnn_encoder(bundle, device: str | torch.device = "cpu") -> Encode:
    """images (B, 1, 16, 16) in [−1, 1] → penultimate CNN features (B, 64) float64."""
    net = load_classifier().to(device)

    @torch.no_grad()
    def encode(images: torch.Tensor) -> torch.Tensor:
        return net.features(images.to(device=device, dtype=torch.float32)).double()

    return encode


def digits_cnn_labels(images: np.ndarray) -> np.ndarray:
    """Predicted digit classes of images (B, 1, 16, 16) float → (B,) int (clone agreement on digits)."""
    net = load_classifier()
    with torch.no_grad():
        return net(torch.as_tensor(images, dtype=torch.float32)).argmax(1).numpy()
