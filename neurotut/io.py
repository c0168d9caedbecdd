"""Reading and writing volumes safely.

* ``path.h5:dataset`` and ``path.h5@dataset`` name a dataset inside an HDF5 file (the ``@`` form is
  the Windows-friendly one of ffn_windows); drive letters such as ``C:\\data\\img.h5:raw`` work.
* Every write goes to a temporary file in the destination folder and is renamed into place, so a
  crash never leaves a half-written file under the final name.
* An existing output is never replaced unless ``overwrite=True`` is passed.
* :func:`add_datasets` puts datasets into an existing HDF5 file without opening that file for
  writing: it writes a new file holding the old objects plus the new datasets and renames it over
  the old one, so a crash at any moment leaves either the old file or the new one, never a
  damaged mix (HDF5 itself has no journal: writing into a file in place can corrupt it).
* :func:`load_torch_checkpoint` reads a PyTorch file with ``weights_only=True`` and reports a
  damaged one as :class:`CorruptCheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class OutputExistsError(FileExistsError):
    """An output already exists and ``overwrite`` was not asked for."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (truncated, damaged, or not PyTorch's)."""


@dataclass(frozen=True)
class VolumeSpec:
    """A dataset inside an HDF5 file."""

    path: Path
    dataset: str

    def __str__(self) -> str:
        return f"{self.path}:{self.dataset}"


def parse_volume_spec(spec: str | os.PathLike, default_dataset: str | None = None) -> VolumeSpec:
    """Split ``"file.h5:dataset"`` or ``"file.h5@dataset"`` into path and dataset.

    The separator is the last ``@`` or ``:`` after the file suffix, so ``C:\\x\\a.h5:raw`` and
    ``/data/a.h5@group/raw`` both parse. Without a dataset, ``default_dataset`` is used, or a
    ValueError says how to name one.
    """
    text = os.fspath(spec)
    lowered = text.lower()
    for suffix in H5_SUFFIXES:
        for sep in (":", "@"):
            idx = lowered.rfind(suffix + sep)
            if idx >= 0:
                cut = idx + len(suffix)
                dataset = text[cut + 1 :].strip("/")
                if not dataset:
                    break
                return VolumeSpec(Path(text[:cut]), dataset)
    if default_dataset is not None and lowered.endswith(H5_SUFFIXES):
        return VolumeSpec(Path(text.rstrip(":@")), default_dataset)
    raise ValueError(
        f"{text!r} does not name a dataset inside an HDF5 file; write it as 'file.h5:dataset' "
        "or 'file.h5@dataset' (for example 'images.h5:raw')"
    )


def open_h5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open an HDF5 file; a missing file raises FileNotFoundError and a file that is not HDF5 (or
    is damaged) an OSError naming it, instead of h5py's bare "file signature not found"."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such HDF5 file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an HDF5 file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise OSError(f"{path} is not a readable HDF5 file ({reason})") from None


def _dataset_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def get_dataset(f: h5py.File, name: str) -> h5py.Dataset:
    """``f[name]`` as a dataset; KeyError listing the datasets that do exist when it is absent."""
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        holds = _dataset_names(f) or "no datasets"
        if isinstance(obj, h5py.Group):
            raise KeyError(f"{f.filename}:{name} is a group, not a dataset; the file holds {holds}")
        raise KeyError(f"{f.filename} has no dataset {name!r}; it holds {holds}")
    return obj


#: the dtype families :func:`read_volume` can require
KINDS = {
    "integer": "integer labels (uint8/16/32/64 or int)",
    "float": "floats",
    "image": "uint8 or float images",
}


def _dtype_ok(dtype: np.dtype, kind: str) -> bool:
    if kind == "integer":
        return np.issubdtype(dtype, np.integer) or dtype == bool
    if kind == "float":
        return np.issubdtype(dtype, np.floating)
    if kind == "image":
        return dtype == np.uint8 or np.issubdtype(dtype, np.floating)
    raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")


