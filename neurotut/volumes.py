"""Chunked volumes on disk: zarr arrays with a voxel size and an offset, read and written by block.

A volume is one array inside a zarr container, named ``path.zarr:dataset`` (or
``path.zarr/dataset``). Its attributes follow funlib.persistence (daisy's array layer), so
``funlib.persistence.open_ds`` opens it too:

* ``voxel_size``: ``(z, y, x)`` size of a voxel in world units (``units``, default nm);
* ``offset``: ``(z, y, x)`` world position of voxel ``(0, 0, 0)``, a multiple of the voxel size;
* ``axis_names``: ``["z", "y", "x"]``, with a leading ``"c^"`` for a channel axis.

Arrays are created with ``write_empty_chunks`` so that every written chunk exists on disk, even
one that is all zero: a chunk that is absent was never written, and reading it is refused
(:class:`MissingChunkError`) instead of silently returning zeros. zarr writes each chunk to a
temporary file and renames it, so a chunk is either whole or absent.

:func:`h5_to_zarr` converts the book's HDF5 volumes (``raw``, ``labels``, affinities) slab by
slab (``neurotut data h5-to-zarr``).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurotut.io import OutputExistsError, check_dataset, get_dataset, open_h5, parse_volume_spec

ZARR_SUFFIX = ".zarr"
#: zarr's run-time settings for every array opened here (see the module docstring)
ZARR_CONFIG = {"write_empty_chunks": True}


class MissingChunkError(FileNotFoundError):
    """A chunk of a zarr volume that should hold data is absent (never written, or deleted)."""


def is_zarr_spec(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a zarr container (``….zarr`` or ``….zarr:dataset``)."""
    return ZARR_SUFFIX + ":" in os.fspath(spec) or ZARR_SUFFIX + "/" in os.fspath(spec) \
        or os.fspath(spec).rstrip("/").endswith(ZARR_SUFFIX)


def parse_zarr_spec(spec: str | os.PathLike, default_dataset: str | None = None) -> tuple[Path, str]:
    """Split ``"out.zarr:affinities"`` or ``"out.zarr/affinities"`` into container and dataset;
    without a dataset, ``default_dataset`` (or a ValueError saying how to name one)."""
    text = os.fspath(spec)
    cut = text.rfind(ZARR_SUFFIX)
    if cut < 0:
        raise ValueError(f"{text!r} is not a zarr volume: name it like out.zarr:dataset")
    container, rest = text[: cut + len(ZARR_SUFFIX)], text[cut + len(ZARR_SUFFIX):].strip(":/")
    dataset = rest or default_dataset
    if not dataset:
        raise ValueError(f"{text!r} names no dataset inside the container: use {container}:NAME")
    return Path(container), dataset


def _three(values: Sequence[float] | None, what: str, positive: bool) -> tuple[int, int, int]:
    if values is None or len(values) != 3:
        raise ValueError(f"{what} needs three values (z, y, x), got {values}")
    out = tuple(int(v) for v in values)
    if any(float(v) != o for v, o in zip(values, out)) or (positive and min(out) <= 0):
        raise ValueError(f"{what} must be {'positive ' if positive else ''}integers, got {list(values)}")
    return out  # type: ignore[return-value]


