"""Protocol I output-agreement metrics, eq. (70)–(72).

All metrics are computed in float64 whatever dtype the images come in. Images are (B, C, H, W)
pairs x^A, x^B of final decoded samples; ``pool`` is the side of the adaptive-average-pooling
grid P of eq. (71) and U is bilinear upsampling back to (H, W).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from theory.validation import check_positive_int, check_same_shape


def feature_cosine(phi_A: torch.Tensor, phi_B: torch.Tensor) -> torch.Tensor:
    """a_feat = cos(φ(x^A), φ(x^B)) per pair, eq. (70); features (B, F) → (B,) float64."""
    check_same_shape(phi_A=phi_A, phi_B=phi_B)
    a = phi_A.reshape(phi_A.shape[0], -1).double()
    b = phi_B.reshape(phi_B.shape[0], -1).double()
    return F.cosine_similarity(a, b, dim=1, eps=1e-300)


def lowpass(x: torch.Tensor, pool: int) -> torch.Tensor:
    """P(x): adaptive average pooling to a pool × pool grid, (B, C, pool, pool) float64 (eq. 71)."""
    check_positive_int("pool", pool)
    if pool > min(x.shape[-2:]):
        raise ValueError(f"pool must lie in [1, {min(x.shape[-2:])}] (the image side), got {pool}")
    return F.adaptive_avg_pool2d(x.double(), pool)


def highpass(x: torch.Tensor, pool: int) -> torch.Tensor:
    """x − U P(x): the residual after bilinear upsampling of the pooled image (eq. 72)."""
    up = F.interpolate(lowpass(x, pool), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return x.double() - up


def d_low(x_A: torch.Tensor, x_B: torch.Tensor, pool: int) -> torch.Tensor:
    """d_low = ||P(x^A) − P(x^B)||², eq. (71); (B,) float64."""
    check_same_shape(x_A=x_A, x_B=x_B)
    return (lowpass(x_A, pool) - lowpass(x_B, pool)).pow(2).flatten(1).sum(1)


def d_high(x_A: torch.Tensor, x_B: torch.Tensor, pool: int) -> torch.Tensor:
    """d_high = ||(x^A − UP x^A) − (x^B − UP x^B)||², eq. (72); (B,) float64."""
    check_same_shape(x_A=x_A, x_B=x_B)
    return (highpass(x_A, pool) - highpass(x_B, pool)).pow(2).flatten(1).sum(1)


def default_pool(image_size: int) -> int:
    """P's grid when not configured: image/4 for small images, capped at 8 (8 × 8 for 256-px ImageNet).

    The paper does not state its pooling size; 8 × 8 on 256 px keeps structures of ≥ 32 px in the
    'global' band, and image/4 keeps the same role on the 8–16 px testbed images.
    """
    check_positive_int("image_size", image_size)
    return max(1, min(8, image_size // 4))


def commitment_score(d_median: np.ndarray, axis: int = -1) -> np.ndarray:
    """Commitment score 1 − median d(t_int) / median d(t_int = 0) along ``axis`` (index 0 = baseline).

    t_int = 0 is the never-coupled baseline, so the score is 0 there and → 1 once the pair commits.
    """
    d = np.asarray(d_median, dtype=np.float64)
    base = np.take(d, [0], axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, 1.0 - d / np.where(base > 0, base, 1.0), np.nan)
