"""Run-time configuration: profile, device, seeds and the data directory.

One switch, ``NEUROTUT_PROFILE=quick|full``, chooses the sizes every chapter uses; the code path is
the same in both. ``quick`` runs on a CPU in minutes (what CI and the book build run); ``full`` is
the real SNEMI3D scale on a GPU. Without the variable, ``full`` is chosen only when CUDA is present.

All sizes live in :data:`PROFILES`, nowhere else. Nothing here is global state except what the
environment says; functions read it when called.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROFILE_ENV = "NEUROTUT_PROFILE"
DATA_DIR_ENV = "NEUROTUT_DATA_DIR"
DEVICE_ENV = "NEUROTUT_DEVICE"


@dataclass(frozen=True)
class Profile:
    """Sizes for one profile. Every chapter reads its sizes from here.

    Shapes are (Z, Y, X) in voxels.
    """

    name: str
    #: dataset the chapters use: the 100 x 512 x 512 crop or the official 100 x 1024 x 1024 volume
    dataset: str
    #: crop of the volume the data chapter analyses (None: all of it)
    data_crop: tuple[int, int, int] | None
    #: shape of the synthetic fallback volume when no real data is available
    synthetic_shape: tuple[int, int, int]
    #: fraction of z slices used for training (the rest is validation)
    train_fraction: float = 0.8
    #: chapter 2 (affinity graphs): (Z, Y, X) crop of the tutorial volume that is turned into
    #: affinities, degraded and agglomerated with waterz (None: the whole volume)
    affinity_crop: tuple[int, int, int] | None = (40, 256, 256)
    #: agglomeration thresholds swept with waterz (one pass visits them all), ascending
    agglomeration_thresholds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    #: chapter 3 (RevNet): (Z, Y, X) EM patch pushed through the reversible blocks
    revnet_patch: tuple[int, int, int] = (8, 64, 64)
    #: chapter 3: channels of the reversible stream (F and G each act on half of them)
    revnet_channels: int = 16
    #: chapter 3: numbers of blocks for the error-vs-depth and memory-vs-depth curves (ascending)
    revnet_depths: tuple[int, ...] = (1, 2, 4, 8, 16)
    #: chapter 3: Adam steps that train the blocks before the second invertibility check
    revnet_train_steps: int = 40
    #: chapter 7 (FFN preprocessing): local object mask radius (z, y, x) in voxels for
    #: compute_partitions (the seed workflow used 24,24,24 on SNEMI3D)
    ffn_lom_radius: tuple[int, int, int] = (24, 24, 24)
    #: chapter 7: voxels (z, y, x) left out at every border before sampling centres (--margin)
    ffn_margin: tuple[int, int, int] = (24, 24, 24)
    #: chapter 7: balanced centres drawn to show what the sampler does
    ffn_sample_count: int = 100_000


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        dataset="snemi3d-crop",
        data_crop=None,
        synthetic_shape=(40, 256, 256),
        # chapter 2: 40 x 256 x 256 voxels keep each waterz sweep to a few seconds on 2 cores
        affinity_crop=(40, 256, 256),
        agglomeration_thresholds=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        # chapter 3: a 16-channel stream on 8 x 64 x 64 voxels, up to 16 blocks, in seconds on a CPU
        revnet_patch=(8, 64, 64),
        revnet_channels=16,
        revnet_depths=(1, 2, 4, 8, 16),
        revnet_train_steps=40,
        # chapter 7: the seed's radius and margin on the real crop (seconds on a CPU)
        ffn_lom_radius=(24, 24, 24),
        ffn_margin=(24, 24, 24),
        ffn_sample_count=100_000,
    ),
    "full": Profile(
        name="full",
        dataset="snemi3d",
        data_crop=None,
        synthetic_shape=(100, 512, 512),
        # chapter 2: the whole volume, thresholds every 0.05
        affinity_crop=None,
        agglomeration_thresholds=tuple(round(0.05 * i, 2) for i in range(1, 20)),
        # chapter 3: the Superhuman training patch (18 x 160 x 160) at 32 channels (the stack
        # invertibility check costs depth**2 block evaluations, in float64 too: keep 16 blocks)
        revnet_patch=(18, 160, 160),
        revnet_channels=32,
        revnet_depths=(1, 2, 4, 8, 16),
        revnet_train_steps=500,
        # chapter 7: the same radius and margin on the whole volume, more draws
        ffn_lom_radius=(24, 24, 24),
        ffn_margin=(24, 24, 24),
        ffn_sample_count=1_000_000,
    ),
}


def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def profile_name() -> str:
    """The active profile's name: ``$NEUROTUT_PROFILE``, else ``full`` with CUDA, else ``quick``."""
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if not value:
        return "full" if cuda_available() else "quick"
    if value not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={value!r} is not a profile; use one of {sorted(PROFILES)}"
        )
    return value


def get_profile(name: str | None = None) -> Profile:
    """The :class:`Profile` called ``name``, or the active one when ``name`` is None."""
    name = profile_name() if name is None else name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; use one of {sorted(PROFILES)}") from None


def get_device(prefer: str | None = None, verbose: bool = True):
    """The torch device to compute on.

    ``prefer`` (or ``$NEUROTUT_DEVICE``) forces one, e.g. ``"cpu"`` or ``"cuda:1"``. Otherwise CUDA
    when available, else CPU; on CPU a message says what that means for run times.
    """
    import torch

    choice = prefer or os.environ.get(DEVICE_ENV)
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was asked for but CUDA is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if verbose:
        print(
            "neurotut: no CUDA device found, computing on the CPU. The quick profile is sized for "
            "this; the full profile would take days on a CPU."
        )
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a fresh NumPy generator.

    Library functions take explicit ``rng``/``seed`` arguments; this is for notebooks and scripts.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    except ImportError:  # pragma: no cover
        pass
    return np.random.default_rng(seed)


def data_dir() -> Path:
    """Where downloads and converted files live: ``$NEUROTUT_DATA_DIR`` or the user cache dir."""
    value = os.environ.get(DATA_DIR_ENV)
    if value:
        path = Path(value).expanduser()
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("neurotut"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe() -> str:
    """One line for the top of every chapter: versions, device and profile."""
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"neurotut profile: {profile_name()} | torch {torch.__version__} | CUDA device: {cuda} | "
        f"data dir: {data_dir()}"
    )