def create_volume(
    container: str | os.PathLike,
    dataset: str,
    shape: Sequence[int],
    dtype: np.dtype | str,
    chunks: Sequence[int],
    voxel_size: Sequence[float],
    offset: Sequence[float] = (0, 0, 0),
    *,
    overwrite: bool = False,
    units: str = "nm",
    attrs: dict | None = None,
):
    """A new zarr array ``container:dataset`` of ``shape`` (``(Z, Y, X)`` or ``(C, Z, Y, X)``),
    filled with zeros, chunked by ``chunks`` (spatial, a channel axis is one chunk).

    Raises :class:`~neurotut.io.OutputExistsError` when the dataset exists and not ``overwrite``
    (other datasets of the container are kept either way).
    """
    import zarr

    shape = tuple(int(n) for n in shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"a volume is (Z, Y, X) or (C, Z, Y, X), got shape {shape}")
    vs, off = _three(voxel_size, "voxel_size", True), _three(offset, "offset", False)
    if any(o % v for o, v in zip(off, vs)):
        raise ValueError(f"offset {off} must be a multiple of the voxel size {vs}")
    spatial = _three(chunks, "chunks", True)
    group = zarr.open_group(str(container), mode="a")
    if dataset in group:
        if not overwrite:
            raise OutputExistsError(f"{container}:{dataset} already exists; nothing was written "
                                    "(pass overwrite=True / --overwrite to replace it)")
        del group[dataset]
    full_chunks = ((shape[0],) if len(shape) == 4 else ()) + tuple(min(c, n) for c, n in zip(spatial, shape[-3:]))
    arr = group.create_array(dataset, shape=shape, chunks=full_chunks, dtype=dtype, fill_value=0,
                             config=ZARR_CONFIG)
    names = (["c^"] if len(shape) == 4 else []) + ["z", "y", "x"]
    arr.attrs.update({"voxel_size": list(vs), "offset": list(off), "axis_names": names,
                      "units": [units] * 3, **(attrs or {})})
    return arr


def open_volume(container: str | os.PathLike, dataset: str, mode: str = "r"):
    """Open ``container:dataset`` (mode ``"r"`` or ``"r+"``); FileNotFoundError naming what is
    missing, ValueError when it lacks a voxel size."""
    import zarr

    if not Path(container).exists():
        raise FileNotFoundError(f"no zarr container {container}")
    try:
        arr = zarr.open_array(str(container), path=dataset, mode=mode, config=ZARR_CONFIG)
    except (FileNotFoundError, KeyError, zarr.errors.NodeTypeValidationError) as exc:
        raise FileNotFoundError(f"{container} has no array {dataset!r} ({type(exc).__name__})") from None
    arr = arr.with_config(ZARR_CONFIG)  # open_array does not apply ``config`` to an existing array
    if "voxel_size" not in arr.attrs:
        raise ValueError(f"{container}:{dataset} has no 'voxel_size' attribute; write one, e.g. "
                         "arr.attrs['voxel_size'] = [30, 6, 6]")
    return arr


def voxel_size(arr) -> tuple[int, int, int]:
    """The ``(z, y, x)`` voxel size of an array opened by :func:`open_volume`."""
    return tuple(int(v) for v in arr.attrs["voxel_size"])  # type: ignore[return-value]


def offset(arr) -> tuple[int, int, int]:
    """The ``(z, y, x)`` world offset of an array opened by :func:`open_volume`."""
    return tuple(int(v) for v in arr.attrs.get("offset", (0, 0, 0)))  # type: ignore[return-value]


def check_same_grid(a, b, a_name: str, b_name: str) -> None:
    """ValueError unless the two volumes share voxel size, offset and spatial shape."""
    if voxel_size(a) != voxel_size(b):
        raise ValueError(f"voxel sizes differ: {a_name} has {voxel_size(a)}, {b_name} "
                         f"{voxel_size(b)}; resample one of them first")
    if offset(a) != offset(b) or tuple(a.shape[-3:]) != tuple(b.shape[-3:]):
        raise ValueError(f"{a_name} (offset {offset(a)}, shape {a.shape[-3:]}) and {b_name} "
                         f"(offset {offset(b)}, shape {b.shape[-3:]}) cover different regions")


