"""FFN inference outputs on disk, in the original layout (google/ffn ``storage.py``).

For a subvolume whose corner is ``(z, y, x)``, the files are::

    <out>/<x>/<y>/seg-<x>_<y>_<z>.npz     segmentation, origins, overlaps, counters, request
    <out>/<x>/<y>/seg-<x>_<y>_<z>.prob    qprob: the object probability, quantised to uint8
    <out>/<x>/<y>/seg-<x>_<y>_<z>.cpoint  inference checkpoint (deleted when the run finishes)
    <out>/counters.txt                    the run's counters, one "name: value" per line

The ``.npz`` holds the same keys as the original's, but no pickles: ``origins`` is an ``(N, 6)``
float64 array of rows ``(id, z, y, x, iters, walltime_sec)``, ``overlaps`` an ``(M, 3)`` int64
array of rows ``(id, overlapped_id, voxels)``, and ``counters`` / ``request`` are JSON text.
Everything loads with ``allow_pickle=False``. The segmentation of a file written by google/ffn
loads too (its ``origins`` are pickled Python objects and are not read).

Quantisation of probabilities as in the original: ``q = digitize(p, linspace(0, 1, 255))``
(1..255), NaN (never visited) -> 0; back: ``p = (q - 0.5) / 255`` and q = 0 -> NaN.

The post-processing of the ffn_windows workshop's workflow converts a result to one 16-bit PNG per
z-slice (``0000.png`` ...); :func:`to_png_stack` and :func:`from_png_stack` do that and back, and
:func:`to_h5` writes an HDF5 dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from neurotut.io import atomic_path, check_can_write, read_volume, write_h5


class OriginInfo(NamedTuple):
    """How a segment was created: its seed, the number of FFN steps and the time they took."""

    start_zyx: tuple[int, int, int]
    iters: int
    walltime_sec: float


# --------------------------------------------------------------------------------------------
# paths


def _corner(corner: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(int(c) for c in corner)
    if len(values) != 3 or any(c < 0 for c in values):
        raise ValueError(f"corner must be 3 non-negative ints (z, y, x), got {tuple(corner)!r}")
    return values  # type: ignore[return-value]


def subvolume_path(output_dir: str | os.PathLike, corner: Sequence[int], suffix: str) -> Path:
    """``<output_dir>/<x>/<y>/seg-<x>_<y>_<z>.<suffix>`` for a corner given as (z, y, x)."""
    z, y, x = _corner(corner)
    return Path(output_dir) / str(x) / str(y) / f"seg-{x}_{y}_{z}.{suffix}"


def segmentation_path(output_dir: str | os.PathLike, corner: Sequence[int]) -> Path:
    return subvolume_path(output_dir, corner, "npz")


def probability_path(output_dir: str | os.PathLike, corner: Sequence[int]) -> Path:
    return subvolume_path(output_dir, corner, "prob")


def checkpoint_path(output_dir: str | os.PathLike, corner: Sequence[int]) -> Path:
    return subvolume_path(output_dir, corner, "cpoint")


def counters_path(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "counters.txt"


def corner_from_path(path: str | os.PathLike) -> tuple[int, int, int]:
    """The (z, y, x) corner encoded in a ``seg-<x>_<y>_<z>.*`` file name."""
    match = re.search(r"seg-(\d+)_(\d+)_(\d+)\.", Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named seg-<x>_<y>_<z>.<suffix>")
    x, y, z = (int(v) for v in match.groups())
    return z, y, x


def existing_corners(output_dir: str | os.PathLike) -> list[tuple[int, int, int]]:
    """Corners (z, y, x) of every ``.npz`` result under ``output_dir`` (both layouts), sorted."""
    root = Path(output_dir)
    paths = list(root.glob("seg-*_*_*.npz")) + list(root.glob("*/*/seg-*_*_*.npz"))
    return sorted({corner_from_path(p) for p in paths})


# --------------------------------------------------------------------------------------------
# values


def reduce_id_bits(segmentation: np.ndarray) -> np.ndarray:
    """Cast non-negative ids to the smallest unsigned type that holds the largest one."""
    segmentation = np.asarray(segmentation)
    if segmentation.size and segmentation.min() < 0:
        raise ValueError("ids must be non-negative (turn the -1 markers into 0 first)")
    max_id = int(segmentation.max()) if segmentation.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_id <= np.iinfo(dtype).max:
            return segmentation.astype(dtype)
    raise ValueError(f"id {max_id} does not fit into 64 bits")  # pragma: no cover


def quantize_probability(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] (NaN = unknown) -> uint8 codes 1..255 (0 for NaN)."""
    prob = np.asarray(prob, dtype=np.float64)
    q = np.digitize(prob, np.linspace(0.0, 1.0, 255))
    q[np.isnan(prob)] = 0
    return q.astype(np.uint8)


