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
    #: chapters 4-6 (RSUNet): channels per scale, finest first (the paper: 28, 36, 48, 64, 80)
    unet_widths: tuple[int, ...] = (8, 12, 16, 24, 32)
    #: chapter 4: (Z, Y, X) training patch (y, x multiples of 16) and patches per Adam step
    unet_patch: tuple[int, int, int] = (8, 64, 64)
    unet_batch: int = 4
    #: chapter 4: Adam steps and learning rate of the training run
    unet_steps: int = 100
    unet_lr: float = 1e-2
    #: chapter 4: probability of each simulated defect per patch (misalignment, missing section,
    #: blur); the Superhuman recipe applies each with probability 0.7
    unet_defect_prob: float = 0.1
    #: chapter 4: steps between validations, number of fixed validation patches, and the
    #: (Z, Y, X) centre crop of the validation slices segmented for the validation ARAND
    unet_val_every: int = 20
    unet_val_patches: int = 4
    unet_val_crop: tuple[int, int, int] | None = (8, 256, 256)
    #: chapter 4: steps between checkpoints
    unet_checkpoint_every: int = 100
    #: chapter 6: (Z, Y, X) centre crop of the validation slices predicted and segmented (its
    #: threshold is tuned on the validation rows beside it, so it must leave some), the sliding
    #: window, and the training steps used when chapter 4's checkpoint is missing
    unet_segment_crop: tuple[int, int, int] = (20, 256, 256)
    unet_predict_window: tuple[int, int, int] = (20, 128, 128)
    unet_fallback_steps: int = 100
    #: chapter 6: variants averaged by test-time augmentation (1, 4, 8 or 16; Superhuman: 16)
    tta_variants: int = 16
    #: chapters 6 and 10: the pretrained RSUNet they segment with (a file of
    #: :mod:`neurotut.pretrained`); None: the network chapter 4 trained in this profile
    unet_pretrained: str | None = None
    #: chapter 5 (base vs reversible, Koyama et al.'s Table 1): depths n, Adam steps per model for
    #: the accuracy column, patch and batch of the memory/time/accuracy runs
    table1_depths: tuple[int, ...] = (1, 2, 3, 4)
    table1_steps: int = 20
    #: chapter 5: depths n of the reversible networks whose accuracy is measured (with base n=1)
    table1_train_depths: tuple[int, ...] = (1, 2)
    table1_patch: tuple[int, int, int] = (8, 64, 64)
    table1_batch: int = 2
    #: chapter 2 (affinity graphs): (Z, Y, X) crop of the tutorial volume that is turned into
    #: affinities, degraded and agglomerated with waterz (None: the whole volume)
    affinity_crop: tuple[int, int, int] | None = (40, 256, 256)
    #: agglomeration thresholds swept with waterz (one pass visits them all), ascending
    agglomeration_thresholds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    #: chapters 6 and 10: waterz scoring functions tried on the tuning block (the one with the
    #: lowest tuning ARAND is used): mean affinity (Superhuman) and the median (PyTC's aff50)
    agglomeration_scorings: tuple[str, ...] = ("mean", "quantile50")
    #: chapter 3 (RevNet): (Z, Y, X) EM patch pushed through the reversible blocks
    revnet_patch: tuple[int, int, int] = (8, 48, 48)
    #: chapter 3: channels of the reversible stream (F and G each act on half of them)
    revnet_channels: int = 16
    #: chapter 3: numbers of blocks for the error-vs-depth and memory-vs-depth curves (ascending)
    revnet_depths: tuple[int, ...] = (1, 2, 4, 8)
    #: chapter 3: Adam steps that train the blocks before the second invertibility check
    revnet_train_steps: int = 20
    #: chapter 7 (FFN preprocessing): local object mask radius (z, y, x) in voxels for
    #: compute_partitions (the ffn_windows workshop used 24,24,24 on SNEMI3D)
    ffn_lom_radius: tuple[int, int, int] = (24, 24, 24)
    #: chapter 7: voxels (z, y, x) left out at every border before sampling centres (--margin)
    ffn_margin: tuple[int, int, int] = (24, 24, 24)
    #: chapter 7: balanced centres drawn to show what the sampler does
    ffn_sample_count: int = 100_000
    #: chapter 8 (FFN training): ConvStack3D depth (the SNEMI3D model of the seed: 9)
    ffn_depth: int = 9
    #: chapter 8: field of view (z, y, x) in voxels (the ffn_windows workshop's 33,33,17 in x,y,z)
    ffn_fov_size: tuple[int, int, int] = (17, 33, 33)
    #: chapter 8: FOV move step (z, y, x) in voxels (the ffn_windows workshop's 8,8,4 in x,y,z)
    ffn_deltas: tuple[int, int, int] = (4, 8, 8)
    #: chapter 8: example streams per optimiser step (the original: 4)
    ffn_batch_size: int = 4
    #: chapter 8: optimiser ("sgd" or "adam") and learning rate (the original: sgd, 0.001)
    ffn_optimizer: str = "sgd"
    ffn_learning_rate: float = 1e-3
    #: chapter 8: optimiser steps of the chapter's training run
    ffn_train_steps: int = 10_000
    #: chapter 8: steps between training summaries (loss, precision, recall, F1)
    ffn_summary_every: int = 100
    #: chapter 8: fixed validation examples (balanced centres) scoring the chapter's network
    ffn_val_examples: int = 48
    #: chapter 8: fixed validation examples scoring each of the ffn_windows workshop's networks
    #: (2M, 4M, 7M steps; each example costs up to 27 FOV steps of the 17 x 33 x 33 network)
    ffn_workshop_val_examples: int = 32
    #: chapter 9 (FFN inference with the workshop's 7M network): (Z, Y, X) crop of the
    #: validation slices that is flood-filled (None: all of them)
    ffn_inference_crop: tuple[int, int, int] | None = None
    #: chapter 9: (z, y, x) corner of that crop inside the validation slices
    ffn_inference_offset: tuple[int, int, int] = (0, 0, 0)
    #: CPU threads torch uses after :func:`seed_everything` (None: torch's default). A fixed
    #: count makes two runs on one machine sum floating-point numbers in the same order.
    cpu_threads: int | None = None
    #: chapter 11 (reproducing google/ffn's FIB-25 example): budget in network steps for the
    #: published segments grown again; segments are taken in creation order while their
    #: published step counts fit in what is left (None: all 254 segments, 25,269 steps)
    google_ffn_object_steps: int | None = None
    #: chapter 11: how many of the seed points the original tried and rejected are tried again
    #: (None: all 263 of them)
    google_ffn_rejected_tries: int | None = None
    #: chapter 11: segment the whole 250^3 volume with segment_all (the original: 25,799 steps)
    google_ffn_whole_volume: bool = True


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        dataset="snemi3d-crop",
        data_crop=None,
        synthetic_shape=(40, 256, 256),
        # chapters 4-6: a narrow RSUNet (same layout) on 8 x 64 x 64 patches trains for about
        # three minutes on 2 CPU cores; batch 4 keeps PyTorch's CPU convolutions on their fast path.
        # 500 steps: on chapter 6's 20 x 256 x 256 block, 100-300 steps stayed at or above the
        # raw-image baseline's ARAND (0.28); at 500 steps two seeds scored 0.25 and 0.17
        unet_widths=(8, 12, 16, 24, 32),
        unet_patch=(8, 64, 64),
        unet_batch=4,
        unet_steps=500,
        # a large step and few defects: what learned fastest in 100 steps (lr 1e-3 was too slow)
        unet_lr=1e-2,
        unet_defect_prob=0.1,
        unet_val_every=50,
        unet_val_patches=4,
        unet_val_crop=(8, 256, 256),
        unet_checkpoint_every=100,
        unet_segment_crop=(20, 256, 256),
        unet_predict_window=(20, 128, 128),
        tta_variants=4,
        unet_fallback_steps=500,
        # trained on the CPU machines with the same code, sizes and sections (data/pretrained/)
        unet_pretrained="rsunet_quick_snemi3d_crop.pt",
        # chapter 5: twelve networks measured in seconds each; 20 steps only give the accuracy of
        # a barely trained network (the full profile trains properly)
        table1_depths=(1, 2, 3, 4),
        table1_steps=20,
        table1_train_depths=(1, 2),
        table1_patch=(8, 64, 64),
        table1_batch=2,
        # chapter 2: 40 x 256 x 256 voxels keep each waterz sweep to a few seconds on 2 cores
        affinity_crop=(40, 256, 256),
        agglomeration_thresholds=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        # chapter 3: a 16-channel stream on 8 x 48 x 48 voxels and up to 8 blocks keep the chapter
        # near a minute on 2 cores (a 3x3x3 conv step costs ~0.1 s per block there)
        revnet_patch=(8, 48, 48),
        revnet_channels=16,
        revnet_depths=(1, 2, 4, 8),
        revnet_train_steps=20,
        # chapter 7: the ffn_windows workshop's radius and margin on the real crop (seconds on a CPU)
        ffn_lom_radius=(24, 24, 24),
        ffn_margin=(24, 24, 24),
        ffn_sample_count=100_000,
        # chapter 8: a smaller network and FOV (same code) so that a CPU run of about a minute
        # learns something; Adam instead of the original's SGD because SGD needs ~1e6 steps
        ffn_depth=4,
        ffn_fov_size=(9, 17, 17),
        ffn_deltas=(2, 4, 4),
        ffn_batch_size=4,
        ffn_optimizer="adam",
        ffn_learning_rate=5e-4,
        ffn_train_steps=400,
        ffn_summary_every=40,
        # chapter 8: 48 examples of the small network take seconds; 32 examples of each workshop
        # network took 10-11 FOV steps each, 66-79 s per network on 2 busy cores (batches of 8)
        ffn_val_examples=48,
        ffn_workshop_val_examples=32,
        # chapter 9: the 7M network flood-fills these 20 sections plus 8 of context below them
        # in 1472 batch-1 steps, 186 s on 2 busy cores (0.13 s a step); alone, the 20 sections
        # take 268 steps but score far worse (the 17-section FOV cannot move in z)
        ffn_inference_crop=(20, 224, 224),
        ffn_inference_offset=(0, 32, 32),
        # the CI machines' two cores: the same number of threads in every build
        cpu_threads=2,
        # chapter 11: a depth-12 33^3 FFN step costs 0.2-0.5 s on 2 idle cores (1 s and more on
        # a loaded machine), so 300 published steps (28 segments, 1 to 59 steps each) and 8
        # rejected seeds (11 steps) keep the chapter near three minutes; the whole volume (25,799
        # steps, hours on a CPU) is left out
        google_ffn_object_steps=300,
        google_ffn_rejected_tries=8,
        google_ffn_whole_volume=False,
    ),
    "full": Profile(
        name="full",
        dataset="snemi3d",
        data_crop=None,
        synthetic_shape=(100, 512, 512),
        # chapters 4-6: the paper's network and patch (Lee et al. 2017) on one GPU
        unet_widths=(28, 36, 48, 64, 80),
        unet_patch=(18, 160, 160),
        unet_batch=1,
        unet_steps=100_000,
        unet_lr=1e-3,
        unet_defect_prob=0.5,
        unet_val_every=1000,
        unet_val_patches=16,
        unet_val_crop=(20, 512, 512),
        unet_checkpoint_every=5000,
        unet_segment_crop=(20, 512, 1024),
        unet_predict_window=(18, 160, 160),
        tta_variants=16,
        unet_fallback_steps=20_000,
        # chapter 5: Koyama et al.'s comparison, same budget for every network
        table1_depths=(1, 2, 3, 4),
        table1_steps=20_000,
        table1_train_depths=(1, 2, 3, 4),
        table1_patch=(18, 160, 160),
        table1_batch=1,
        # chapter 2: the whole volume, thresholds every 0.05
        affinity_crop=None,
        agglomeration_thresholds=tuple(round(0.05 * i, 2) for i in range(1, 20)),
        # chapter 3: the Superhuman training patch (18 x 160 x 160) at 32 channels, up to 16
        # blocks (the invertibility checks also run in float64, which is slow on most GPUs)
        revnet_patch=(18, 160, 160),
        revnet_channels=32,
        revnet_depths=(1, 2, 4, 8, 16),
        revnet_train_steps=500,
        # chapter 7: the same radius and margin on the whole volume, more draws
        ffn_lom_radius=(24, 24, 24),
        ffn_margin=(24, 24, 24),
        ffn_sample_count=1_000_000,
        # chapter 8: the ffn_windows workshop's SNEMI3D model and optimiser (SGD, lr 0.001, clipping 0.7) with
        # batch 16 on the GPU; 200k steps = 3.2M FOVs, the original's 800k steps at batch 4
        ffn_depth=9,
        ffn_fov_size=(17, 33, 33),
        ffn_deltas=(4, 8, 8),
        ffn_batch_size=16,
        ffn_optimizer="sgd",
        ffn_learning_rate=1e-3,
        ffn_train_steps=200_000,
        ffn_summary_every=2000,
        # chapter 8: more examples, for steadier numbers
        ffn_val_examples=500,
        ffn_workshop_val_examples=500,
        # chapter 9: all validation slices
        ffn_inference_crop=None,
        ffn_inference_offset=(0, 0, 0),
        # chapter 11: every published segment and rejected seed again, and the whole volume
        google_ffn_object_steps=None,
        google_ffn_rejected_tries=None,
        google_ffn_whole_volume=True,
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
    """Seed Python, NumPy and torch (CPU and CUDA), fix torch's CPU thread count to the active
    profile's ``cpu_threads`` and ask torch for deterministic algorithms where they exist; return a
    fresh NumPy generator. Two runs on one machine then compute the same numbers.

    Library functions take explicit ``rng``/``seed`` arguments; this is for notebooks and scripts.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        threads = get_profile().cpu_threads
        if threads:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot use {path} as the data folder ({exc.strerror}); set {DATA_DIR_ENV} to a "
            "writable folder"
        ) from None
    return path


def describe() -> str:
    """One line for the top of every chapter: versions, device and profile."""
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"neurotut profile: {profile_name()} | torch {torch.__version__} | CUDA device: {cuda} | "
        f"data dir: {data_dir()}"
    )

