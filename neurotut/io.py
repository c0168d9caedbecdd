"""Reading and writing volumes safely.

* ``path.h5:dataset`` and ``path.h5@dataset`` name a dataset inside an HDF5 file (the ``@`` form is
  the Windows-friendly one of ffn_windows); drive letters such as ``C:\\data\\img.h5:raw`` work.
* Every write goes to a temporary file in the destination folder and is renamed into place, so a
  crash never leaves a half-written file under the final name.
* An existing output is never replaced unless ``overwrite=True`` is passed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class OutputExistsError(FileExistsError):
    """An output already exists and ``overwrite`` was not asked for."""


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


def read_volume(spec: str | os.PathLike | VolumeSpec, default_dataset: str | None = None) -> np.ndarray:
    """Read a whole HDF5 dataset named by a volume spec into memory.

    Raises FileNotFoundError for a missing file and KeyError listing the datasets that do exist
    when the dataset is absent.
    """
    vs = spec if isinstance(spec, VolumeSpec) else parse_volume_spec(spec, default_dataset)
    if not vs.path.exists():
        raise FileNotFoundError(f"no such HDF5 file: {vs.path}")
    with h5py.File(vs.path, "r") as f:
        if vs.dataset not in f:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            raise KeyError(
                f"{vs.path} has no dataset {vs.dataset!r}; it holds {names or 'no datasets'}"
            )
        return f[vs.dataset][...]


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

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
) -> Path:
    """Write ``{name: array}`` to a new HDF5 file atomically (gzip, chunked by default).

    ``attrs`` go onto the file's root. Returns the final path.
    """
    with atomic_path(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, array in datasets.items():
                array = np.asarray(array)
                f.create_dataset(
                    name,
                    data=array,
                    chunks=chunks if array.ndim else None,
                    compression=compression if array.ndim else None,
                )
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    return Path(path)
