"""Balanced training centres from partition volumes.

This is step 2 of the FFN workflow (google/ffn ``build_coordinates.py``). Training examples are
patches centred on voxels of the labelled volumes; drawn uniformly, almost all centres would sit in
the middle of large objects. The original therefore groups the voxels by partition value (see
:mod:`neurotut.ffn.partitions`; every value except 255, so background 0 is a class of its own),
and makes every partition equally frequent:

1. crop a ``margin`` (z, y, x) off every side of every volume (patch loading does not pad, so the
   margin should be the training patch radius, ``fov_size // 2 + deltas``);
2. collect every remaining voxel with its partition value, over all volumes;
3. with ``max_count`` the size of the largest partition, permute each partition's voxels and
   repeat or cut that list to exactly ``max_count`` entries; concatenate and shuffle.

The original writes those ``n_partitions * max_count`` records (centre in x, y, z and volume name)
to a TFRecord file, which for real data holds 10^8 records and more. Here the same information is
kept once per voxel, grouped by partition (:class:`PartitionIndex`, a small HDF5 file), and a
:class:`BalancedSampler` draws a partition uniformly and then a voxel uniformly inside it.

Why the two are equivalent: in the original file every partition owns exactly ``max_count``
records and the order is shuffled, so a record read at random belongs to each of the K partitions
with probability 1/K, and inside partition k every voxel occurs ``floor(max_count / n_k)`` or
``ceil(max_count / n_k)`` times, i.e. uniformly up to that rounding. The sampler gives exactly
1/K per partition and exactly uniform voxels within it, as independent draws instead of passes over
a fixed shuffled list. :func:`balanced_records` also builds the original's list, for a faithful
file or for comparison.

Deviation from the original: a margin of 0 keeps the whole axis (the original's ``[0:-0]`` crop
would be empty and the script would fail).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from neurotut.geometry import as_zyx, inner_slices
from neurotut.io import atomic_path, open_h5

#: partition value that is never sampled (border, exclusions, masks)
IGNORE_PARTITION = 255
FILE_FORMAT = "neurotut-ffn-coordinates"
FILE_VERSION = 1


@dataclass(frozen=True)
class PartitionIndex:
    """Every sampleable voxel (partition value != 255 inside the margin), grouped by partition.

    Group k (partition value ``values[k]``) is rows ``offsets[k]:offsets[k + 1]`` of
    ``volume_index`` and ``flat_index``; within a group, rows go volume by volume in increasing
    flat index (the order of the original's lists before shuffling).
    """

    #: names of the partition volumes (the names training uses for its volumes)
    volume_names: tuple[str, ...]
    #: (Z, Y, X) of each whole partition volume
    volume_shapes: tuple[tuple[int, int, int], ...]
    #: (z, y, x) voxels cropped from every side before indexing
    margin: tuple[int, int, int]
    #: (K,) uint8 partition values present, increasing
    values: np.ndarray
    #: (K + 1,) int64 group boundaries
    offsets: np.ndarray
    #: (N,) int32 which volume each voxel is in
    volume_index: np.ndarray
    #: (N,) int64 C-order index of each voxel inside its cropped volume
    flat_index: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """(K,) int64 voxels per partition."""
        return np.diff(self.offsets)

    @property
    def n_partitions(self) -> int:
        return int(self.values.size)

    @property
    def max_count(self) -> int:
        """Size of the largest partition: the original writes this many records per partition."""
        return int(self.counts.max())

    def cropped_shape(self, volume: int) -> tuple[int, int, int]:
        shape = self.volume_shapes[volume]
        return tuple(s - 2 * m for s, m in zip(shape, self.margin))  # type: ignore[return-value]

    def centers(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Volume index ``(n,) int64`` and centre ``(n, 3) int64`` (z, y, x in whole-volume
        coordinates, margin added back) of the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        vol = self.volume_index[rows].astype(np.int64)
        centers = np.empty((rows.size, 3), dtype=np.int64)
        flat = self.flat_index[rows]
        for v in np.unique(vol):
            sel = vol == v
            zyx = np.unravel_index(flat[sel], self.cropped_shape(int(v)))
            centers[sel] = np.stack(zyx, axis=1) + np.asarray(self.margin)
        return vol, centers

    def summary(self) -> dict[int, int]:
        """``{partition value: voxel count}``."""
        return {int(v): int(c) for v, c in zip(self.values, self.counts)}


def index_partitions(
    volumes: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]],
    margin: int | Sequence[int] = (24, 24, 24),
    progress: bool = False,
) -> PartitionIndex:
    """Group the voxels of one or more partition volumes by partition value.

    Args:
        volumes: ``{name: partitions}`` or ``[(name, partitions), ...]``; each (Z, Y, X) integer
            with values 0..255 (the output of ``compute_partitions``). Names must be unique.
        margin: (z, y, x) voxels to crop off every side (the original's ``--margin``, also z, y,
            x); 0 keeps the whole axis.
        progress: show a progress bar over volumes.
    """
    items = list(volumes.items()) if isinstance(volumes, Mapping) else list(volumes)
    if not items:
        raise ValueError("no partition volumes given")
    names = [str(name) for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"volume names must be unique, got {names}")
    margin = as_zyx(margin, "margin")

    shapes: list[tuple[int, int, int]] = []
    per_volume: list[tuple[np.ndarray, np.ndarray]] = []  # (flat indices grouped by value, edges)
    totals = np.zeros(256, dtype=np.int64)
    for name, array in tqdm(items, desc="index partitions", unit="volume", disable=not progress):
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"partition volume {name!r} must be 3-D (Z, Y, X), got {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"partition volume {name!r} must be integer (uint8), got {array.dtype}")
        if any(s - 2 * m < 1 for s, m in zip(array.shape, margin)):
            raise ValueError(
                f"margin (z, y, x) = {margin} leaves nothing of volume {name!r} of shape "
                f"{array.shape}; use a margin below half of every axis"
            )
        crop = array[inner_slices(array.shape, margin)]
        if crop.size and (int(crop.min()) < 0 or int(crop.max()) > 255):
            raise ValueError(f"partition volume {name!r} holds values outside 0..255")
        flat = np.ascontiguousarray(crop, dtype=np.uint8).reshape(-1)
        counts = np.bincount(flat, minlength=256)
        order = np.argsort(flat, kind="stable")  # grouped by value, increasing index within
        edges = np.concatenate([[0], np.cumsum(counts)])
        totals += counts
        shapes.append(tuple(int(s) for s in array.shape))  # type: ignore[arg-type]
        per_volume.append((order, edges))

    values = np.array(
        [v for v in range(256) if v != IGNORE_PARTITION and totals[v] > 0], dtype=np.uint8
    )
    if values.size == 0:
        raise ValueError(
            "no voxel to sample: every voxel inside the margin is 255 (excluded); check the "
            "margin and the partition volumes"
        )
    vol_parts, flat_parts = [], []
    for v in values:
        for i, (order, edges) in enumerate(per_volume):
            rows = order[edges[v] : edges[v + 1]]
            flat_parts.append(rows.astype(np.int64, copy=False))
            vol_parts.append(np.full(rows.size, i, dtype=np.int32))
    offsets = np.concatenate([[0], np.cumsum(totals[values])]).astype(np.int64)
    return PartitionIndex(
        volume_names=tuple(names),
        volume_shapes=tuple(shapes),
        margin=margin,
        values=values,
        offsets=offsets,
        volume_index=np.concatenate(vol_parts),
        flat_index=np.concatenate(flat_parts),
    )


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class BalancedSampler:
    """Draws training centres with every partition equally likely.

    Each draw picks a partition uniformly (1/K) and then one of its voxels uniformly; see the
    module docstring for why this matches the original's resampled record file.
    Deterministic for a given seed; :meth:`get_state` / :meth:`set_state` let training
    checkpoints resume the exact sequence.
    """

    def __init__(self, index: PartitionIndex, seed: int | np.random.Generator | None = 0):
        self.index = index
        self.rng = _rng(seed)

    def sample_rows(self, n: int) -> np.ndarray:
        """(n,) int64 rows of the index, balanced over partitions."""
        counts = self.index.counts
        group = self.rng.integers(0, counts.size, size=n)
        within = self.rng.integers(0, counts[group])
        return self.index.offsets[group] + within

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws: volume index ``(n,) int64`` and centre ``(n, 3) int64`` (z, y, x)."""
        return self.index.centers(self.sample_rows(n))

    def __iter__(self) -> Iterator[tuple[str, tuple[int, int, int]]]:
        """Endless ``(volume name, (z, y, x))`` pairs."""
        names = self.index.volume_names
        while True:
            vol, centers = self.sample(1024)
            for v, c in zip(vol, centers):
                yield names[int(v)], (int(c[0]), int(c[1]), int(c[2]))

    def get_state(self) -> dict:
        """The generator's state (a dict that pickles and JSON-encodes)."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def balanced_records(
    index: PartitionIndex, seed: int | np.random.Generator | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The original's record list: every partition permuted and tiled/cut to ``max_count``
    entries, all concatenated and shuffled.

    Returns volume index ``(K * max_count,) int64`` and centres ``(K * max_count, 3) int64``
    (z, y, x). Large for real volumes: prefer :class:`BalancedSampler`.
    """
    rng = _rng(seed)
    max_count = index.max_count
    rows = np.concatenate(
        [
            np.resize(rng.permutation(np.arange(lo, hi, dtype=np.int64)), max_count)
            for lo, hi in zip(index.offsets[:-1], index.offsets[1:])
        ]
    )
    rng.shuffle(rows)
    return index.centers(rows)


def save_coordinates(
    path: str | os.PathLike,
    index: PartitionIndex,
    *,
    records: tuple[np.ndarray, np.ndarray] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a :class:`PartitionIndex` (and optionally the original-style ``records`` from
    :func:`balanced_records`) to a new HDF5 file, atomically. Returns the path."""
    small = np.uint32 if int(index.flat_index.max(initial=0)) < 2**32 else np.int64
    with atomic_path(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FILE_FORMAT
            f.attrs["version"] = FILE_VERSION
            f.attrs["margin_zyx"] = np.asarray(index.margin, dtype=np.int64)
            f.create_dataset("volume_names", data=np.array(index.volume_names, dtype=object),
                             dtype=h5py.string_dtype())
            f.create_dataset("volume_shapes", data=np.asarray(index.volume_shapes, np.int64))
            f.create_dataset("partition_values", data=index.values)
            f.create_dataset("partition_offsets", data=index.offsets)
            for name, data in (
                ("volume_index", index.volume_index.astype(np.uint16 if len(index.volume_names)
                                                           < 2**16 else np.int32)),
                ("flat_index", index.flat_index.astype(small)),
            ):
                f.create_dataset(name, data=data, chunks=True, compression="gzip", shuffle=True)
            if records is not None:
                vol, centers = records
                g = f.create_group("records")
                g.attrs["description"] = (
                    "the original's resampled list: n_partitions * max_count shuffled centres"
                )
                g.create_dataset("volume_index", data=np.asarray(vol), chunks=True,
                                 compression="gzip", shuffle=True)
                g.create_dataset("center_zyx", data=np.asarray(centers), chunks=True,
                                 compression="gzip", shuffle=True)
    return Path(path)


def load_coordinates(path: str | os.PathLike) -> PartitionIndex:
    """Read a file written by :func:`save_coordinates` (or ``neurotut ffn coordinates``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such coordinate file: {path}")
    with open_h5(path) as f:
        if f.attrs.get("format") != FILE_FORMAT:
            raise ValueError(
                f"{path} is not a neurotut coordinate file (made by `neurotut ffn coordinates`)"
            )
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in f["volume_names"][...])
        return PartitionIndex(
            volume_names=names,
            volume_shapes=tuple(tuple(int(s) for s in row) for row in f["volume_shapes"][...]),
            margin=tuple(int(m) for m in f.attrs["margin_zyx"]),  # type: ignore[arg-type]
            values=f["partition_values"][...].astype(np.uint8),
            offsets=f["partition_offsets"][...].astype(np.int64),
            volume_index=f["volume_index"][...].astype(np.int32),
            flat_index=f["flat_index"][...].astype(np.int64),
        )
