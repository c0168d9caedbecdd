"""Test-time augmentation (TTA) of affinity predictions: flips and a y/x transpose, averaged.

Superhuman (Lee et al. 2017) averages the network's output over 16 variants of the input: every
combination of flips along z, y and x, with and without exchanging y and x. An image is easily
transformed back, but an affinity is not: channel ``c`` at voxel ``v`` describes the edge
``(v - d, v)`` for the offset ``d = offsets[c]`` (see :mod:`neurotut.affinity`). After flipping
the input along an axis where ``d`` has the component ``k > 0`` and flipping the prediction back,
the value at ``u`` describes the edge ``(u, u + k)``, which the convention stores at ``u + k``; so
the channel is shifted by ``k`` along that axis, and its first ``k`` planes get no value from that
variant. A transpose of y and x exchanges the channels of ``(dz, dy, dx)`` and ``(dz, dx, dy)``
(both must be among the offsets; the 12 Superhuman offsets are). Each voxel of each channel is the
mean over the variants that give it a value; the identity variant gives every voxel one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

Variant = tuple[tuple[bool, bool, bool], bool]  # (flip z, flip y, flip x), transpose y and x

#: the numbers of variants :func:`variants` accepts
VARIANT_COUNTS = (1, 4, 8, 16)


def variants(count: int = 16) -> list[Variant]:
    """The first ``count`` variants, identity first: 1 (none), 4 (flips in y and x), 8 (flips in z,
    y and x) or 16 (those 8, each also with y and x exchanged: Superhuman's set)."""
    if count not in VARIANT_COUNTS:
        raise ValueError(f"test-time augmentation uses 1, 4, 8 or 16 variants, got {count}")
    flips = [(fz, fy, fx) for fz, fy, fx in itertools.product((False, True), repeat=3)]
    flips.sort(key=lambda f: (f[0], f[1] or f[2], f))  # y/x flips before z flips
    out = [(f, False) for f in flips] + [(f, True) for f in flips]
    return out[:count]


def transform(volume: np.ndarray, variant: Variant) -> np.ndarray:
    """Apply ``variant`` to a ``(Z, Y, X)`` volume (flips, then the y/x transpose)."""
    flips, transpose = variant
    if volume.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {volume.shape}")
    axes = tuple(a for a, f in enumerate(flips) if f)
    out = np.flip(volume, axes) if axes else volume
    if transpose:
        out = out.transpose(0, 2, 1)
    return np.ascontiguousarray(out)


def _transpose_partner(offsets: Sequence[tuple[int, int, int]]) -> list[int]:
    index = {tuple(o): c for c, o in enumerate(offsets)}
    partner = []
    for dz, dy, dx in offsets:
        c = index.get((dz, dx, dy))
        if c is None:
            raise ValueError(f"a y/x transpose needs the offset {(dz, dx, dy)} beside {(dz, dy, dx)}")
        partner.append(c)
    return partner


def untransform(pred: np.ndarray, offsets: Sequence[Sequence[int]], variant: Variant
                ) -> tuple[np.ndarray, np.ndarray]:
    """Map a prediction made on ``transform(raw, variant)`` back to ``raw``'s frame.

    Args:
        pred: ``(C, z, y, x)`` affinities of the transformed volume, channel ``c`` for
            ``offsets[c]`` (each offset's components >= 0).
    Returns:
        ``(affinities, valid)``: ``(C, Z, Y, X)`` float32 in the original frame and a bool array
        of the same shape, False where this variant gives no value (see the module docstring).
    """
    flips, transpose = variant
    offs = [tuple(int(v) for v in o) for o in offsets]
    if pred.ndim != 4 or pred.shape[0] != len(offs):
        raise ValueError(f"expected ({len(offs)}, Z, Y, X) affinities, got shape {pred.shape}")
    if any(v < 0 for o in offs for v in o):
        raise ValueError("test-time augmentation expects offsets with components >= 0")
    out = pred
    if transpose:
        out = out[_transpose_partner(offs)].transpose(0, 1, 3, 2)
    axes = tuple(1 + a for a, f in enumerate(flips) if f)
    out = np.flip(out, axes) if axes else out
    result = np.zeros(out.shape, dtype=np.float32)
    valid = np.zeros(out.shape, dtype=bool)
    for c, off in enumerate(offs):
        dst, src = [], []
        for axis, (flipped, k) in enumerate(zip(flips, off)):
            n = out.shape[1 + axis]
            shift = min(k, n) if flipped else 0
            dst.append(slice(shift, n))
            src.append(slice(0, n - shift))
        result[(c, *dst)] = out[(c, *src)]
        valid[(c, *dst)] = True
    return result, valid


def predict_with_tta(predict: Callable[[np.ndarray], np.ndarray], raw: np.ndarray,
                     offsets: Sequence[Sequence[int]], count: int = 16) -> np.ndarray:
    """The mean of ``predict`` over ``count`` variants of ``raw``.

    Args:
        predict: maps a ``(Z', Y', X')`` volume to its ``(C, Z', Y', X')`` affinities.
        raw: ``(Z, Y, X)`` image.
        offsets: the ``C`` offsets of the channels.
        count: 1, 4, 8 or 16 (see :func:`variants`).
    Returns:
        ``(C, Z, Y, X)`` float32.
    """
    total = count_ = None
    for variant in variants(count):
        pred, valid = untransform(np.asarray(predict(transform(raw, variant))), offsets, variant)
        if total is None:
            total = np.zeros(pred.shape, dtype=np.float64)
            count_ = np.zeros(pred.shape, dtype=np.uint8)
        total += pred
        count_ += valid
    return (total / np.maximum(count_, 1)).astype(np.float32)
