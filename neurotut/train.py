"""Training an affinity network (RSUNet) on an EM volume with ground-truth labels.

One training step (``specs/superhuman_revnet.md`` A3):

1. draw ``batch_size`` random patches from the training volume (:class:`PatchSampler`): the
   labels come with enough context around the patch that every long-range edge inside the patch
   has both ends; image, labels and the valid mask are misaligned and flipped/transposed together,
   then the affinities are computed from the augmented labels and cropped to the patch; the image
   alone gets missing sections, blur and greyscale changes;
2. predict affinity logits and compute the class-rebalanced, masked binary cross-entropy
   (:func:`affinity_loss`);
3. one Adam step (mixed precision on CUDA only).

At intervals the loss on fixed validation patches and the adapted Rand error of a waterz
segmentation of a validation crop are recorded; scalars and images go to TensorBoard when the
``tensorboard`` package is installed; checkpoints hold the model, the optimizer, the step, the
configuration and every random state, so a resumed run continues exactly as an uninterrupted one
(bit for bit on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from neurotut import config as nt_config
from neurotut.affinity import SUPERHUMAN_OFFSETS, affinities, affinity_mask, check_offsets
from neurotut.augment import AugmentConfig, augment_image, flip_volume, misalign
from neurotut.inference import predict_volume, raw_to_input
from neurotut.io import OutputExistsError, atomic_path, load_torch_checkpoint
from neurotut.models.rsunet import RSUNet, RSUNetConfig

CHECKPOINT_FORMAT = "neurotut-rsunet-checkpoint/1"

# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (sizes come from :mod:`neurotut.config` profiles
    via :func:`train_config_for_profile`).

    Attributes:
        model: the network (``model.out_channels`` must equal ``len(offsets)``).
        patch: ``(z, y, x)`` training patch; y and x multiples of ``model.divisor``.
        batch_size: patches per step.
        steps: total optimiser steps of the run.
        lr, betas, eps: Adam.
        lr_decay_factor, lr_decay_steps: staircase decay, the learning rate of step ``s``
            (counted from 0) is ``lr * lr_decay_factor ** (s // lr_decay_steps)``; 0 steps: none.
        offsets: the affinity offsets predicted, one per output channel.
        augment: augmentation settings (:class:`neurotut.augment.AugmentConfig`).
        absent_class_weight: loss weight of both classes in a channel of a patch where one class
            is absent (1.0 as in the Superhuman sampler; 0 ignores such channels).
        seed: seeds the model initialisation, the patch sampling and the augmentations.
        val_every: steps between validations (0: only at the end).
        val_patches: fixed validation patches for the validation loss.
        val_crop: ``(z, y, x)`` centre crop of the validation volume segmented for the adapted
            Rand error (None: the whole validation volume; ``(0, 0, 0)``: no ARAND). It is
            predicted as one window when its y and x suit the network, else with ``patch``-sized
            blended windows.
        val_thresholds: waterz agglomeration thresholds; the best ARAND is recorded.
        checkpoint_every: steps between checkpoints (0: only at the end).
        log_every: steps between TensorBoard training-loss points.
        amp: mixed precision (bfloat16 where supported, else float16 with loss scaling), CUDA only.
        channels_last: channels-last 3D memory layout (faster convolutions on CPU and GPU).
        bn_calibration: batches of fixed, unaugmented training patches over which BatchNorm
            running statistics are recomputed exactly for evaluation (validation, the checkpoint's
            evaluation statistics, ``TrainResult.eval_model``); 0 uses the running averages.
            Running averages lag behind weights that change fast (large learning rates, short
            runs), which makes eval-mode predictions much worse than the network is.
    """

    model: RSUNetConfig = field(default_factory=RSUNetConfig)
    patch: tuple[int, int, int] = (18, 160, 160)
    batch_size: int = 1
    steps: int = 1000
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_decay_factor: float = 1.0
    lr_decay_steps: int = 0
    offsets: tuple[tuple[int, int, int], ...] = SUPERHUMAN_OFFSETS
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    absent_class_weight: float = 1.0
    seed: int = 0
    val_every: int = 100
    val_patches: int = 4
    val_crop: tuple[int, int, int] | None = None
    val_thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    checkpoint_every: int = 500
    log_every: int = 10
    amp: bool = True
    channels_last: bool = True
    bn_calibration: int = 8

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("patch", tuple(int(p) for p in self.patch))
        set_("offsets", check_offsets(self.offsets))
        set_("betas", tuple(float(b) for b in self.betas))
        set_("val_thresholds", tuple(float(t) for t in self.val_thresholds))
        if self.val_crop is not None:
            set_("val_crop", tuple(int(v) for v in self.val_crop))
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"patch must be (z, y, x) positive sizes, got {self.patch}")
        d = self.model.divisor
        if self.patch[1] % d or self.patch[2] % d:
            raise ValueError(
                f"patch y and x must be multiples of {d} for this network, got {self.patch}"
            )
        if self.model.out_channels != len(self.offsets):
            raise ValueError(
                f"the model predicts {self.model.out_channels} channels but {len(self.offsets)} "
                "offsets were given"
            )
        if self.batch_size < 1 or self.steps < 0 or self.lr <= 0:
            raise ValueError("need batch_size >= 1, steps >= 0 and lr > 0")
        if not 0 < self.lr_decay_factor <= 1 or self.lr_decay_steps < 0:
            raise ValueError("need 0 < lr_decay_factor <= 1 and lr_decay_steps >= 0")
        if min(self.val_every, self.checkpoint_every, self.val_patches, self.bn_calibration) < 0 or (
                self.log_every < 1):
            raise ValueError("intervals and counts must be >= 0 (log_every >= 1)")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        if not self.lr_decay_steps:
            return self.lr
        return self.lr * self.lr_decay_factor ** (step // self.lr_decay_steps)

    def to_dict(self) -> dict:
        """Plain (JSON) types only."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model"] = self.model.to_dict()
        d["augment"] = self.augment.to_dict()
        d["patch"] = list(self.patch)
        d["betas"] = list(self.betas)
        d["offsets"] = [list(o) for o in self.offsets]
        d["val_crop"] = None if self.val_crop is None else list(self.val_crop)
        d["val_thresholds"] = list(self.val_thresholds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown TrainConfig fields {sorted(set(d) - known)}")
        if "model" in d:
            d["model"] = RSUNetConfig.from_dict(d["model"])
        if "augment" in d:
            d["augment"] = AugmentConfig(**d["augment"])
        if "offsets" in d:
            d["offsets"] = tuple(tuple(o) for o in d["offsets"])
        return cls(**d)


def train_config_for_profile(profile: nt_config.Profile | None = None, **overrides) -> TrainConfig:
    """The training configuration of a profile (``quick``: minutes on a CPU; ``full``: the
    Superhuman setting on a GPU), with any field overridden by keyword, e.g. ``steps=10``;
    ``model`` may be given as a dict of :class:`RSUNetConfig` fields to override."""
    p = profile or nt_config.get_profile()
    model_over = overrides.pop("model", {}) or {}
    if isinstance(model_over, RSUNetConfig):
        model = model_over
    else:
        model = RSUNetConfig(**{"widths": tuple(p.unet_widths), **model_over})
    values = dict(
        model=model,
        patch=tuple(p.unet_patch),
        batch_size=p.unet_batch,
        steps=p.unet_steps,
        lr=p.unet_lr,
        val_every=p.unet_val_every,
        val_patches=p.unet_val_patches,
        val_crop=tuple(p.unet_val_crop) if p.unet_val_crop is not None else None,
        checkpoint_every=p.unet_checkpoint_every,
        augment=AugmentConfig(
            misalign_prob=p.unet_defect_prob, missing_prob=p.unet_defect_prob,
            blur_prob=p.unet_defect_prob,
        ),
    )
    values.update(overrides)
    return TrainConfig(**values)


# --------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One training example: ``raw`` (1, Z, Y, X) float32 in [0, 1], ``target`` (C, Z, Y, X)
    float32 affinities, ``mask`` (C, Z, Y, X) bool (edges with both ends inside the volume and
    valid), ``variant`` (flip/transpose 0..15) and ``info`` (what the augmentations did)."""

    raw: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    variant: int = 0
    info: dict = field(default_factory=dict)


def _crop_padded(volume: np.ndarray, start: Sequence[int], shape: Sequence[int], fill) -> np.ndarray:
    """``volume[start : start + shape]`` where parts outside the volume are ``fill``."""
    out = np.full(tuple(shape), fill, dtype=volume.dtype)
    src, dst = [], []
    for s, n, size in zip(start, shape, volume.shape):
        lo, hi = max(s, 0), min(s + n, size)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


class PatchSampler:
    """Random, augmented training patches from one volume.

    Args:
        raw: ``(Z, Y, X)`` uint8 (or float in [0, 1]) image.
        labels: ``(Z, Y, X)`` integer labels, 0 = boundary/unlabelled.
        patch: ``(z, y, x)`` patch size.
        offsets: affinity offsets (one target channel each).
        augment: augmentation settings, None for none.
        valid: optional ``(Z, Y, X)`` bool mask of trustworthy labels.
    """

    def __init__(
        self,
        raw: np.ndarray,
        labels: np.ndarray,
        patch: Sequence[int],
        offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
        augment: AugmentConfig | None = None,
        valid: np.ndarray | None = None,
    ):
        raw, labels = np.asarray(raw), np.asarray(labels)
        if raw.ndim != 3 or raw.shape != labels.shape:
            raise ValueError(f"raw {raw.shape} and labels {labels.shape} must be one (Z, Y, X) shape")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got {labels.dtype}")
        raw_to_input(raw[:1, :1, :1])  # dtype check with a clear message
        self.raw, self.labels = raw, labels
        self.valid = np.ones(raw.shape, bool) if valid is None else np.asarray(valid, bool)
        if self.valid.shape != raw.shape:
            raise ValueError(f"valid mask {self.valid.shape} does not match {raw.shape}")
        self.patch = tuple(int(p) for p in patch)
        self.offsets = check_offsets(offsets)
        self.augment = augment or AugmentConfig.none()
        self.margin = tuple(max(abs(o[a]) for o in self.offsets) for a in range(3))
        self.shift = self.augment.shift_margin
        need = (self.patch[0], self.patch[1] + 2 * self.shift, self.patch[2] + 2 * self.shift)
        if any(n < p for n, p in zip(raw.shape, need)):
            raise ValueError(
                f"volume {raw.shape} is too small for patches {self.patch}"
                + (f" with misalignment shifts of up to {self.shift} px" if self.shift else "")
            )

    def sample(self, rng: np.random.Generator, augment: bool = True) -> Sample:
        """A random patch; ``augment=False`` gives the plain patch (for validation)."""
        cfg = self.augment if augment else AugmentConfig.none()
        shift = self.shift
        p, m = self.patch, self.margin
        start = [int(rng.integers(lo, n - size - lo + 1)) for n, size, lo in
                 zip(self.raw.shape, p, (0, shift, shift))]
        # a block with the affinity margin on both sides (flips keep the patch centred) plus the
        # misalignment margin in y, x
        extra = (m[0], m[1] + shift, m[2] + shift)
        b_start = [s - e for s, e in zip(start, extra)]
        b_shape = [n + 2 * e for n, e in zip(p, extra)]
        raw = _crop_padded(self.raw, b_start, b_shape, 0)
        labels = _crop_padded(self.labels, b_start, b_shape, 0)
        valid = _crop_padded(self.valid, b_start, b_shape, False)
        info: dict = {"start": start}
        if shift:
            if cfg.misalign_prob and rng.random() < cfg.misalign_prob:
                (raw, labels, valid), info["misalign"] = misalign(
                    [raw, labels, valid], shift, rng, cfg.slip_prob
                )
            else:
                crop = (slice(None), slice(shift, shift + p[1] + 2 * m[1]),
                        slice(shift, shift + p[2] + 2 * m[2]))
                raw, labels, valid = raw[crop], labels[crop], valid[crop]
        variant = 0
        if cfg.flips:
            variant = int(rng.integers(0, 16 if labels.shape[1] == labels.shape[2] else 8))
            raw, labels, valid = (np.ascontiguousarray(flip_volume(a, variant)) for a in (raw, labels, valid))
        target = affinities(labels, self.offsets)
        mask = affinity_mask(labels.shape, self.offsets, valid)
        core = tuple(slice(mm, mm + n) for mm, n in zip(m, p))
        target, mask = target[(slice(None),) + core], mask[(slice(None),) + core]
        image = augment_image(raw_to_input(raw[core]), cfg, rng) if augment else raw_to_input(raw[core])
        return Sample(
            np.ascontiguousarray(image[None]), np.ascontiguousarray(target),
            np.ascontiguousarray(mask), variant, info,
        )


# --------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------


def class_balance_weights(target: Tensor, mask: Tensor, absent_class_weight: float = 1.0) -> Tensor:
    """Per-voxel loss weights ``(N, C, Z, Y, X)``: per patch and channel, with ``N+`` positive and
    ``N-`` negative valid edges, positives get ``N- / (N+ + N-)`` and negatives ``N+ / (N+ +
    N-)`` (each class carries half the weight); both get ``absent_class_weight`` when a class is
    absent; invalid edges get 0."""
    m = mask.to(torch.float32)
    pos = (target > 0.5).to(torch.float32) * m
    dims = tuple(range(2, target.dim()))
    n_valid = m.sum(dim=dims, keepdim=True)
    n_pos = pos.sum(dim=dims, keepdim=True)
    n_neg = n_valid - n_pos
    total = n_valid.clamp(min=1)
    absent = (n_pos == 0) | (n_neg == 0)
    w_pos = torch.where(absent, torch.full_like(n_pos, absent_class_weight), n_neg / total)
    w_neg = torch.where(absent, torch.full_like(n_pos, absent_class_weight), n_pos / total)
    return (pos * w_pos + (m - pos) * w_neg)


def affinity_loss(
    logits: Tensor, target: Tensor, mask: Tensor, absent_class_weight: float = 1.0
) -> Tensor:
    """Class-rebalanced binary cross-entropy with logits over the valid edges, divided by the
    number of valid edges. All ``(N, C, Z, Y, X)``; ``mask`` bool or 0/1."""
    if logits.shape != target.shape or target.shape != mask.shape:
        raise ValueError(f"shapes differ: {logits.shape}, {target.shape}, {mask.shape}")
    with torch.no_grad():
        w = class_balance_weights(target, mask, absent_class_weight)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (w * bce).sum() / mask.to(torch.float32).sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# BatchNorm statistics for evaluation
# --------------------------------------------------------------------------------------------


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(model: nn.Module, batches: Sequence[Tensor]) -> nn.Module:
    """A copy of ``model`` in eval mode whose BatchNorm running statistics are the exact averages
    over ``batches`` (each ``(N, C, Z, Y, X)``, run in train mode without gradients).

    The model itself is not changed. Without BatchNorm layers (or without batches) the copy is
    returned as it is.
    """
    clone = copy.deepcopy(model)
    norms = _batchnorms(clone)
    if norms and batches:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
        clone.train()
        with torch.no_grad():
            for x in batches:
                clone(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return clone.eval()


def _norm_buffers(model: nn.Module) -> dict[str, Tensor]:
    names = {id(m) for m in _batchnorms(model)}
    return {
        f"{mod_name}.{b_name}" if mod_name else b_name: buf.detach().clone()
        for mod_name, mod in model.named_modules() if id(mod) in names
        for b_name, buf in mod.named_buffers(recurse=False)
    }


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def _rng_state(rng: np.random.Generator) -> dict:
    state = {
        "numpy": json.dumps(rng.bit_generator.state),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> np.random.Generator:
    numpy_state = json.loads(state["numpy"])
    rng = np.random.default_rng()
    if numpy_state["bit_generator"] != type(rng.bit_generator).__name__:
        rng = np.random.Generator(getattr(np.random, numpy_state["bit_generator"])())
    rng.bit_generator.state = numpy_state
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    return rng


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`train` (``torch.load(weights_only=True)``: no code is
    executed from the file). Keys: format, step, config (:class:`TrainConfig`), model (the
    training state), eval_norm (BatchNorm statistics for evaluation, possibly empty), optimizer,
    scaler, rng, losses, history."""
    path = Path(path)
    ckpt = load_torch_checkpoint(path, map_location, what="training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a neurotut training checkpoint ({CHECKPOINT_FORMAT})")
    ckpt["config"] = TrainConfig.from_dict(json.loads(ckpt["config"]))
    ckpt["history"] = json.loads(ckpt["history"])
    return ckpt


def load_model(path: str | Path, device: str | torch.device | None = "cpu") -> tuple[RSUNet, TrainConfig]:
    """The trained network of a checkpoint, in eval mode with its evaluation BatchNorm statistics
    (see ``TrainConfig.bn_calibration``), and its training configuration."""
    device = torch.device(device or "cpu")
    ckpt = load_checkpoint(path, map_location=device)
    cfg: TrainConfig = ckpt["config"]
    model = RSUNet(replace(cfg.model, checkpointing=False)).to(device)
    if cfg.channels_last:  # the layout it was trained in: identical numbers
        model = model.to(memory_format=torch.channels_last_3d)
    model.load_state_dict(ckpt["model"])
    if ckpt.get("eval_norm"):
        model.load_state_dict(ckpt["eval_norm"], strict=False)
    model.eval()
    return model, cfg


def export_weights(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the evaluation part of a training checkpoint to ``out``: the weights, the evaluation
    BatchNorm statistics, the configuration, the step and the training history, without the
    optimizer, scaler and random states (a third of the size). :func:`load_model` reads it;
    :func:`train` refuses to resume from it."""
    ckpt = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    load_checkpoint(checkpoint)  # validates the format
    keep = {k: ckpt[k] for k in ("format", "step", "config", "model", "eval_norm", "losses", "history")}
    keep.update(optimizer={}, scaler={}, rng={})
    with atomic_path(out, overwrite=overwrite) as tmp:
        torch.save(keep, tmp)
    return Path(out)


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained network as it trains (train mode; its BatchNorm running averages).
        eval_model: a copy in eval mode with recalibrated BatchNorm statistics: use it to predict.
        config: the run's configuration.
        step: steps done.
        losses: training loss of every step, from step 1.
        history: one dict per validation: step, train_loss (mean since the previous record),
            val_loss, val_arand (best over the thresholds), val_threshold, seconds (wall time
            since the run started; not part of exact resumption).
        checkpoint: the last checkpoint written (None without ``out_dir``).
    """

    model: RSUNet
    eval_model: RSUNet
    config: TrainConfig
    step: int
    losses: list[float]
    history: list[dict]
    checkpoint: Path | None = None


def center_crop(shape: Sequence[int], crop: Sequence[int] | None) -> tuple[slice, ...]:
    """Slices of the centred ``crop`` (clipped to ``shape``) of a ``shape`` volume; None: all."""
    if crop is None:
        return tuple(slice(0, n) for n in shape)
    return tuple(
        slice(max(0, (n - c) // 2), max(0, (n - c) // 2) + min(n, c)) for n, c in zip(shape, crop)
    )


class _Logger:
    """TensorBoard scalars and images when ``tensorboard`` is installed, else nothing."""

    def __init__(self, log_dir: Path | None, purge_step: int | None):
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is optional
            print("neurotut: `pip install tensorboard` for TensorBoard logs; training goes on")
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and value is not None and np.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, np.clip(image, 0, 1)[None], step, dataformats="CHW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _batch(samples: list[Sample], device: torch.device, channels_last: bool):
    x = torch.from_numpy(np.stack([s.raw for s in samples])).to(device)
    t = torch.from_numpy(np.stack([s.target for s in samples])).to(device)
    m = torch.from_numpy(np.stack([s.mask for s in samples])).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x, t, m


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def validate(
    model: RSUNet,
    config: TrainConfig,
    val_samples: list[Sample],
    val_raw: np.ndarray | None,
    val_labels: np.ndarray | None,
    device: torch.device,
) -> dict:
    """Validation loss on fixed patches and best ARAND of a waterz segmentation of the
    validation crop (``val_crop``), with the model in eval mode. Returns a dict."""
    from neurotut.agglomerate import sweep

    was_training = model.training
    model.eval()
    out: dict = {"val_loss": None, "val_arand": None, "val_threshold": None}
    try:
        if val_samples:
            total = 0.0
            with torch.no_grad():
                for i in range(0, len(val_samples), config.batch_size):
                    x, t, m = _batch(val_samples[i : i + config.batch_size], device, config.channels_last)
                    with _autocast(device, config.amp):
                        logits = model(x)
                    total += float(affinity_loss(logits, t, m, config.absent_class_weight)) * len(x)
            out["val_loss"] = total / len(val_samples)
        if val_raw is not None and config.val_crop != (0, 0, 0):
            crop = center_crop(val_raw.shape, config.val_crop)
            raw, gt = val_raw[crop], val_labels[crop]
            d = config.model.divisor
            if raw.shape[1] % d == 0 and raw.shape[2] % d == 0:
                window = raw.shape  # one window: the crop at once
            else:
                window = (min(config.patch[0], raw.shape[0]),) + config.patch[1:]
            affs = predict_volume(model, raw, window, device=device, amp=config.amp, progress=False,
                                  batch_size=config.batch_size)
            scores = sweep(affs, gt, config.val_thresholds, config.offsets)
            best_t = min(scores, key=lambda t: scores[t].arand)
            out["val_arand"], out["val_threshold"] = float(scores[best_t].arand), float(best_t)
            out["_affs"], out["_raw"], out["_gt"] = affs, raw, gt
    finally:
        model.train(was_training)
    return out


def _check_resume_config(saved: TrainConfig, given: TrainConfig) -> None:
    a, b = saved.to_dict(), given.to_dict()
    differ = [k for k in a if k not in ("steps",) and a[k] != b[k]]
    if differ:
        raise ValueError(
            f"the checkpoint was trained with a different configuration ({', '.join(differ)} "
            "differ); resume with the same configuration (only `steps` may change)"
        )


def train(
    config: TrainConfig,
    train_raw: np.ndarray,
    train_labels: np.ndarray,
    val_raw: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train an RSUNet on ``train_raw``/``train_labels`` until ``config.steps`` steps are done.

    Args:
        config: the run (:class:`TrainConfig`).
        train_raw, train_labels: ``(Z, Y, X)`` uint8 image and integer labels.
        val_raw, val_labels: optional validation volume (validation loss and ARAND).
        out_dir: where checkpoints (``last.pt`` and ``step_0000100.pt`` ...), ``history.json``
            and TensorBoard logs (``tensorboard/``) go; None keeps nothing on disk.
        resume: a checkpoint path, or True for ``out_dir/last.pt``: continue that run (same
            configuration; ``config.steps`` may be larger). Without it, an ``out_dir`` that
            already holds a run is refused unless ``overwrite=True``.
        device: ``"cpu"``, ``"cuda"``...; None: CUDA when available.
        progress: tqdm bar.
        tensorboard: write TensorBoard logs into ``out_dir/tensorboard``.
        callback: called with each validation record (e.g. to draw live curves).
    """
    device = nt_config.get_device(device, verbose=False) if not isinstance(device, torch.device) else device
    out_path = Path(out_dir) if out_dir is not None else None
    ckpt = None
    if resume:
        resume_path = (out_path / "last.pt") if resume is True else Path(resume)
        if resume is True and out_path is None:
            raise ValueError("resume=True needs out_dir")
        ckpt = load_checkpoint(resume_path, map_location=device)
        if not ckpt.get("optimizer"):
            raise ValueError(f"{resume_path} holds exported weights only (no optimizer state); "
                             "it can be evaluated or fine-tuned from, not resumed")
        _check_resume_config(ckpt["config"], config)
    elif out_path is not None and (out_path / "last.pt").exists() and not overwrite:
        raise OutputExistsError(
            f"{out_path} already holds a training run (last.pt); pass resume=True to continue it, "
            "overwrite=True to start again over it, or choose another out_dir"
        )

    # data: sampler, fixed validation patches (their own generator: validation never touches
    # the training random stream)
    sampler = PatchSampler(train_raw, train_labels, config.patch, config.offsets, config.augment)
    val_samples: list[Sample] = []
    if val_raw is not None:
        if val_labels is None:
            raise ValueError("val_raw needs val_labels")
        val_patch = (min(config.patch[0], np.shape(val_raw)[0]),) + config.patch[1:]
        val_sampler = PatchSampler(val_raw, val_labels, val_patch, config.offsets, None)
        vrng = np.random.default_rng([config.seed, 1])
        val_samples = [val_sampler.sample(vrng, augment=False) for _ in range(config.val_patches)]

    calib: list[Tensor] = []
    if config.bn_calibration:
        crng = np.random.default_rng([config.seed, 2])
        for _ in range(config.bn_calibration):
            x, _, _ = _batch([sampler.sample(crng, augment=False) for _ in range(config.batch_size)],
                             device, config.channels_last)
            calib.append(x)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RSUNet(config.model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps)
    use_amp = device.type == "cuda" and config.amp
    scaler = torch.amp.GradScaler(
        "cuda", enabled=use_amp and not torch.cuda.is_bf16_supported()
    ) if device.type == "cuda" else None

    rng = np.random.default_rng(config.seed)
    step, losses, history = 0, [], []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        rng = _restore_rng(ckpt["rng"])
        step, losses, history = int(ckpt["step"]), list(ckpt["losses"]), list(ckpt["history"])
        del ckpt

    logger = _Logger(out_path / "tensorboard" if (out_path and tensorboard) else None,
                     purge_step=step + 1 if step else None)
    last_ckpt: Path | None = None

    eval_cache: dict = {}

    def evaluation_model() -> RSUNet:
        """The model with evaluation statistics, computed once per step."""
        if eval_cache.get("step") != step:
            eval_cache.update(step=step, model=recalibrate_batchnorm(model, calib))
        return eval_cache["model"]

    def save(step_done: int) -> Path:
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step_done,
            "config": json.dumps(config.to_dict()),
            "model": model.state_dict(),
            "eval_norm": _norm_buffers(evaluation_model()) if calib else {},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": _rng_state(rng),
            "losses": list(losses),
            "history": json.dumps(history),
        }
        out_path.mkdir(parents=True, exist_ok=True)
        keep = out_path / f"step_{step_done:07d}.pt"
        with atomic_path(keep, overwrite=True) as tmp:
            torch.save(state, tmp)
        with atomic_path(out_path / "last.pt", overwrite=True) as tmp:
            torch.save(state, tmp)
        with atomic_path(out_path / "history.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps({"losses": losses, "history": history}, indent=1))
        return keep

    start_time = time.perf_counter()
    since_record: list[float] = []

    def record_validation() -> None:
        v = validate(evaluation_model(), config, val_samples, val_raw, val_labels, device) if (
            val_raw is not None) else {"val_loss": None, "val_arand": None, "val_threshold": None}
        record = {
            "step": step,
            "train_loss": float(np.mean(since_record)) if since_record else None,
            "val_loss": v["val_loss"],
            "val_arand": v["val_arand"],
            "val_threshold": v["val_threshold"],
            "seconds": time.perf_counter() - start_time,
        }
        since_record.clear()
        history.append(record)
        logger.scalar("val/loss", record["val_loss"], step)
        logger.scalar("val/arand", record["val_arand"], step)
        if "_affs" in v and (0, 1, 0) in config.offsets:
            z = v["_raw"].shape[0] // 2
            c = config.offsets.index((0, 1, 0))
            logger.image("val/raw", raw_to_input(v["_raw"][z]), step)
            logger.image("val/affinity_y_true", affinities(v["_gt"][z : z + 1], [(0, 1, 0)])[0, 0], step)
            logger.image("val/affinity_y_pred", v["_affs"][c, z], step)
        if callback is not None:
            callback(record)

    model.train()
    if step == 0 and val_raw is not None and config.steps > 0:
        record_validation()  # the untrained network: the start of the curves
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress)
    try:
        while step < config.steps:
            samples = [sampler.sample(rng) for _ in range(config.batch_size)]
            x, t, m = _batch(samples, device, config.channels_last)
            with _autocast(device, config.amp):
                logits = model(x)
            loss = affinity_loss(logits, t, m, config.absent_class_weight)
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
            value = float(loss.detach())
            losses.append(value)
            since_record.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if step % config.log_every == 0:
                logger.scalar("train/loss", float(np.mean(losses[-config.log_every:])), step)
            at_end = step == config.steps
            if (config.val_every and step % config.val_every == 0) or at_end:
                record_validation()
            if out_path is not None and ((config.checkpoint_every and step % config.checkpoint_every == 0) or at_end):
                last_ckpt = save(step)
    finally:
        bar.close()
        logger.close()
    return TrainResult(model, evaluation_model(), config, step, losses, history, last_ckpt)


class LiveCurves:
    """A ``callback`` for :func:`train` that redraws loss and ARAND curves at every validation.

    In Jupyter the figure is updated in place (one output that changes; the executed notebook
    keeps its last state); elsewhere one line per validation is printed.

    Args:
        steps: the run's total steps (x axis).
        baseline_arand: drawn as a horizontal reference line (e.g. the raw-image baseline).
        history: earlier records to start from (e.g. of a resumed run).
    """

    def __init__(self, steps: int, baseline_arand: float | None = None, history: Sequence[dict] = ()):
        self.steps = steps
        self.baseline = baseline_arand
        self.records: list[dict] = list(history)
        self.fig = None
        self.handle = None
        try:
            from IPython import get_ipython

            self.notebook = get_ipython() is not None and "IPKernelApp" in get_ipython().config
        except ImportError:  # pragma: no cover
            self.notebook = False

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if not self.notebook:
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()})
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self.fig is None:
            self.fig, _ = plt.subplots(1, 2, figsize=(11, 3.4))
            plt.close(self.fig)  # shown through the display handle only
        self.draw(self.fig.axes)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def draw(self, axes) -> None:
        """Draw the curves on two axes (loss, ARAND)."""
        ax_loss, ax_arand = axes
        ax_loss.clear()
        ax_arand.clear()
        train_pts = [(r["step"], r["train_loss"]) for r in self.records if r["train_loss"] is not None]
        val_pts = [(r["step"], r["val_loss"]) for r in self.records if r["val_loss"] is not None]
        if train_pts:
            ax_loss.plot(*zip(*train_pts), "o-", label="training (mean since last point)")
        if val_pts:
            ax_loss.plot(*zip(*val_pts), "s-", label="validation patches")
        ax_loss.set(xlabel="step", ylabel="rebalanced BCE", title="loss", xlim=(0, self.steps))
        ax_loss.legend(fontsize=8)
        arand_pts = [(r["step"], r["val_arand"]) for r in self.records if r["val_arand"] is not None]
        if arand_pts:
            ax_arand.plot(*zip(*arand_pts), "o-", color="C3", label="network (best threshold)")
        if self.baseline is not None:
            ax_arand.axhline(self.baseline, color="gray", ls="--", label="raw-image baseline")
        ax_arand.set(xlabel="step", ylabel="adapted Rand error", title="validation ARAND (lower is better)",
                     xlim=(0, self.steps), ylim=(0, 1.02))
        if arand_pts or self.baseline is not None:
            ax_arand.legend(fontsize=8)
        if self.fig is not None:
            self.fig.tight_layout()