def check_dataset(dset: h5py.Dataset, spec: object, ndim: int | None = None,
                  kind: str | None = None) -> None:
    """Raise ValueError (wrong number of dimensions) or TypeError (wrong dtype family) naming
    ``spec``, from the dataset's metadata only (nothing is read)."""
    if ndim is not None and dset.ndim != ndim:
        axes = {3: "(Z, Y, X)", 4: "(C, Z, Y, X)"}.get(ndim, f"{ndim} axes")
        raise ValueError(f"{spec} has shape {dset.shape}; expected {axes}")
    if kind is not None and not _dtype_ok(dset.dtype, kind):
        hint = " (0..255 values: divide by 255 first)" if kind == "float" and dset.dtype == np.uint8 else ""
        raise TypeError(f"{spec} holds {dset.dtype}; expected {KINDS[kind]}{hint}")


def read_volume(
    spec: str | os.PathLike | VolumeSpec,
    default_dataset: str | None = None,
    *,
    ndim: int | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Read a whole HDF5 dataset named by a volume spec into memory.

    Raises FileNotFoundError for a missing file, OSError for a file that is not HDF5, KeyError
    listing the datasets that do exist when the dataset is absent, and (checked before reading)
    ValueError when ``ndim`` is given and differs, TypeError when the dtype is not of ``kind``
    (``"integer"``, ``"float"`` or ``"image"``).
    """
    vs = spec if isinstance(spec, VolumeSpec) else parse_volume_spec(spec, default_dataset)
    with open_h5(vs.path) as f:
        dset = get_dataset(f, vs.dataset)
        check_dataset(dset, vs, ndim, kind)
        return dset[...]


def check_can_write(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Return ``path`` as a Path, raising :class:`OutputExistsError` if it exists and
    ``overwrite`` is False. Creates the parent folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; nothing was written. Choose another output path, delete the "
            "file, or pass overwrite=True (--overwrite on the command line) to replace it."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _new_file_mode() -> int:
    """The permissions ``open()`` would give a new file (``0o666`` less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success flush it to disk (fsync) and rename it
    to ``path``, with the permissions of the file it replaces (or of a new file).

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    final = check_can_write(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if final.exists() and not overwrite:  # appeared while we were writing
            raise OutputExistsError(f"{final} appeared while writing; kept it, discarded ours")
        os.chmod(tmp_path, final.stat().st_mode & 0o7777 if final.exists() else _new_file_mode())
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_h5(
    path: str | os.PathLike,
    datasets: dict[str, np.ndarray],
    attrs: dict[str, object] | None = None,
    overwrite: bool = False,
    chunks: tuple[int, ...] | bool | None = True,
    compression: str | None = "gzip",
    dataset_attrs: dict[str, dict[str, object]] | None = None,
) -> Path:
    """Write ``{name: array}`` to a new HDF5 file atomically (gzip, chunked by default).

    ``attrs`` go onto the file's root, ``dataset_attrs[name]`` onto dataset ``name``. Returns the
    final path. ``overwrite`` replaces the whole file; :func:`add_datasets` keeps its other
    datasets.
    """
    with atomic_path(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, array in datasets.items():
                array = np.asarray(array)
                ds = f.create_dataset(
                    name,
                    data=array,
                    chunks=chunks if array.ndim else None,
                    compression=compression if array.ndim else None,
                )
                for key, value in (dataset_attrs or {}).get(name, {}).items():
                    ds.attrs[key] = value
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    return Path(path)


# ------------------------------------------------------------------------------------------------
# adding datasets to an existing HDF5 file


def _refuse_existing(path: Path, name: str) -> OutputExistsError:
    return OutputExistsError(
        f"{path} already holds dataset {name!r}; nothing was written. Choose another dataset "
        "name, or pass overwrite=True (--overwrite on the command line) to replace that dataset "
        "only (the file's other datasets are kept)."
    )


def check_can_add(path: str | os.PathLike, names: Iterable[str], overwrite: bool = False) -> Path:
    """Check that the datasets ``names`` can be written into the HDF5 file ``path``: a missing
    file is fine; an existing one must be HDF5, and each name must be new unless ``overwrite``
    (a name that is a group, or lies below a dataset, is refused either way). Returns ``path``."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    with open_h5(path) as f:
        for name in names:
            name = name.strip("/")
            parts = name.split("/")
            for i in range(1, len(parts)):
                above = "/".join(parts[:i])
                if isinstance(f.get(above), h5py.Dataset):
                    raise ValueError(f"{path}:{name} cannot be written: {above!r} is a dataset")
            obj = f.get(name)
            if isinstance(obj, h5py.Group):
                raise ValueError(f"{path}:{name} is a group; refusing to replace it by a dataset")
            if obj is not None and not overwrite:
                raise _refuse_existing(path, name)
    return path


def _copy_except(src: h5py.Group, dst: h5py.Group, skip: set[str]) -> None:
    """Copy the attributes and members of ``src`` into ``dst`` (HDF5 object copies: storage,
    chunks, compression and attributes kept), leaving out the objects whose path is in ``skip``."""
    for key in src.attrs:
        dst.attrs[key] = src.attrs[key]
    for name in src:
        link = src.get(name, getlink=True)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            dst[name] = link
            continue
        obj = src[name]
        if obj.name in skip:
            continue
        if isinstance(obj, h5py.Group) and any(p.startswith(obj.name + "/") for p in skip):
            _copy_except(obj, dst.create_group(name), skip)
        else:
            src.copy(obj, dst, name=name)


def add_datasets(
    path: str | os.PathLike,
    datasets: dict[str, np.ndarray],
    attrs: dict[str, dict[str, object]] | None = None,
    overwrite: bool = False,
    chunks: tuple[int, ...] | bool | None = True,
    compression: str | None = "gzip",
) -> Path:
    """Write ``{name: array}`` into the HDF5 file ``path``, new or existing, keeping its other
    objects.

    An existing dataset of the same name is refused (:class:`OutputExistsError`) unless
    ``overwrite``, which replaces that dataset only. ``attrs`` maps a dataset name to the
    attributes to put on that dataset.

    Safety: the existing file is only read. A new file is written beside it (the old objects
    copied, the new datasets added), flushed to disk and renamed over the old one, so a crash
    leaves the old file intact; the disk needs room for a second copy while this runs. If the
    file changes while this runs, nothing is replaced and :class:`OutputExistsError` is raised.
    """
    path = check_can_add(path, datasets, overwrite)
    names = {"/" + n.strip("/") for n in datasets}
    before = path.stat() if path.exists() else None
    with atomic_path(path, overwrite=before is not None) as tmp:
        with h5py.File(tmp, "w") as out:
            if before is not None:
                with open_h5(path) as old:
                    _copy_except(old, out, names)
            for name, array in datasets.items():
                array = np.asarray(array)
                ds = out.create_dataset(
                    name.strip("/"),
                    data=array,
                    chunks=chunks if array.ndim else None,
                    compression=compression if array.ndim else None,
                )
                for key, value in (attrs or {}).get(name, {}).items():
                    ds.attrs[key] = value
        now = path.stat() if path.exists() else None
        if (before is None) != (now is None) or (
            before is not None and (before.st_mtime_ns, before.st_size, before.st_ino)
            != (now.st_mtime_ns, now.st_size, now.st_ino)
        ):
            raise OutputExistsError(f"{path} changed while writing; kept it, discarded ours")
    return path


# ------------------------------------------------------------------------------------------------
# checkpoints


def load_torch_checkpoint(path: str | os.PathLike, map_location="cpu", what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` (no code runs from the file) with clear errors:
    FileNotFoundError for a missing file and :class:`CorruptCheckpointError` naming the file when
    it cannot be read (truncated, damaged, not a PyTorch file: torch then raises anything from
    EOFError to IndexError)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt data surfaces as many exception types
        if "Unsupported global" in str(exc):  # a valid pickle of arbitrary Python objects
            reason = ("it holds Python objects other than tensors, which weights_only=True "
                      "refuses to load")
        else:
            reason = (f"the file is truncated, damaged or not a PyTorch checkpoint (torch.load "
                      f"raised {type(exc).__name__})")
        raise CorruptCheckpointError(
            f"cannot read the {what} {path}: {reason}; use another copy or train again"
        ) from exc
