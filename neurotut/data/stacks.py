"""Image stacks: PNG folders and multi-page TIFFs to arrays and HDF5, and their mean/std.

These are the ``png_to_h5`` and ``png_mean_std`` steps of the FFN workflow, for PNG and TIFF.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from tqdm.auto import tqdm

from neurotut.io import (
    VolumeSpec,
    add_datasets,
    atomic_path,
    check_can_add,
    check_can_write,
    get_dataset,
    open_h5,
    parse_volume_spec,
)

PNG_SUFFIXES = (".png",)
TIFF_SUFFIXES = (".tif", ".tiff")


def list_images(folder: str | os.PathLike, suffixes: Sequence[str] = PNG_SUFFIXES) -> list[Path]:
    """Image files of ``folder`` with one of ``suffixes``, sorted by name (0000.png, 0001.png...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not paths:
        raise FileNotFoundError(f"{folder} holds no {'/'.join(suffixes)} files")
    return paths


def _check_kind(array: np.ndarray, kind: str, origin: str) -> np.ndarray:
    if kind == "raw":
        if array.dtype not in (np.uint8, np.uint16):
            raise TypeError(
                f"{origin}: EM images must be 8- or 16-bit greyscale, found {array.dtype}"
            )
    elif kind == "labels":
        if not np.issubdtype(array.dtype, np.integer) or array.dtype == np.int8:
            raise TypeError(
                f"{origin}: a label image must hold integer ids (16-bit PNG or 32-bit TIFF), found "
                f"{array.dtype}; an 8-bit or colour image is probably a visualisation, not labels"
            )
        if np.issubdtype(array.dtype, np.signedinteger) and array.min() < 0:
            raise ValueError(f"{origin}: label ids must be >= 0")
    else:
        raise ValueError(f"kind must be 'raw' or 'labels', not {kind!r}")
    return array


def read_png_stack(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    kind: str = "raw",
    progress: bool = False,
) -> np.ndarray:
    """Read a folder of PNG slices (sorted by name) or a list of files into ``(Z, Y, X)``.

    ``kind`` is ``"raw"`` (uint8/uint16 greyscale) or ``"labels"`` (integer ids, returned as
    uint32). Every slice must be 2D and of the same shape; errors name the offending file.
    """
    paths = list_images(source) if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    if not paths:
        raise ValueError("no image files given")
    slices = []
    for path in tqdm(paths, desc=f"reading {kind}", unit="slice", disable=not progress):
        image = iio.imread(path)
        if image.ndim != 2:
            raise ValueError(
                f"{path} has shape {image.shape}; expected a 2D greyscale slice (Y, X). Convert "
                "colour images to greyscale (EM) or to integer ids (labels) first."
            )
        if slices and image.shape != slices[0].shape:
            raise ValueError(
                f"{path} has shape {image.shape} but {paths[0].name} has {slices[0].shape}; all "
                "slices of a stack must have the same size"
            )
        slices.append(_check_kind(image, kind, str(path)))
    stack = np.stack(slices)
    return stack.astype(np.uint32) if kind == "labels" else stack


def read_tiff_stack(path: str | os.PathLike, kind: str = "raw") -> np.ndarray:
    """Read a multi-page TIFF into ``(Z, Y, X)`` (labels returned as uint32)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such TIFF file: {path}")
    stack = tifffile.imread(path)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ValueError(f"{path} has shape {stack.shape}; expected pages of 2D greyscale (Z, Y, X)")
    _check_kind(stack, kind, str(path))
    return stack.astype(np.uint32) if kind == "labels" else stack


def read_stack(source: str | os.PathLike, kind: str = "raw", progress: bool = False) -> np.ndarray:
    """A PNG folder or a (multi-page) TIFF file as ``(Z, Y, X)``."""
    source = Path(source)
    if source.is_dir():
        return read_png_stack(source, kind, progress)
    if source.suffix.lower() in TIFF_SUFFIXES:
        return read_tiff_stack(source, kind)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist (expected a folder of PNG slices or a "
                                ".tif/.tiff file)")
    raise ValueError(f"{source}: expected a folder of PNG slices or a .tif/.tiff file")


def write_png_stack(
    volume: np.ndarray, folder: str | os.PathLike, overwrite: bool = False
) -> list[Path]:
    """Write ``(Z, Y, X)`` uint8/uint16 slices as ``0000.png, 0001.png, ...`` (atomically each).

    Refuses when any of those files exists, unless ``overwrite``.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or volume.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected (Z, Y, X) uint8 or uint16, got {volume.shape} {volume.dtype}")
    folder = Path(folder)
    paths = [folder / f"{z:04d}.png" for z in range(volume.shape[0])]
    for path in paths:  # check all before writing any
        check_can_write(path, overwrite)
    for path, image in zip(paths, volume):
        with atomic_path(path, overwrite) as tmp:
            iio.imwrite(tmp, image, extension=".png")
    return paths


def stack_to_h5(
    source: str | os.PathLike,
    output: str | os.PathLike | VolumeSpec,
    kind: str = "raw",
    overwrite: bool = False,
    chunks: tuple[int, int, int] = (16, 128, 128),
    progress: bool = True,
) -> VolumeSpec:
    """Convert a PNG folder or TIFF stack to an HDF5 dataset (gzip, chunked); ``png_to_h5``.

    ``output`` is ``"file.h5:dataset"`` (the dataset defaults to ``kind``: ``raw`` or
    ``labels``). The dataset is added to the file if the file exists, keeping its other datasets
    (see :func:`neurotut.io.add_datasets`: the old file is never written in place, so a crash
    cannot damage it); an existing dataset of that name is refused unless ``overwrite``, which
    replaces that dataset only. Returns the written spec.
    """
    spec = output if isinstance(output, VolumeSpec) else parse_volume_spec(output, default_dataset=kind)
    check_can_add(spec.path, [spec.dataset], overwrite)  # refuse before the (long) read, not after
    volume = read_stack(source, kind, progress)
    chunk_shape = tuple(min(c, s) for c, s in zip(chunks, volume.shape))
    add_datasets(spec.path, {spec.dataset: volume}, overwrite=overwrite, chunks=chunk_shape)
    return spec


def mean_std(volume: np.ndarray | str | os.PathLike | VolumeSpec, block: int = 8) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of a volume; ``png_mean_std``.

    ``volume`` is an array or an HDF5 spec (read ``block`` z-slices at a time, so a volume larger
    than memory works). Sums are accumulated in float64.
    """
    if isinstance(volume, np.ndarray):
        data = volume.astype(np.float64, copy=False)
        return float(data.mean()), float(data.std())
    spec = volume if isinstance(volume, VolumeSpec) else parse_volume_spec(volume, "raw")
    total = total_sq = 0.0
    count = 0
    with open_h5(spec.path) as f:
        dset = get_dataset(f, spec.dataset)
        if not (np.issubdtype(dset.dtype, np.number) and dset.ndim >= 1 and dset.size):
            raise ValueError(f"{spec} ({dset.dtype}, shape {dset.shape}) is not a numeric volume")
        for z in range(0, dset.shape[0], block):
            part = dset[z : z + block].astype(np.float64)
            total += part.sum()
            total_sq += np.square(part).sum()
            count += part.size
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean**2, 0.0)))