# --------------------------------------------------------------------------------------------
# command line: neurotut train
# --------------------------------------------------------------------------------------------


def _train_command(args: argparse.Namespace) -> int:
    from neurotut.data import train_val_split
    from neurotut.io import read_volume

    raw = read_volume(args.raw, ndim=3, kind="image")
    labels = read_volume(args.labels, ndim=3, kind="integer")
    if raw.shape != labels.shape:
        raise ValueError(f"raw {raw.shape} and labels {labels.shape} differ in shape")
    if args.val_raw:
        if not args.val_labels:
            raise ValueError("--val-raw needs --val-labels")
        val_raw = read_volume(args.val_raw, ndim=3, kind="image")
        val_labels = read_volume(args.val_labels, ndim=3, kind="integer")
    elif args.val_fraction > 0:
        raw, val_raw = train_val_split(raw, 1 - args.val_fraction)
        labels, val_labels = train_val_split(labels, 1 - args.val_fraction)
    else:
        val_raw = val_labels = None

    profile = nt_config.get_profile(args.profile)
    model_over = {k: v for k, v in {
        "depth": args.depth, "reversible": args.reversible or None,
        "checkpointing": args.checkpointing or None,
        "widths": tuple(args.widths) if args.widths else None,
    }.items() if v is not None}
    over = {k: v for k, v in {
        "steps": args.steps, "patch": tuple(args.patch) if args.patch else None,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "lr_decay_factor": args.lr_decay_factor, "lr_decay_steps": args.lr_decay_steps,
        "val_every": args.val_every, "checkpoint_every": args.checkpoint_every,
        "val_crop": tuple(args.val_crop) if args.val_crop else None,
    }.items() if v is not None}
    if args.no_augment:
        over["augment"] = AugmentConfig.none()
    if args.no_amp:
        over["amp"] = False
    if args.nearest_only:
        over["offsets"] = SUPERHUMAN_OFFSETS[:3]
        model_over["out_channels"] = 3
    if args.resume:  # the run's own configuration; only --steps may extend it
        saved = load_checkpoint(Path(args.out) / "last.pt")["config"]
        cfg = replace(saved, steps=args.steps or saved.steps)
    else:
        cfg = train_config_for_profile(profile, model=model_over, **over)
    result = train(
        cfg, raw, labels, val_raw, val_labels,
        out_dir=args.out, resume=args.resume or None, overwrite=args.overwrite,
        device=args.device, progress=not args.quiet,
    )
    if not args.quiet:
        last = result.history[-1] if result.history else {}
        print(f"trained {result.step} steps; last validation: {last}; checkpoint {result.checkpoint}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut train``."""
    p = subparsers.add_parser(
        "train",
        help="train an affinity RSUNet on HDF5 volumes",
        description="Train a (reversible) RSUNet on affinities. Sizes default to the active "
        "profile (NEUROTUT_PROFILE or --profile); flags override them. Writes checkpoints, "
        "history.json and TensorBoard logs to --out.",
    )
    p.add_argument("--raw", required=True, help="training image, file.h5:dataset (uint8)")
    p.add_argument("--labels", required=True, help="training labels, file.h5:dataset (integers)")
    p.add_argument("--val-raw", help="validation image (default: split off the last slices)")
    p.add_argument("--val-labels", help="validation labels")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of z slices held out for validation when --val-raw is not given "
                   "(0: no validation); default 0.2")
    p.add_argument("--out", required=True, help="output folder for checkpoints and logs")
    p.add_argument("--profile", choices=sorted(nt_config.PROFILES), default=None,
                   help="take default sizes from this profile (default: the active one)")
    p.add_argument("--steps", type=int, help="total Adam steps of the run")
    p.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"), help="patch size")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-decay-factor", type=float,
                   help="staircase decay: multiply the learning rate by this every --lr-decay-steps")
    p.add_argument("--lr-decay-steps", type=int, help="steps between decays (0: constant rate)")
    p.add_argument("--seed", type=int)
    p.add_argument("--widths", type=int, nargs="+", help="channels per scale, e.g. 28 36 48 64 80")
    p.add_argument("--depth", type=int, help="residual units / reversible blocks per module")
    p.add_argument("--reversible", action="store_true", help="reversible blocks (RevNet)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (plain net)")
    p.add_argument("--nearest-only", action="store_true", help="predict only the 3 nearest-neighbour affinities")
    p.add_argument("--val-every", type=int, help="steps between validations (0: at the end only)")
    p.add_argument("--val-crop", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="centre crop of the validation volume segmented for ARAND (0 0 0: none)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: at the end)")
    p.add_argument("--no-augment", action="store_true", help="no flips, defects or greyscale changes")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its last.pt)")
    p.add_argument("--overwrite", action="store_true", help="start again over a run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_train_command)
