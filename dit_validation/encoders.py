"""Feature encoders φ for the feature cosine similarity a_feat of eq. (70).

``ENCODERS`` maps a name to a factory ``factory(bundle, device) -> encode`` where ``encode`` maps
images (B, C, H, W) in [0, 1] to features (B, F). The paper uses an ImageNet ResNet-50 (He et al.
2016); ``pixels`` (flattened pixels) serves random-weight runs; ``mixture-factors`` and ``digits-cnn`` are the
testbed's (their factories import :mod:`dit_validation.testbed` when first used).
:func:`register_encoder` adds more.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .models import DiTBundle

Encode = Callable[[torch.Tensor], torch.Tensor]
EncoderFactory = Callable[[DiTBundle, "str | torch.device"], Encode]

RESNET50_ENV = "SYNCHROGAP_RESNET50_WEIGHTS"
# torchvision's ImageNet normalization (the statistics ResNet-50 was trained with).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pixels(bundle: DiTBundle, device: str | torch.device) -> Encode:
    def encode(images: torch.Tensor) -> torch.Tensor:
        return images.reshape(images.shape[0], -1).double()  # (B, C*H*W)

    return encode


def _resnet50(bundle: DiTBundle, device: str | torch.device, weights: str | None = None) -> Encode:
    """torchvision ResNet-50 pooled 2048-d features; weights: ``weights`` or $SYNCHROGAP_RESNET50_WEIGHTS."""
    path = weights or os.environ.get(RESNET50_ENV)
    try:
        import torchvision  # not a dependency: only this encoder needs it
    except ImportError as exc:
        raise RuntimeError(
            "encoder 'resnet50' needs torchvision: pip install 'synchrogap[resnet]' (a torchvision matching "
            "your torch), or choose another encoder (e.g. --encoder pixels)"
        ) from exc
    if not path or not os.path.isfile(path):
        raise RuntimeError(
            f"encoder 'resnet50' needs local ImageNet ResNet-50 weights: set {RESNET50_ENV}=/path/to/"
            f"resnet50-*.pth (torchvision's state dict); got {path!r}"
        )
    net = torchvision.models.resnet50()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.fc = torch.nn.Identity()
    net = net.eval().to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def encode(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device=device, dtype=torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=224, mode="bilinear", align_corners=False, antialias=True)
        return net((x - mean) / std).double()  # (B, 2048)

    return encode


def _mixture_factors(bundle: DiTBundle, device: str | torch.device) -> Encode:
    from .testbed.factor_encoder import mixture_factors_encoder

    return mixture_factors_encoder(bundle, device)


def _digits_cnn(bundle: DiTBundle, device: str | torch.device) -> Encode:
    from .testbed.factor_encoder import digits_cnn_encoder

    return digits_cnn_encoder(bundle, device)


ENCODERS: dict[str, EncoderFactory] = {
    "pixels": _pixels,
    "resnet50": _resnet50,
    "mixture-factors": _mixture_factors,
    "digits-cnn": _digits_cnn,
}


def register_encoder(name: str, factory: EncoderFactory) -> None:
    """Add an encoder to :data:`ENCODERS` (the testbed registers its own this way)."""
    ENCODERS[name] = factory


def get_encoder(name: str, bundle: DiTBundle, device: str | torch.device = "cpu") -> Encode:
    """Build the encoder ``name``; unknown names raise ``ValueError`` listing the choices."""
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {name!r}")
    return ENCODERS[name](bundle, device)
