"""Testbed data sets: exact multi-scale mixture images and sklearn digits, both 1×16×16 in pixel space.

mixture: `theory.multiscale` (exact score, known per-factor speciation); drawn fresh every batch, so the
    training set is infinite and the held-out set is a fixed-seed draw.
digits: `sklearn.datasets.load_digits` (1,797 8×8 images, 10 classes, no network), bilinearly resized to
    16×16 and scaled from [0, 16] to [−1, 1]; a fixed permutation (seed 0) holds out `DIGITS_HELD_OUT` images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from theory.multiscale import DEFAULT_MIXTURE, MultiscaleMixture, sample_mixture

DatasetName = Literal["mixture", "digits"]
DATASETS: tuple[DatasetName, ...] = ("mixture", "digits")
IMAGE_SIZE = 16
CHANNELS = 1
#: Number of digits held out from training (fixed permutation, seed `SPLIT_SEED`).
DIGITS_HELD_OUT = 297
SPLIT_SEED = 0
#: Seed of the mixture's fixed held-out draw (training draws use the run seed, never this one).
MIXTURE_HELD_OUT_SEED = 10_000


@dataclass(frozen=True)
class ImageSet:
    """A fixed labelled image set: x (N, 1, 16, 16) float32 in model units, labels (N,) int64."""

    x: torch.Tensor
    labels: torch.Tensor


def num_classes(dataset: DatasetName) -> int:
    """Class count of the conditioning (the mixture is unconditional: one class plus the null class)."""
    return {"mixture": 1, "digits": 10}[_check(dataset)]


def _check(dataset: str) -> DatasetName:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return dataset  # type: ignore[return-value]


def load_digits_16() -> ImageSet:
    """All 1,797 digits as (N, 1, 16, 16) float32 in [−1, 1] with labels (bilinear 8 → 16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x8 = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    x16 = F.interpolate(x8, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    return ImageSet(x=(2.0 * x16 - 1.0).clamp(-1.0, 1.0), labels=labels)


def digits_split() -> tuple[ImageSet, ImageSet]:
    """(train, held_out) with a fixed permutation; held_out has `DIGITS_HELD_OUT` images."""
    full = load_digits_16()
    perm = np.random.default_rng(SPLIT_SEED).permutation(full.x.shape[0])
    held, train = perm[:DIGITS_HELD_OUT], perm[DIGITS_HELD_OUT:]
    return (
        ImageSet(full.x[train], full.labels[train]),
        ImageSet(full.x[held], full.labels[held]),
    )


def mixture_batch(n: int, rng: np.random.Generator, mix: MultiscaleMixture = DEFAULT_MIXTURE) -> ImageSet:
    """n fresh mixture images (float32) with the single class label 0."""
    x, _ = sample_mixture(mix, n, rng)
    return ImageSet(torch.from_numpy(x).float(), torch.zeros(n, dtype=torch.int64))


def held_out_set(dataset: DatasetName, n: int) -> ImageSet:
    """The first n held-out images (deterministic): digits' held-out split or the fixed-seed mixture draw."""
    if _check(dataset) == "digits":
        held = digits_split()[1]
        return ImageSet(held.x[:n], held.labels[:n])
    return mixture_batch(n, np.random.default_rng(MIXTURE_HELD_OUT_SEED))


class TrainStream:
    """Infinite stream of training batches with an explicit generator (reproducible from `seed`)."""

    def __init__(self, dataset: DatasetName, batch_size: int, seed: int) -> None:
        self.dataset = _check(dataset)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.train = digits_split()[0] if dataset == "digits" else None

    def next(self) -> ImageSet:
        if self.train is None:
            return mixture_batch(self.batch_size, self.rng)
        idx = torch.from_numpy(self.rng.integers(0, self.train.x.shape[0], self.batch_size))
        return ImageSet(self.train.x[idx], self.train.labels[idx])
