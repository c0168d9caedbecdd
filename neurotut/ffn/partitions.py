"""Partition volumes: how much of its neighbourhood does a voxel's own object fill?

This is step 1 of the FFN workflow (google/ffn ``compute_partitions.py``). For every labelled voxel
v, take the box of side ``2 * lom_radius + 1`` centred on v (the *local object mask*, LOM, window)
and count the voxels in it that carry v's label, v included. The *active fraction* is that count
divided by the box volume. Thin neurites and object borders have small fractions, the middle of a
large cell body has a fraction close to 1. The fraction is then quantised with a list of
thresholds into a small integer, the *partition*, so that training can later draw centres equally
often from every partition (see :mod:`neurotut.ffn.coordinates`).

Output values (uint8, same shape as the labels):

* ``1 .. len(thresholds) + 1``: the partition of a labelled voxel: 1 + the index of the first
  threshold the fraction is strictly below, or ``len(thresholds) + 1`` when it is below none.
* ``0`` (:data:`BACKGROUND`): label 0, an id removed as dust (fewer than ``min_size`` voxels in the
  whole volume, counted by id, not by connected component) or an id outside ``id_whitelist``.
* ``255`` (:data:`EXCLUDED`): the border of width ``lom_radius`` where the window does not fit,
  voxels inside an exclusion sphere, and voxels whose window touches a masked voxel.

How it is computed, and why it is fast. The original builds, for every id, a summed-volume table of
the *whole* volume. Here every id is handled inside its bounding box grown by the radius (all the
context its voxels' windows can see), the box sums come from cumulative sums taken one axis at a
time, and the quantisation is one look-up in a table indexed by the integer count, built by
evaluating ``count / window_volume`` exactly as the original does. The output is identical.

Memory: one id at a time needs a few arrays the size of its grown bounding box (at most the
volume); the whole run holds the labels, one int32 relabelled copy and the uint8 output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from neurotut.geometry import as_zyx

#: the 12 thresholds of the google/ffn README and ffn_windows (partitions 1..13)
DEFAULT_THRESHOLDS: tuple[float, ...] = (
    0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
)
#: partition value of label 0 / dust inside the valid region
BACKGROUND = 0
#: partition value of excluded voxels and of the border of width ``lom_radius``
EXCLUDED = 255

# above this window volume the count -> partition look-up table is not built (memory)
_MAX_LUT = 1 << 24


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3-D (Z, Y, X) volume, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must have an integer dtype (object ids), got {labels.dtype}; a float or bool "
            "volume is not a segmentation (convert ids with labels.astype(np.uint32) if they are "
            "whole numbers)"
        )
    return labels


def _check_radius(shape: tuple[int, ...], lom_radius: int | Sequence[int]) -> tuple[int, int, int]:
    radius = as_zyx(lom_radius, "lom_radius")
    if any(s - 2 * r < 1 for s, r in zip(shape, radius)):
        raise ValueError(
            f"lom_radius (z, y, x) = {radius} is too large for a volume of shape {tuple(shape)}: "
            "no voxel has its whole window (2 * radius + 1 per axis) inside the volume; use a "
            "radius below half the size of every axis"
        )
    return radius


def _check_thresholds(thresholds: Iterable[float]) -> np.ndarray:
    th = np.asarray([float(t) for t in thresholds], dtype=np.float64)
    if th.size == 0:
        raise ValueError("thresholds must hold at least one value")
    if not np.all(np.isfinite(th)):
        raise ValueError(f"thresholds must be finite numbers, got {th.tolist()}")
    if th.size > EXCLUDED - 2:
        raise ValueError(f"at most {EXCLUDED - 2} thresholds fit in uint8 partitions, got {th.size}")
    return th


def valid_slices(shape: Sequence[int], lom_radius: int | Sequence[int]) -> tuple[slice, slice, slice]:
    """Slices (z, y, x) of the voxels whose whole window fits inside a volume of ``shape``.

    A radius of 0 keeps the whole axis.
    """
    radius = as_zyx(lom_radius, "lom_radius")
    return tuple(slice(r, s - r) for s, r in zip(shape, radius))  # type: ignore[return-value]


def quantize(fraction: np.ndarray | float, thresholds: Sequence[float]) -> np.ndarray:
    """Partition of an active fraction: 1 + index of the first threshold it is strictly below,
    or ``len(thresholds) + 1``; the rule of the original, for thresholds in any order.

    ``fraction`` any shape, float; returns uint8 of the same shape.
    """
    th = _check_thresholds(thresholds)
    # the first i with fraction < th[i] is the first i with fraction < max(th[:i+1]); that
    # running maximum is sorted, so a binary search finds it
    running_max = np.maximum.accumulate(th)
    index = np.searchsorted(running_max, np.asarray(fraction, dtype=np.float64), side="right")
    return (index + 1).astype(np.uint8)


def partition_lut(thresholds: Sequence[float], window_volume: int) -> np.ndarray:
    """Partition of every possible count ``0 .. window_volume``: ``(window_volume + 1,) uint8``.

    The fraction is ``count / window_volume`` in float64, as in the original.
    """
    counts = np.arange(window_volume + 1, dtype=np.int64)
    return quantize(counts / np.int64(window_volume), thresholds)


def remove_dust(labels: np.ndarray, min_size: int) -> np.ndarray:
    """A copy of ``labels`` where every id with fewer than ``min_size`` voxels is set to 0.

    Counts are per id over the whole volume (not per connected component), like google/ffn's
    ``clear_dust``. ``labels`` (Z, Y, X) integer; returns the same shape and dtype.
    """
    labels = _check_labels(labels)
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts >= min_size
    out = np.where(keep[inverse.reshape(labels.shape)], labels, 0).astype(labels.dtype)
    return out


def _dense_relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel non-zero ids to 1..K.

    Returns ``ids`` (K,) the non-zero ids in increasing order, ``counts`` (K,) int64 their voxel
    counts, and ``dense`` (Z, Y, X) int32 with ``dense == k + 1`` where ``labels == ids[k]`` and 0
    where ``labels == 0``.
    """
    flat = labels.reshape(-1)
    if flat.size == 0:
        return flat[:0], np.zeros(0, np.int64), np.zeros(labels.shape, np.int32)
    lo, hi = int(flat.min()), int(flat.max())
    if lo >= 0 and hi <= max(4 * flat.size, 1 << 16):
        # small non-negative ids: counting (no sort)
        all_counts = np.bincount(flat.astype(np.intp, copy=False), minlength=hi + 1)
        ids = np.flatnonzero(all_counts)
        ids = ids[ids != 0]
        code = np.zeros(hi + 1, dtype=np.int32)
        code[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        dense = code[labels]
        return ids.astype(labels.dtype), all_counts[ids].astype(np.int64), dense
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    nonzero = uniq != 0
    code = np.zeros(uniq.size, dtype=np.int32)
    code[nonzero] = np.arange(1, int(nonzero.sum()) + 1, dtype=np.int32)
    dense = code[inverse].reshape(labels.shape)
    return uniq[nonzero], counts[nonzero].astype(np.int64), dense


def _axis_index(axis: int, item: slice | int) -> tuple:
    return (slice(None),) * axis + (item,)


def _running_window_sum(array: np.ndarray, axis: int, d: int, dtype) -> np.ndarray:
    """Sums over ``d`` consecutive entries along a leading ``axis`` ("VALID"), one slice at a
    time: out[k] = out[k - 1] + a[k + d - 1] - a[k - 1]. Each step works on a whole contiguous
    slice, which is several times faster than ``np.cumsum`` along a leading axis."""
    n = array.shape[axis]
    shape = list(array.shape)
    shape[axis] = n - d + 1
    out = np.empty(shape, dtype=dtype)
    at = lambda a, i: a[_axis_index(axis, i)]  # noqa: E731
    np.sum(at(array, slice(0, d)), axis=axis, dtype=dtype, out=at(out, 0))
    for k in range(1, n - d + 1):
        current = at(out, k)
        np.add(at(out, k - 1), at(array, k + d - 1), out=current, dtype=dtype)
        np.subtract(current, at(array, k - 1), out=current, dtype=dtype)
    return out


def _cumsum_window_sum(array: np.ndarray, axis: int, d: int, dtype) -> np.ndarray:
    """Sums over ``d`` consecutive entries along ``axis`` ("VALID") from one cumulative sum:
    sum over [k, k + d) = csum[k + d - 1] - csum[k - 1], with csum[-1] = 0. Fast along the last
    (contiguous) axis."""
    n = array.shape[axis]
    csum = np.cumsum(array, axis=axis, dtype=dtype)
    shape = list(csum.shape)
    shape[axis] = n - d + 1
    out = np.empty(shape, dtype=dtype)
    out[_axis_index(axis, 0)] = csum[_axis_index(axis, d - 1)]
    np.subtract(
        csum[_axis_index(axis, slice(d, None))],
        csum[_axis_index(axis, slice(0, n - d))],
        out=out[_axis_index(axis, slice(1, None))],
    )
    return out


def window_sums(array: np.ndarray, radius: Sequence[int], dtype=np.int64) -> np.ndarray:
    """Sum of ``array`` over the box of side ``2 * r + 1`` (per axis) around every voxel whose
    box fits inside the array ("VALID" mode).

    ``array`` (Z, Y, X) bool or integer; returns ``(Z - 2 rz, Y - 2 ry, X - 2 rx)`` of ``dtype``.
    The box sum is separable: sums along z, then y, then x, each a running sum whose cost does
    not depend on the radius (the same numbers as the original's summed-volume table).
    """
    out = np.asarray(array)
    last = out.ndim - 1
    for axis, r in enumerate(radius):
        n = out.shape[axis]
        d = 2 * r + 1
        if d > n:
            raise ValueError(f"window of {d} voxels does not fit in axis {axis} of size {n}")
        if r == 0:
            continue
        if axis == last:
            out = _cumsum_window_sum(out, axis, d, dtype)
        else:
            out = _running_window_sum(out, axis, d, dtype)
    return out.astype(dtype, copy=False)


def _iter_label_counts(
    dense: np.ndarray,
    codes: Iterable[int],
    radius: tuple[int, int, int],
    progress: bool = False,
) -> Iterator[tuple[tuple[slice, ...], np.ndarray, np.ndarray]]:
    """For each code k: ``(box, mask, counts)``: the part ``box`` of the valid region that holds
    the object's voxels, ``mask`` (bool, box shape) where ``dense == k`` there, and ``counts``
    (box shape) the number of voxels of k in the window around each voxel of the box."""
    shape = dense.shape
    codes = list(codes)
    objects = ndimage.find_objects(dense, max_label=max(codes, default=0))
    acc = np.int32 if dense.size < np.iinfo(np.int32).max else np.int64
    for k in tqdm(codes, desc="partitions", unit="object", disable=not progress):
        found = objects[k - 1]
        if found is None:
            continue
        lo = [max(sl.start, r) for sl, r in zip(found, radius)]
        hi = [min(sl.stop, s - r) for sl, s, r in zip(found, shape, radius)]
        if any(a >= b for a, b in zip(lo, hi)):
            continue  # no voxel of this object in the valid region
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        context = tuple(slice(a - r, b + r) for a, b, r in zip(lo, hi, radius))
        object_mask = dense[context] == k
        counts = window_sums(object_mask, radius, dtype=acc)
        inner = tuple(slice(r, r + (b - a)) for a, b, r in zip(lo, hi, radius))
        yield box, object_mask[inner], counts


def _selected_codes(
    ids: np.ndarray, counts: np.ndarray, min_size: int, id_whitelist: Iterable[int] | None
) -> np.ndarray:
    keep = counts >= min_size
    if id_whitelist is not None:
        keep &= np.isin(ids, np.asarray(list(id_whitelist)))
    return np.flatnonzero(keep) + 1


def _exclude_spheres(output: np.ndarray, valid: tuple[slice, ...], regions) -> None:
    """Set voxels of the valid region within (z, y, x, r) spheres (full-volume coords) to 255."""
    for region in regions:
        if len(region) != 4:
            raise ValueError(f"an exclusion region is (z, y, x, r), got {tuple(region)!r}")
        cz, cy, cx, rad = (float(v) for v in region)
        sel = []
        for c, v in zip((cz, cy, cx), valid):
            a = max(v.start, int(np.floor(c - rad)))
            b = min(v.stop, int(np.ceil(c + rad)) + 1)
            sel.append((a, b))
        if any(a >= b for a, b in sel):
            continue
        zz, yy, xx = (np.arange(a, b, dtype=np.float64) for a, b in sel)
        inside = (
            (zz[:, None, None] - cz) ** 2 + (yy[None, :, None] - cy) ** 2
            + (xx[None, None, :] - cx) ** 2
        ) <= rad**2
        output[tuple(slice(a, b) for a, b in sel)][inside] = EXCLUDED


def compute_partitions(
    labels: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    lom_radius: int | Sequence[int] = (24, 24, 24),
    *,
    min_size: int = 10000,
    id_whitelist: Iterable[int] | None = None,
    exclusion_regions: Iterable[Sequence[float]] | None = None,
    mask: np.ndarray | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Partition volume of a segmentation, as google/ffn's ``compute_partitions``.

    Args:
        labels: (Z, Y, X) integer object ids; 0 is background. Not modified.
        thresholds: active-fraction thresholds; partition = 1 + index of the first threshold the
            fraction is strictly below, else ``len(thresholds) + 1``.
        lom_radius: window radius (z, y, x) in voxels (the original's flag is x, y, z); the
            window is a box of ``2 * r + 1`` voxels per axis.
        min_size: ids with fewer voxels in the whole volume are treated as background (dust).
        id_whitelist: when given, only these ids get partitions; other ids read 0.
        exclusion_regions: spheres ``(z, y, x, r)`` in voxels (full-volume coordinates) set to 255.
        mask: (Z, Y, X) bool, True = masked; a voxel whose window holds a masked voxel reads 255.
        progress: show a progress bar over objects.

    Returns:
        (Z, Y, X) uint8: 0 background, 1..len(thresholds)+1 partitions, 255 excluded (including
        the border of width ``lom_radius``).
    """
    labels = _check_labels(labels)
    th = _check_thresholds(thresholds)
    radius = _check_radius(labels.shape, lom_radius)
    if min_size < 0:
        raise ValueError(f"min_size must not be negative, got {min_size}")
    valid = valid_slices(labels.shape, radius)

    output = np.full(labels.shape, EXCLUDED, dtype=np.uint8)
    output[valid] = BACKGROUND
    if exclusion_regions is not None:
        _exclude_spheres(output, valid, exclusion_regions)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise ValueError(f"mask shape {mask.shape} differs from labels shape {labels.shape}")
        acc = np.int32 if mask.size < np.iinfo(np.int32).max else np.int64
        touched = window_sums(mask.astype(bool), radius, dtype=acc) >= 1
        output[valid][touched] = EXCLUDED

    ids, counts, dense = _dense_relabel(labels)
    codes = _selected_codes(ids, counts, min_size, id_whitelist)
    window_volume = int(np.prod([2 * r + 1 for r in radius]))
    lut = partition_lut(th, window_volume) if window_volume < _MAX_LUT else None
    for box, object_mask, window_counts in _iter_label_counts(dense, codes, radius, progress):
        region = output[box]  # a view: writes go to output
        write = object_mask & (region == BACKGROUND)  # excluded voxels stay excluded
        hits = window_counts[write]
        if lut is not None:
            region[write] = lut[hits]
        else:
            region[write] = quantize(hits / np.int64(window_volume), th)
    return output


def active_fraction(
    labels: np.ndarray,
    lom_radius: int | Sequence[int] = (24, 24, 24),
    *,
    min_size: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """The unquantised active fraction: for each labelled voxel of the valid region, the share of
    its window that carries its label.

    ``labels`` (Z, Y, X) integer; returns (Z, Y, X) float32, NaN on background, dust and the
    border. ``compute_partitions`` quantises exactly this quantity.
    """
    labels = _check_labels(labels)
    radius = _check_radius(labels.shape, lom_radius)
    window_volume = np.int64(np.prod([2 * r + 1 for r in radius]))
    out = np.full(labels.shape, np.nan, dtype=np.float32)
    ids, counts, dense = _dense_relabel(labels)
    codes = _selected_codes(ids, counts, min_size, None)
    for box, object_mask, window_counts in _iter_label_counts(dense, codes, radius, progress):
        out[box][object_mask] = window_counts[object_mask] / window_volume
    return out


def local_object_mask(
    labels: np.ndarray, center: Sequence[int], lom_radius: int | Sequence[int]
) -> tuple[np.ndarray, float]:
    """The window around one voxel and its active fraction.

    ``center`` (z, y, x) must have its whole window inside ``labels``. Returns the window's
    object mask ``(2 rz + 1, 2 ry + 1, 2 rx + 1) bool`` (True where the label equals the centre's,
    which is all False for a background centre) and the fraction of True voxels.
    """
    labels = _check_labels(labels)
    radius = as_zyx(lom_radius, "lom_radius")
    center = as_zyx(center, "center")
    for c, r, s in zip(center, radius, labels.shape):
        if c - r < 0 or c + r >= s:
            raise ValueError(
                f"the window of radius {radius} around {center} leaves a volume of shape "
                f"{labels.shape}"
            )
    window = labels[tuple(slice(c - r, c + r + 1) for c, r in zip(center, radius))]
    value = labels[center]
    lom = (window == value) if value != 0 else np.zeros(window.shape, dtype=bool)
    return lom, float(lom.sum() / lom.size)


def partition_counts(
    partitions: np.ndarray, lom_radius: int | Sequence[int] | None = None
) -> dict[int, int]:
    """Voxels per partition value, ``{value: count}`` in increasing value order.

    With ``lom_radius`` only the valid region is counted (the original's ``partition_counts``
    attribute, which excludes the border but includes 255 from exclusions and masks).
    """
    partitions = np.asarray(partitions)
    if lom_radius is not None:
        partitions = partitions[valid_slices(partitions.shape, lom_radius)]
    values, counts = np.unique(partitions, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}
