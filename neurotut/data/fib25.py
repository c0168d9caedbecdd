"""FlyEM's NeuroProof ``training_sample2``: a 250^3 FIB-SEM cube of the Drosophila medulla at 10 nm.

The volume google/ffn's inference example segments. The EM is 250 PNG sections
(``grayscale_maps/iso.2600.png ... iso.2849.png``, z = file order); the ground truth is
``groundtruth.h5.gz``, a gzip-compressed HDF5 file with ``stack`` (supervoxel ids) and
``transforms`` (rows ``(supervoxel, body)``): the bodies are the supervoxels mapped through the
table (:func:`bodies_from_transforms`).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from neurotut.data.download import fetch
from neurotut.data.registry import get_dataset
from neurotut.data.snemi3d import Volume
from neurotut.data.stacks import read_png_stack

DATASET = "fib25-training-sample2"
GROUNDTRUTH = "groundtruth.h5.gz"


def bodies_from_transforms(stack: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Map supervoxel ids to body ids: ``(Z, Y, X)`` ids >= 0 and ``(N, 2)`` rows -> ``(Z, Y, X) uint32``.

    A supervoxel absent from the table has no body and becomes 0 (unlabelled), as in gala's
    ``imio.apply_segmentation_map``, the FlyEM reader of this ``stack``/``transforms`` format.
    training_sample2's table lists every supervoxel of its stack, so there none is affected.
    """
    stack = np.asarray(stack)
    transforms = np.asarray(transforms)
    if not np.issubdtype(stack.dtype, np.integer) or not np.issubdtype(transforms.dtype, np.integer):
        raise TypeError(f"expected integer ids, got stack {stack.dtype} and transforms {transforms.dtype}")
    if transforms.ndim != 2 or transforms.shape[1] != 2:
        raise ValueError(f"transforms must be (N, 2) rows (supervoxel, body), got shape {transforms.shape}")
    if (stack.size and stack.min() < 0) or (transforms.size and transforms.min() < 0):
        raise ValueError("supervoxel and body ids must be >= 0")
    if transforms.size and transforms[:, 1].max() > np.iinfo(np.uint32).max:
        raise ValueError(f"body id {transforms[:, 1].max()} does not fit in uint32")
    supervoxels, first = np.unique(transforms[:, 0], return_index=True)
    bodies = transforms[first, 1].astype(np.uint32)
    repeated = np.ones(len(transforms), bool)
    repeated[first] = False
    conflict = bodies[np.searchsorted(supervoxels, transforms[repeated, 0])] != transforms[repeated, 1]
    if conflict.any():
        raise ValueError(f"supervoxel {transforms[repeated][conflict][0, 0]} is mapped to two bodies")
    out = np.zeros(stack.shape, np.uint32)
    if len(supervoxels):
        index = np.minimum(np.searchsorted(supervoxels, stack), len(supervoxels) - 1)
        listed = supervoxels[index] == stack
        out[listed] = bodies[index[listed]]
    return out


def read_groundtruth(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``stack (Z, Y, X) int32`` and ``transforms (N, 2) int64`` of ``groundtruth.h5.gz``.

    The file is decompressed in memory (63 MB for training_sample2); nothing is written.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        data = gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise ValueError(f"{path} is not a readable gzip file (corrupted or truncated?): {exc}") from None
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            missing = [key for key in ("stack", "transforms") if key not in f]
            if missing:
                raise ValueError(f"{path} holds no {' or '.join(missing)}: not a NeuroProof ground truth")
            return f["stack"][()], f["transforms"][()]
    except OSError as exc:  # h5py: not an HDF5 file
        raise ValueError(f"{path} does not hold a readable HDF5 file: {exc}") from None


def load_training_sample2(base_url: str | None = None, progress: bool = True) -> Volume:
    """training_sample2 as a :class:`Volume`, fetched into the cache if needed.

    raw ``(250, 250, 250) uint8`` (z = PNG file order), labels ``(250, 250, 250) uint32`` ground-truth
    bodies (525 non-zero bodies; 0 covers 250 voxels), voxel size ``(10, 10, 10)`` nm.
    """
    dataset = get_dataset(DATASET)
    paths = fetch(DATASET, base_url=base_url, progress=progress)
    images = [p for p, f in zip(paths, dataset.files) if f.name.startswith("grayscale_maps/")]
    (groundtruth,) = [p for p, f in zip(paths, dataset.files) if f.name == GROUNDTRUTH]
    raw = read_png_stack(images, kind="raw")
    if raw.dtype != np.uint8:
        raise TypeError(f"expected 8-bit EM sections in {DATASET}, found {raw.dtype}")
    stack, transforms = read_groundtruth(groundtruth)
    if stack.shape != raw.shape:
        raise ValueError(f"{groundtruth}: ground truth {stack.shape} does not match the EM {raw.shape}")
    labels = bodies_from_transforms(stack, transforms)
    return Volume(raw, labels, dataset.voxel_size, DATASET, dataset.attribution)
