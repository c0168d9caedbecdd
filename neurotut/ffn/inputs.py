"""FFN training inputs (google/ffn ``training/inputs.py``): training volumes, one example's
patches (image, soft target, seed canvas) around a centre, and the balanced sampler of centres.

All arrays are (Z, Y, X); a patch is ``fov + 2 * deltas * M`` (see
:attr:`~neurotut.ffn.train_config.TrainConfig.patch_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neurotut.ffn.augmentation import Augmentation
from neurotut.ffn.coordinates import BalancedSampler, index_partitions
from neurotut.ffn.model import logit
from neurotut.ffn.partitions import DEFAULT_THRESHOLDS, compute_partitions
from neurotut.ffn.train_config import TrainConfig
from neurotut.geometry import crop_centered


def _mean_std(image: np.ndarray, block: int = 8) -> tuple[float, float]:
    """Mean and standard deviation (ddof 0) of a (Z, Y, X) array, ``block`` slices at a time in
    float64 (no float64 copy of the whole volume)."""
    total = total_sq = 0.0
    for z in range(0, image.shape[0], block):
        part = image[z : z + block].astype(np.float64)
        total += float(part.sum())
        total_sq += float(np.square(part).sum())
    n = image.size
    mean = total / n
    return mean, math.sqrt(max(total_sq / n - mean * mean, 0.0))


@dataclass
class TrainVolume:
    """One training volume: EM image, labels and the image's normalisation.

    ``image`` (Z, Y, X) uint8 (or float), ``labels`` (Z, Y, X) integer object ids (0 = background).
    The network sees ``(image - image_mean) / image_stddev``; by default mean and standard deviation
    are measured on this volume (per-volume normalisation).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    image_mean: float | None = None
    image_stddev: float | None = None

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image)
        self.labels = np.asarray(self.labels)
        if self.image.ndim != 3:
            raise ValueError(f"volume {self.name!r}: image must be (Z, Y, X), got {self.image.shape}")
        if self.labels.shape != self.image.shape:
            raise ValueError(
                f"volume {self.name!r}: labels {self.labels.shape} and image {self.image.shape} "
                "differ in shape"
            )
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise TypeError(f"volume {self.name!r}: labels must be integer ids, got {self.labels.dtype}")
        if self.image_mean is None or self.image_stddev is None:
            mean, std = _mean_std(self.image)
            if self.image_mean is None:
                self.image_mean = mean
            if self.image_stddev is None:
                self.image_stddev = std
        if not self.image_stddev > 0:
            raise ValueError(f"volume {self.name!r}: image_stddev must be positive, got {self.image_stddev}")


def soft_labels(labels: np.ndarray, softness: float = 0.05) -> np.ndarray:
    """Soft target of a (Z, Y, X) label patch: ``1 - softness`` where the voxel carries the centre
    voxel's non-zero id, ``softness`` elsewhere (everywhere when the centre is background).

    Returns (Z, Y, X) float32. The centre is ``labels[Z // 2, Y // 2, X // 2]``.
    """
    center = labels[tuple(s // 2 for s in labels.shape)]
    mask = (labels > 0) & (labels == center)
    return np.where(mask, 1.0 - softness, softness).astype(np.float32)


def make_seed_canvas(
    shape: Sequence[int], pad: float = 0.05, init: float = 0.95
) -> np.ndarray:
    """(Z, Y, X) float32 logits: ``logit(pad)`` everywhere, ``logit(init)`` at the centre voxel."""
    canvas = np.full(tuple(shape), logit(pad), dtype=np.float32)
    canvas[tuple(s // 2 for s in shape)] = logit(init)
    return canvas


@dataclass
class Example:
    """One training example: patch-sized arrays around ``center`` of volume ``volume``.

    ``image`` normalised float32, ``target`` soft labels float32, ``canvas`` logits float32, all
    (Z, Y, X) of the training patch size, already augmented.
    """

    volume: str
    center: tuple[int, int, int]
    augmentation: Augmentation
    image: np.ndarray
    target: np.ndarray
    canvas: np.ndarray


def load_example(
    volume: TrainVolume,
    center: Sequence[int],
    config: TrainConfig,
    augmentation: Augmentation | None = None,
) -> Example:
    """Cut, augment, normalise and soften one example around ``center`` (z, y, x), and give it a
    fresh seed canvas. ``augmentation=None`` means none."""
    aug = augmentation or Augmentation()
    size = config.patch_size
    raw = crop_centered(volume.image, center, size)
    labels = crop_centered(volume.labels, center, size)
    image = (aug.apply(raw).astype(np.float32) - np.float32(volume.image_mean)) / np.float32(volume.image_stddev)
    target = soft_labels(aug.apply(labels), config.label_softness)
    canvas = make_seed_canvas(size, config.seed_pad, config.seed_init)
    center = tuple(int(c) for c in center)
    return Example(volume.name, center, aug, image.astype(np.float32), target, canvas)  # type: ignore[arg-type]


def fov_slices(patch_shape: Sequence[int], fov_size: Sequence[int], offset: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the FOV whose centre is ``offset`` (z, y, x) away from the patch centre."""
    out = []
    for n, f, o in zip(patch_shape, fov_size, offset):
        start = n // 2 + int(o) - f // 2
        if start < 0 or start + f > n:
            raise ValueError(f"FOV {tuple(fov_size)} at offset {tuple(offset)} leaves the patch {tuple(patch_shape)}")
        out.append(slice(start, start + f))
    return tuple(out)


def make_sampler(
    volumes: Sequence[TrainVolume],
    config: TrainConfig,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    lom_radius: Sequence[int] | None = None,
    min_size: int = 10000,
    seed: int = 0,
    progress: bool = False,
) -> BalancedSampler:
    """Partitions, balanced index and sampler for in-memory volumes, in one call.

    ``lom_radius`` (z, y, x) defaults to the README's rule ``fov // 2 + deltas``; the margin is the
    training patch radius, so every drawn centre has its whole patch inside its volume.
    """
    if lom_radius is None:
        lom_radius = tuple(f // 2 + d for f, d in zip(config.model.fov_size, config.model.deltas))
    parts = [
        (v.name, compute_partitions(v.labels, thresholds, lom_radius, min_size=min_size, progress=progress))
        for v in volumes
    ]
    index = index_partitions(parts, margin=config.patch_radius)
    return BalancedSampler(index, seed=seed)
