"""Test-time augmentation (TTA) of affinity predictions: flips and a y/x transpose, averaged.

Superhuman (Lee et al. 2017) averages the network's output over 16 variants of the input: every
combination of flips along z, y and x, with and without exchanging y and x (the variants of
:mod:`neurotut.augment`, numbered 0..15). An image is easily transformed back, but an affinity is
not: channel ``c`` at voxel ``v`` describes the edge ``(v - d, v)`` for ``d = offsets[c]``
(:mod:`neurotut.affinity`). After a flip along an axis the edge points the other way, so the value
belongs to the other end of the edge and the channel is shifted by the offset
(:func:`neurotut.augment.flip_affinities` does this exactly); its first planes then get no value
from that variant. Each voxel of each channel is the mean over the variants that give it a value;
the identity variant gives every voxel one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from neurotut.augment import flip_affinities, flip_volume, inverse_variant

#: the variants (:func:`neurotut.augment.variant_axes` numbers) of each TTA size: none, flips in
#: y and x, flips in z, y and x, and those with the y/x transpose (Superhuman's 16)
VARIANTS: dict[int, tuple[int, ...]] = {1: (0,), 4: (0, 2, 4, 6), 8: tuple(range(8)), 16: tuple(range(16))}


def variants(count: int = 16) -> tuple[int, ...]:
    """The variant numbers of a TTA of ``count`` (1, 4, 8 or 16) predictions, identity first."""
    if count not in VARIANTS:
        raise ValueError(f"test-time augmentation uses 1, 4, 8 or 16 variants, got {count}")
    return VARIANTS[count]


def untransform(pred: np.ndarray, offsets: Sequence[Sequence[int]], variant: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Map ``(C, Z', Y', X')`` affinities predicted on ``flip_volume(raw, variant)`` back to
    ``raw``'s frame: ``(affinities (C, Z, Y, X) float32, valid bool)``, valid False where this
    variant gives no value."""
    back = inverse_variant(variant)
    values = flip_affinities(np.asarray(pred, dtype=np.float32), back, offsets)
    valid = flip_affinities(np.ones(np.shape(pred), dtype=bool), back, offsets)
    return values, valid


def predict_with_tta(predict: Callable[[np.ndarray], np.ndarray], raw: np.ndarray,
                     offsets: Sequence[Sequence[int]], count: int = 16) -> np.ndarray:
    """The mean of ``predict`` over ``count`` variants of ``raw``.

    Args:
        predict: maps a ``(Z', Y', X')`` volume to its ``(C, Z', Y', X')`` affinities.
        raw: ``(Z, Y, X)`` image.
        offsets: the ``C`` offsets of the channels.
        count: 1, 4, 8 or 16 (see :data:`VARIANTS`).
    Returns:
        ``(C, Z, Y, X)`` float32.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {raw.shape}")
    total = n = None
    for variant in variants(count):
        pred, valid = untransform(predict(np.ascontiguousarray(flip_volume(raw, variant))), offsets, variant)
        if total is None:
            total, n = np.zeros(pred.shape, dtype=np.float64), np.zeros(pred.shape, dtype=np.uint8)
        total += pred
        n += valid
    return (total / np.maximum(n, 1)).astype(np.float32)
