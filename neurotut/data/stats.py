"""Label statistics of a segmentation volume (Z, Y, X)."""

from __future__ import annotations

import numpy as np


def object_sizes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero ids and their sizes in voxels, both (N,) int64, sorted by id."""
    ids, counts = np.unique(labels, return_counts=True)
    keep = ids != 0
    return ids[keep].astype(np.int64), counts[keep].astype(np.int64)


def objects_per_slice(labels: np.ndarray) -> np.ndarray:
    """(Z,) int64: number of distinct non-zero ids in each z slice."""
    return np.array([np.count_nonzero(np.unique(s)) for s in labels], dtype=np.int64)


def zero_fraction_per_slice(labels: np.ndarray) -> np.ndarray:
    """(Z,) float64: fraction of unlabelled (0) voxels in each z slice."""
    return (labels == 0).reshape(labels.shape[0], -1).mean(axis=1)


def z_extent(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-zero id: (ids, first z, last z) where it occurs, each (N,) int64, sorted by id."""
    per_slice = [np.unique(s) for s in labels]
    zs = np.concatenate([np.full(len(u), z) for z, u in enumerate(per_slice)])
    ids_all = np.concatenate(per_slice).astype(np.int64)
    ids, inverse = np.unique(ids_all, return_inverse=True)
    first = np.full(len(ids), labels.shape[0], np.int64)
    last = np.full(len(ids), -1, np.int64)
    np.minimum.at(first, inverse, zs)
    np.maximum.at(last, inverse, zs)
    keep = ids != 0
    return ids[keep], first[keep], last[keep]
