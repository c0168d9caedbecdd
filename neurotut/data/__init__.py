"""Data: the dataset registry and downloads, stacks to HDF5, loaders, synthetic volumes.

The SNEMI3D loaders return ``(raw (Z, Y, X) uint8, labels (Z, Y, X) uint32, voxel size (z, y, x)
nm)``; :func:`load_training_sample2` returns a :class:`Volume`, :func:`load_google_result` google/ffn's
segmentation of that volume as an :class:`FFNResult`.
"""

from neurotut.data.download import ChecksumError, fetch, fetch_files, fill_cache, is_cached
from neurotut.data.fib25 import bodies_from_transforms, load_training_sample2, read_groundtruth
from neurotut.data.google_ffn import FFNResult, load_google_result, read_ffn_npz
from neurotut.data.registry import REGISTRY, Dataset, RemoteFile, get_dataset
from neurotut.data.snemi3d import (
    Volume,
    load_snemi3d,
    load_snemi3d_crop,
    load_tutorial_volume,
    train_val_split,
)
from neurotut.data.stacks import (
    mean_std,
    read_png_stack,
    read_stack,
    read_tiff_stack,
    stack_to_h5,
    write_png_stack,
)
from neurotut.data.synthetic import make_synthetic

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "Dataset",
    "FFNResult",
    "RemoteFile",
    "Volume",
    "bodies_from_transforms",
    "fetch",
    "fetch_files",
    "fill_cache",
    "get_dataset",
    "is_cached",
    "load_google_result",
    "load_snemi3d",
    "load_snemi3d_crop",
    "load_training_sample2",
    "load_tutorial_volume",
    "make_synthetic",
    "mean_std",
    "read_ffn_npz",
    "read_groundtruth",
    "read_png_stack",
    "read_stack",
    "read_tiff_stack",
    "stack_to_h5",
    "train_val_split",
    "write_png_stack",
]