def dequantize_probability(q: np.ndarray) -> np.ndarray:
    """uint8 codes -> float32 probabilities ``(q - 0.5) / 255``; code 0 -> NaN."""
    q = np.asarray(q)
    prob = ((q.astype(np.float32) - 0.5) / 255.0).astype(np.float32)
    prob[q == 0] = np.nan
    return prob


def origins_to_array(origins: Mapping[int, OriginInfo]) -> np.ndarray:
    """``{id: OriginInfo}`` -> ``(N, 6) float64`` rows ``(id, z, y, x, iters, walltime_sec)``."""
    rows = [
        (sid, *info.start_zyx, info.iters, info.walltime_sec) for sid, info in sorted(origins.items())
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def origins_from_array(array: np.ndarray) -> dict[int, OriginInfo]:
    """Inverse of :func:`origins_to_array`."""
    array = np.asarray(array, dtype=np.float64).reshape(-1, 6)
    return {
        int(r[0]): OriginInfo((int(r[1]), int(r[2]), int(r[3])), int(r[4]), float(r[5]))
        for r in array
    }


def overlaps_to_array(overlaps: Mapping[int, np.ndarray]) -> np.ndarray:
    """``{id: (2, K) [overlapped ids, voxel counts]}`` -> ``(M, 3) int64`` rows (id, other, n).

    A segment that overlapped nothing is kept as the row ``(id, 0, 0)``.
    """
    rows = []
    for sid, pair in sorted(overlaps.items()):
        pair = np.asarray(pair).reshape(2, -1)
        rows.extend((sid, int(o), int(n)) for o, n in zip(pair[0], pair[1]))
        if pair.shape[1] == 0:
            rows.append((sid, 0, 0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def overlaps_from_array(array: np.ndarray) -> dict[int, np.ndarray]:
    """Rows (id, other, n) -> ``{id: (2, K) int64}`` (K = 0 for a segment that overlapped nothing)."""
    array = np.asarray(array, dtype=np.int64).reshape(-1, 3)
    out: dict[int, np.ndarray] = {}
    for sid in np.unique(array[:, 0]):
        rows = array[(array[:, 0] == sid) & (array[:, 1] != 0)]
        out[int(sid)] = np.stack([rows[:, 1], rows[:, 2]])
    return out


def _text(value: object) -> np.ndarray:
    return np.asarray(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: object):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _save_npz(path: Path, overwrite: bool, arrays: Mapping[str, np.ndarray]) -> Path:
    """np.savez_compressed to exactly ``path`` (any suffix), atomically."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


# --------------------------------------------------------------------------------------------
# saving and loading results


def save_subvolume(
    output_dir: str | os.PathLike,
    corner: Sequence[int],
    segmentation: np.ndarray,
    origins: Mapping[int, OriginInfo] | None = None,
    overlaps: Mapping[int, np.ndarray] | None = None,
    counters: Mapping[str, float] | None = None,
    request: Mapping | None = None,
    seg_prob: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a result in the original layout; returns the ``.npz`` path.

    Args:
        segmentation: ``(Z, Y, X)`` ids; negative values (the canvas' rejected-seed markers) are
            written as 0. Stored in the smallest unsigned type that fits.
        seg_prob: optional ``(Z, Y, X) uint8`` quantised probability, written to the ``.prob``
            file beside the ``.npz``.
        overwrite: replace existing files; otherwise an existing ``.npz`` or ``.prob`` raises
            :class:`neurotut.io.OutputExistsError` before anything is written.
    """
    seg = np.asarray(segmentation)
    if seg.ndim != 3 or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"segmentation must be (Z, Y, X) integer ids, got {seg.shape} {seg.dtype}")
    npz = segmentation_path(output_dir, corner)
    prob = probability_path(output_dir, corner)
    check_can_write(npz, overwrite)
    if seg_prob is not None:
        seg_prob = np.asarray(seg_prob)
        if seg_prob.shape != seg.shape or seg_prob.dtype != np.uint8:
            raise ValueError(
                f"seg_prob must be uint8 of shape {seg.shape}, got {seg_prob.shape} {seg_prob.dtype}"
            )
        check_can_write(prob, overwrite)
    seg = reduce_id_bits(np.where(seg < 0, 0, seg) if np.issubdtype(seg.dtype, np.signedinteger) else seg)
    _save_npz(
        npz,
        overwrite,
        {
            "segmentation": seg,
            "origins": origins_to_array(origins or {}),
            "overlaps": overlaps_to_array(overlaps or {}),
            "counters": _text(dict(counters or {})),
            "request": _text(dict(request or {})),
        },
    )
    if seg_prob is not None:
        _save_npz(prob, overwrite, {"qprob": seg_prob})
    return npz


def _result_file(source: str | os.PathLike, corner: Sequence[int] | None) -> Path:
    """An output directory plus corner, or a path to the ``.npz`` itself."""
    source = Path(source)
    if corner is None:
        if source.is_dir():
            corners = existing_corners(source)
            if len(corners) != 1:
                raise ValueError(
                    f"{source} holds {len(corners)} results ({corners}); name the corner (z, y, x)"
                )
            corner = corners[0]
        else:
            path = source
            if not path.exists():
                raise FileNotFoundError(f"no such FFN result: {path}")
            return path
    path = segmentation_path(source, corner)
    if not path.exists():
        legacy = source / "seg-{2}_{1}_{0}.npz".format(*_corner(corner))
        if legacy.exists():
            return legacy
        raise FileNotFoundError(f"no FFN result for corner (z, y, x) {tuple(corner)} at {path}")
    return path


def split_disconnected_components(labels: np.ndarray) -> np.ndarray:
    """Give every 6-connected piece of every id its own id (``(Z, Y, X)`` -> uint64).

    Label 0 stays 0; the new ids are 1..K in raster order of each piece's first voxel (what
    ``skimage.measure.label`` returns, as in the original).
    """
    from skimage.measure import label

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (Z, Y, X), got shape {labels.shape}")
    fixed = label(labels, connectivity=1, background=0)
    return fixed.astype(np.uint64)


def clear_dust(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set ids with fewer than ``min_size`` voxels to 0, in place; returns ``labels``."""
    ids, sizes = np.unique(labels, return_counts=True)
    small = ids[(sizes < min_size) & (ids != 0)]
    if small.size:
        labels[np.isin(labels, small)] = 0
    return labels


def clean_up(
    segmentation: np.ndarray, split_cc: bool = True, min_size: int = 0
) -> tuple[np.ndarray, dict[int, int]]:
    """Connected-component splitting and dust removal, as ``load_segmentation`` applies them.

    Returns the cleaned ``(Z, Y, X) uint64`` ids and ``{new id: old id}`` (taken at each new
    id's first voxel).
    """
    old = np.asarray(segmentation).astype(np.uint64)
    new = split_disconnected_components(old) if split_cc else old.copy()
    if min_size > 0:
        clear_dust(new, min_size)
    ids, first = np.unique(new.ravel(), return_index=True)
    mapping = {int(n): int(o) for n, o in zip(ids, old.ravel()[first]) if n != 0}
    return new, mapping


def load_segmentation(
    source: str | os.PathLike,
    corner: Sequence[int] | None = None,
    threshold: float | None = None,
    split_cc: bool = True,
    min_size: int = 0,
) -> np.ndarray:
    """Load a result's segmentation as ``(Z, Y, X) uint64``.

    Args:
        source: the output directory (with ``corner``, or holding a single result) or the
            ``.npz`` file.
        threshold: optional probability threshold; voxels whose stored probability (the
            ``.prob`` file) is below it become 0. Only meaningful above the run's
            ``segment_threshold``.
        split_cc: relabel 6-connected components (the original's default): an FFN segment can
            be disconnected inside its bounding box, because segment_all never checks.
        min_size: remove (set to 0) segments smaller than this many voxels after splitting.
    """
    path = _result_file(source, corner)
    with np.load(path, allow_pickle=False) as data:
        if "segmentation" not in data:
            raise ValueError(f"{path} holds no 'segmentation' array; it is not an FFN result")
        seg = data["segmentation"].astype(np.uint64)
    if threshold is not None:
        prob_file = path.with_suffix(".prob")
        if not prob_file.exists():
            raise FileNotFoundError(f"threshold needs the probability file {prob_file}")
        with np.load(prob_file, allow_pickle=False) as data:
            prob = dequantize_probability(data["qprob"])
        seg[~(prob >= threshold)] = 0
    if split_cc or min_size > 0:
        seg, _ = clean_up(seg, split_cc, min_size)
    return seg


def load_probability(source: str | os.PathLike, corner: Sequence[int] | None = None) -> np.ndarray:
    """The stored object probability ``(Z, Y, X) float32`` (NaN where no object was grown)."""
    path = _result_file(source, corner).with_suffix(".prob")
    if not path.exists():
        raise FileNotFoundError(f"no probability file {path}")
    with np.load(path, allow_pickle=False) as data:
        return dequantize_probability(data["qprob"])


def load_origins(source: str | os.PathLike, corner: Sequence[int] | None = None) -> dict[int, OriginInfo]:
    """``{id: OriginInfo}`` of a result (ids as saved, before any splitting)."""
    path = _result_file(source, corner)
    with np.load(path, allow_pickle=False) as data:
        try:
            return origins_from_array(data["origins"])
        except ValueError as exc:
            raise ValueError(
                f"{path}: 'origins' is a pickled object (a file written by google/ffn); it is not "
                "read for safety. The segmentation itself loads with load_segmentation."
            ) from exc


def load_overlaps(source: str | os.PathLike, corner: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """``{id: (2, K) int64 [overlapped ids, voxels]}`` of a result."""
    path = _result_file(source, corner)
    with np.load(path, allow_pickle=False) as data:
        return overlaps_from_array(data["overlaps"])


def load_json_field(source: str | os.PathLike, key: str, corner: Sequence[int] | None = None) -> dict:
    """The ``counters`` or ``request`` stored with a result, as a dict."""
    path = _result_file(source, corner)
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data[key]))


def write_counters(output_dir: str | os.PathLike, counters: Mapping[str, float], overwrite: bool = True) -> Path:
    """``counters.txt``: one ``name: value`` line per counter, sorted by name."""
    path = counters_path(output_dir)
    with atomic_path(path, overwrite) as tmp:
        lines = [f"{k}: {_fmt(v)}" for k, v in sorted(counters.items())]
        tmp.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


# --------------------------------------------------------------------------------------------
# conversions


def _as_segmentation(source: np.ndarray | str | os.PathLike, split_cc: bool) -> np.ndarray:
    if isinstance(source, np.ndarray):
        seg = source
        if seg.ndim != 3 or not np.issubdtype(seg.dtype, np.integer):
            raise ValueError(f"expected (Z, Y, X) integer ids, got {seg.shape} {seg.dtype}")
        seg = np.where(seg < 0, 0, seg) if np.issubdtype(seg.dtype, np.signedinteger) else seg
        return clean_up(seg, True, 0)[0] if split_cc else seg
    return load_segmentation(source, split_cc=split_cc)


def to_h5(
    source: np.ndarray | str | os.PathLike,
    output: str | os.PathLike,
    dataset: str = "segmentation",
    split_cc: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a segmentation (array, ``.npz`` path or output directory) to an HDF5 dataset.

    Ids are stored in the smallest unsigned type that fits; gzip, chunked; atomic; an existing
    file is refused unless ``overwrite``.
    """
    check_can_write(output, overwrite)
    seg = reduce_id_bits(_as_segmentation(source, split_cc))
    return write_h5(output, {dataset: seg}, attrs={"axes": "zyx"}, overwrite=overwrite)


def from_h5(spec: str | os.PathLike) -> np.ndarray:
    """Read a segmentation written by :func:`to_h5` (``file.h5:dataset``) as ``(Z, Y, X) uint64``."""
    return read_volume(spec, default_dataset="segmentation").astype(np.uint64)


def to_png_stack(
    source: np.ndarray | str | os.PathLike,
    folder: str | os.PathLike,
    split_cc: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """One 16-bit greyscale PNG per z-slice (``0000.png`` ...), the ffn_windows workshop's npz -> PNG.

    Ids above 65535 are renumbered 1..K first (keeping their order); more than 65535 segments
    cannot be stored in 16 bits and raise ValueError. Returns the written paths.
    """
    from neurotut.data.stacks import write_png_stack

    seg = _as_segmentation(source, split_cc)
    if seg.size and int(seg.max()) > np.iinfo(np.uint16).max:
        ids, inverse = np.unique(seg, return_inverse=True)
        n_objects = len(ids) - (1 if ids[0] == 0 else 0)
        if n_objects > np.iinfo(np.uint16).max:
            raise ValueError(
                f"{n_objects} segments do not fit into 16-bit PNGs (at most 65535); write HDF5"
            )
        seg = (inverse.reshape(seg.shape) + (0 if ids[0] == 0 else 1)).astype(np.uint64)
    return write_png_stack(seg.astype(np.uint16), folder, overwrite=overwrite)


def from_png_stack(folder: str | os.PathLike) -> np.ndarray:
    """Read a 16-bit PNG stack back as ``(Z, Y, X) uint64`` ids."""
    from neurotut.data.stacks import read_png_stack

    return read_png_stack(folder, kind="labels").astype(np.uint64)