def _chunk_range(sl: slice, chunk: int) -> range:
    return range(sl.start // chunk, (sl.stop - 1) // chunk + 1)


def missing_chunks(arr, region: Sequence[slice]) -> list[tuple[int, ...]]:
    """The grid coordinates of the chunks overlapping ``region`` (spatial slices with explicit
    start and stop) that are absent from the store."""
    import itertools

    from zarr.core.sync import sync

    chunks = arr.chunks[-3:]
    lead = (0,) * (arr.ndim - 3)
    prefix = f"{arr.path}/" if arr.path else ""
    absent = []
    for coords in itertools.product(*(_chunk_range(s, c) for s, c in zip(region, chunks))):
        key = prefix + arr.metadata.encode_chunk_key(lead + coords)
        if not sync(arr.store.exists(key)):
            absent.append(lead + coords)
    return absent


def read_region(arr, region: Sequence[slice], where: str = "") -> np.ndarray:
    """``arr[..., region]`` after checking that every chunk it touches was written
    (:class:`MissingChunkError` otherwise). ``region`` is three spatial slices with starts and
    stops inside the array."""
    region = tuple(region)
    absent = missing_chunks(arr, region)
    if absent:
        name = where or str(arr.store_path)
        raise MissingChunkError(f"{name}: {len(absent)} chunk(s) missing in region "
                                f"{[(s.start, s.stop) for s in region]}, first at chunk grid "
                                f"position {absent[0]}; it was never written (an unfinished run?)")
    return arr[(Ellipsis,) + region]


def write_region(arr, region: Sequence[slice], data: np.ndarray, where: str = "") -> None:
    """``arr[..., region] = data``, a full disk reported as one clear OSError."""
    try:
        arr[(Ellipsis,) + tuple(region)] = data
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device writing {where or arr.store_path}; "
                          "free some space and rerun with --resume (finished blocks are kept)") from None
        raise


def remove_container(container: str | os.PathLike) -> None:
    """Delete a whole zarr container (for ``overwrite``)."""
    path = Path(container)
    if path.is_dir():
        shutil.rmtree(path)


def h5_to_zarr(
    source: str | os.PathLike,
    target: str | os.PathLike,
    voxel_size: Sequence[float] | None = None,
    offset: Sequence[float] = (0, 0, 0),
    chunks: Sequence[int] = (16, 128, 128),
    overwrite: bool = False,
):
    """Copy the HDF5 dataset ``source`` (``file.h5:dataset``, ``(Z, Y, X)`` or ``(C, Z, Y, X)``)
    into the zarr volume ``target`` (``out.zarr:dataset``, default: the same dataset name),
    ``chunks[0]`` sections at a time, so the volume never has to fit in memory.

    The voxel size is the argument, else the HDF5 dataset's ``voxel_size`` or ``resolution``
    attribute; without either a ValueError asks for it. Returns the new zarr array.
    """
    src = parse_volume_spec(source)
    container, dataset = parse_zarr_spec(target, default_dataset=src.dataset)
    with open_h5(src.path) as f:
        dset = get_dataset(f, src.dataset)
        check_dataset(dset, src)
        if dset.ndim not in (3, 4):
            raise ValueError(f"{src} has shape {dset.shape}; a volume is (Z, Y, X) or (C, Z, Y, X)")
        if voxel_size is None:
            voxel_size = dset.attrs.get("voxel_size", dset.attrs.get("resolution"))
            if voxel_size is None:
                raise ValueError(f"{src} has no voxel_size attribute: give the voxel size "
                                 "(--voxel-size Z Y X, e.g. 30 6 6 nm for SNEMI3D)")
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dset.attrs.items()
                 if k not in ("voxel_size", "resolution", "offset") and isinstance(v, (np.ndarray, str, int, float))}
        arr = create_volume(container, dataset, dset.shape, dset.dtype, chunks, list(voxel_size),
                            offset, overwrite=overwrite, attrs={"source": str(src), **attrs})
        step = arr.chunks[-3]
        for z in range(0, dset.shape[-3], step):
            sl = (slice(z, min(z + step, dset.shape[-3])), slice(0, dset.shape[-2]), slice(0, dset.shape[-1]))
            write_region(arr, sl, dset[(Ellipsis,) + sl], where=f"{container}:{dataset}")
    return arr


def h5_to_zarr_command(args) -> int:
    """``neurotut data h5-to-zarr SOURCE TARGET``."""
    arr = h5_to_zarr(args.source, args.target, voxel_size=args.voxel_size, offset=args.offset,
                     chunks=args.chunks, overwrite=args.overwrite)
    print(f"wrote {args.target}: {arr.shape} {arr.dtype}, chunks {arr.chunks}, voxel size "
          f"{arr.attrs['voxel_size']}")
    return 0
