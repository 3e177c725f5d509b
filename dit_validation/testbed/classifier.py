"""Small CNN classifier for the 16×16 digits: the feature encoder φ of eq. (70) on the digits testbed.

Architecture: conv 1→16 (3×3) · ReLU · max-pool 2 → conv 16→32 · ReLU · max-pool 2 → linear 512→64 · ReLU
(penultimate features φ(x) ∈ R^64, the encoder's output) → linear 64→10. Trained with AdamW on the digits
training split (light Gaussian pixel noise as augmentation, so generated images with residual noise are read
the same way); shipped as `model.safetensors` + `classifier.json` (held-out accuracy on the fixed split).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .data import digits_split

log = logging.getLogger(__name__)
SHIPPED_CLASSIFIER = Path(__file__).resolve().parent.parent / "checkpoints" / "digits-cnn"
FEATURE_DIM = 64


class DigitsCNN(nn.Module):
    """x (B, 1, 16, 16) in [−1, 1] → logits (B, 10); `features` gives the penultimate (B, 64)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 16, 8, 8)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, 32, 4, 4)
        return F.relu(self.fc1(h.flatten(1)))  # (B, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


@torch.no_grad()
def accuracy(model: DigitsCNN, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correctly classified images (float32, CPU-deterministic)."""
    return float((model(x).argmax(dim=1) == labels).double().mean())


def train_classifier(out_dir: str | Path, seed: int = 0, epochs: int = 30, noise: float = 0.1) -> dict:
    """Train `DigitsCNN`, save `model.safetensors` + `classifier.json`, return the record."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, held = digits_split()
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    start = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(train.x.shape[0], generator=gen)
        for i in range(0, perm.numel(), 64):
            idx = perm[i : i + 64]
            x = train.x[idx] + noise * torch.randn(train.x[idx].shape, generator=gen)
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        log.info("epoch %d loss %.4f", epoch, float(loss.detach()))
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    record = {
        "architecture": "DigitsCNN (conv16-conv32-fc64-fc10)",
        "feature_dim": FEATURE_DIM,
        "seed": seed,
        "epochs": epochs,
        "augmentation_noise": noise,
        "wall_time_s": time.time() - start,
        "n_train": int(train.x.shape[0]),
        "n_held_out": int(held.x.shape[0]),
        "held_out_accuracy": accuracy(model, held.x, held.labels),
        "train_accuracy": accuracy(model, train.x, train.labels),
    }
    (out_dir / "classifier.json").write_text(json.dumps(record, indent=2))
    return record


def load_classifier(path: str | Path = SHIPPED_CLASSIFIER) -> DigitsCNN:
    """Load a saved `DigitsCNN` (eval mode, float32, CPU)."""
    path = Path(path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no digits classifier at {str(path)!r} (expected model.safetensors)")
    model = DigitsCNN()
    model.load_state_dict(load_file(str(weights)))
    return model.eval()
