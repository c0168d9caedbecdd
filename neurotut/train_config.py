"""The configuration of an affinity-network (RSUNet) training run, and the profiles' defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from neurotut import config as nt_config
from neurotut.affinity import SUPERHUMAN_OFFSETS, check_offsets
from neurotut.augment import AugmentConfig
from neurotut.models.rsunet import RSUNetConfig


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
        init_weights: a checkpoint or exported weights file (:func:`neurotut.checkpoints.export_weights`)
            whose weights the network starts from instead of a seeded initialisation: fine-tuning.
            Its network configuration must equal ``model``; the optimizer starts afresh.
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
    init_weights: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("patch", tuple(int(p) for p in self.patch))
        set_("offsets", check_offsets(self.offsets))
        set_("betas", tuple(float(b) for b in self.betas))
        set_("val_thresholds", tuple(float(t) for t in self.val_thresholds))
        if self.init_weights is not None:
            set_("init_weights", str(self.init_weights))
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

    def eval_window(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The sliding window that predicts a ``(Z, Y, X)`` crop for scoring: the crop itself
        (one window) when its y and x suit the network, else the patch (z clipped to the crop)."""
        d = self.model.divisor
        if shape[1] % d == 0 and shape[2] % d == 0:
            return tuple(shape)  # type: ignore[return-value]
        return (min(self.patch[0], shape[0]),) + self.patch[1:]

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
