"""SNEMI3D loaders and the volume every chapter starts from.

Each loader returns ``(raw, labels, voxel_size)``: raw ``(Z, Y, X) uint8``, labels
``(Z, Y, X) uint32`` (0 = unlabelled), voxel size ``(z, y, x)`` in nm.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotut import config
from neurotut.data.download import dataset_dir, fetch
from neurotut.data.registry import get_dataset
from neurotut.data.stacks import read_png_stack, read_tiff_stack
from neurotut.data.synthetic import make_synthetic

REQUIRE_REAL_ENV = "NEUROTUT_REQUIRE_REAL_DATA"

Loaded = tuple[np.ndarray, np.ndarray, tuple[float, float, float]]


def load_snemi3d_crop(base_url: str | None = None, progress: bool = True) -> Loaded:
    """The 100 x 512 x 512 SNEMI3D crop of urakubo/ffn_windows, fetched into the cache if needed."""
    dataset = get_dataset("snemi3d-crop")
    paths = fetch(dataset.name, base_url=base_url, progress=progress)
    images = [p for p, f in zip(paths, dataset.files) if f.name.startswith("images/")]
    segments = [p for p, f in zip(paths, dataset.files) if f.name.startswith("segment/")]
    raw = read_png_stack(images, kind="raw")
    labels = read_png_stack(segments, kind="labels")
    if raw.dtype != np.uint8:
        raise TypeError(f"expected 8-bit EM images in the SNEMI3D crop, found {raw.dtype}")
    return raw, labels, dataset.voxel_size


def _snemi3d_folder(base_url: str | None, progress: bool) -> Path:
    (archive,) = fetch("snemi3d", base_url=base_url, progress=progress)
    folder = dataset_dir("snemi3d") / "unpacked"
    marker = folder / ".complete"
    if not marker.exists():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)
        marker.touch()
    return folder


def _find(folder: Path, name: str) -> Path:
    hits = sorted(folder.rglob(name))
    if not hits:
        raise FileNotFoundError(f"{name} not found in the unpacked SNEMI3D archive at {folder}")
    return hits[0]


def load_snemi3d(split: str = "train", base_url: str | None = None, progress: bool = True) -> Loaded:
    """The official SNEMI3D volume (100 x 1024 x 1024) from Zenodo record 7142003.

    ``split="train"`` returns the training input and labels; ``split="test"`` returns the test
    input with all-zero labels: the challenge never released the test labels.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = _snemi3d_folder(base_url, progress)
    raw = read_tiff_stack(_find(folder, f"{split}-input.tif"), kind="raw")
    if split == "train":
        labels = read_tiff_stack(_find(folder, "train-labels.tif"), kind="labels")
    else:
        labels = np.zeros(raw.shape, np.uint32)
    return raw.astype(np.uint8), labels, get_dataset("snemi3d").voxel_size


@dataclass
class Volume:
    """An EM volume with its labels and where it came from."""

    raw: np.ndarray  # (Z, Y, X) uint8
    labels: np.ndarray  # (Z, Y, X) uint32, 0 = unlabelled
    voxel_size: tuple[float, float, float]  # (z, y, x) nm
    name: str  # a registry name ("snemi3d-crop", "fib25-training-sample2", ...) or "synthetic"
    attribution: str

    @property
    def is_real(self) -> bool:
        return self.name != "synthetic"


LOADERS = {"snemi3d-crop": load_snemi3d_crop, "snemi3d": load_snemi3d}


def load_tutorial_volume(profile: config.Profile | None = None, verbose: bool = True) -> Volume:
    """The volume the chapters use: the profile's real dataset when it can be had, else synthetic.

    The real data comes from the cache, or is downloaded. If that fails (no internet), the
    synthetic volume of :func:`make_synthetic` is returned and a message says so, unless
    ``$NEUROTUT_REQUIRE_REAL_DATA=1``, in which case the error is raised (CI uses this).
    """
    profile = profile or config.get_profile()
    order = [profile.dataset] + (["snemi3d-crop"] if profile.dataset != "snemi3d-crop" else [])
    errors = []
    for name in order:
        try:
            raw, labels, voxel_size = LOADERS[name](progress=verbose)
        except (OSError, ValueError) as exc:
            errors.append(f"{name}: {exc}")
            if os.environ.get(REQUIRE_REAL_ENV) == "1":
                raise
            continue
        if profile.data_crop is not None:
            crop = tuple(slice(0, s) for s in profile.data_crop)
            raw, labels = raw[crop], labels[crop]
        volume = Volume(raw, labels, voxel_size, name, get_dataset(name).attribution)
        if verbose:
            print(f"Using real data: {name} {raw.shape} (z, y, x) at {voxel_size} nm. {volume.attribution}")
        return volume
    raw, labels, voxel_size = make_synthetic(profile.synthetic_shape, seed=0)
    if verbose:
        print(
            "Real SNEMI3D data could not be loaded (" + "; ".join(errors) + "). Using the synthetic "
            f"SNEMI3D-like volume {raw.shape} instead; numbers will differ from the real data."
        )
    return Volume(raw, labels, voxel_size, "synthetic", "synthetic volume generated by neurotut")


def train_val_split(array: np.ndarray, fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Split along z: the first ``fraction`` of the slices for training, the rest for validation.

    Returns views ``(array[:k], array[k:])`` with ``k = round(fraction * Z)``; both parts are
    non-empty. The DeepEM/PyTC SNEMI3D split is ``fraction=0.8`` (80 / 20 slices).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    z = array.shape[0]
    k = int(round(fraction * z))
    if k < 1 or k >= z:
        raise ValueError(f"cannot split {z} slices at fraction {fraction}: one part would be empty")
    return array[:k], array[k:]
