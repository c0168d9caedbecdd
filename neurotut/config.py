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


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        dataset="snemi3d-crop",
        data_crop=None,
        synthetic_shape=(40, 256, 256),
    ),
    "full": Profile(
        name="full",
        dataset="snemi3d",
        data_crop=None,
        synthetic_shape=(100, 512, 512),
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

