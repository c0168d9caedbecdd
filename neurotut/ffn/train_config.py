"""The configuration of an FFN training run (google/ffn ``train.py`` flags), sizes z, y, x."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from neurotut.ffn.model import FFNModelConfig, logit


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run except the data. Sizes are (z, y, x).

    Defaults are the original's (``train.py`` flags): batch 4, SGD lr 1e-3, gradient entries
    clipped to 0.7, fixed FOV policy with threshold 0.9, seed pad 0.05, y/x transpose and flips of
    all axes.
    """

    model: FFNModelConfig = field(default_factory=FFNModelConfig)
    batch_size: int = 4
    optimizer: str = "sgd"  # "sgd" or "adam"
    learning_rate: float = 1e-3
    #: staircase exponential decay of google/ffn HEAD: ``lr * factor ** (step // decay_steps)``;
    #: off (the classic behaviour) unless both are set
    learning_rate_decay_factor: float | None = None
    decay_steps: int | None = None
    max_gradient_entry_mag: float = 0.7  # 0 disables clipping
    fov_policy: str = "fixed"  # "fixed" or "max_pred_moves"
    fov_moves: int = 1
    threshold: float = 0.9  # move threshold (probability) and the evaluation threshold
    seed_pad: float = 0.05  # canvas value away from the centre (probability)
    seed_init: float = 0.95  # canvas value at the centre (probability)
    label_softness: float = 0.05  # targets are softness / 1 - softness
    shuffle_moves: bool = True  # shuffle the 26 shifts once, at the start of the run
    permutable_axes: tuple[int, ...] = (1, 2)  # axes (z=0, y=1, x=2) randomly permuted
    reflectable_axes: tuple[int, ...] = (0, 1, 2)  # axes flipped with p = 1/2 each
    seed: int = 0  # model initialisation, augmentation and move order
    amp: bool = False  # bfloat16 autocast (CUDA only)
    channels_last: bool = False  # channels-last 3-D memory format (meant for CUDA)

    def __post_init__(self) -> None:
        if not isinstance(self.model, FFNModelConfig):
            object.__setattr__(self, "model", FFNModelConfig(**dict(self.model)))
        object.__setattr__(self, "permutable_axes", tuple(int(a) for a in self.permutable_axes))
        object.__setattr__(self, "reflectable_axes", tuple(int(a) for a in self.reflectable_axes))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if (self.learning_rate_decay_factor is None) != (self.decay_steps is None):
            raise ValueError("learning-rate decay needs both learning_rate_decay_factor and decay_steps")
        if self.decay_steps is not None and (
            self.decay_steps < 1 or not 0.0 < self.learning_rate_decay_factor <= 1.0
        ):
            raise ValueError(
                f"need decay_steps >= 1 and 0 < learning_rate_decay_factor <= 1, got "
                f"{self.decay_steps} and {self.learning_rate_decay_factor}"
            )
        if self.max_gradient_entry_mag < 0:
            raise ValueError("max_gradient_entry_mag must be >= 0 (0 disables clipping)")
        if self.fov_policy not in ("fixed", "max_pred_moves"):
            raise ValueError(f"fov_policy must be 'fixed' or 'max_pred_moves', got {self.fov_policy!r}")
        if self.fov_moves < 1:
            raise ValueError(f"fov_moves must be at least 1, got {self.fov_moves}")
        for name in ("threshold", "seed_pad", "seed_init"):
            logit(getattr(self, name))  # raises for values outside (0, 1)
        if not 0.0 <= self.label_softness < 0.5:
            raise ValueError(f"label_softness must be in [0, 0.5), got {self.label_softness}")
        for name in ("permutable_axes", "reflectable_axes"):
            axes = getattr(self, name)
            if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
                raise ValueError(f"{name} must be distinct axes among 0 (z), 1 (y), 2 (x): {axes}")
        sizes = {self.patch_size[a] for a in self.permutable_axes}
        if len(sizes) > 1:
            raise ValueError(
                f"permutable_axes {self.permutable_axes} have different patch sizes "
                f"{self.patch_size}; permuting them would change the patch shape (use axes of "
                "equal size, e.g. y and x with an FOV square in y, x, or none)"
            )

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based): constant, or the staircase
        decay ``learning_rate * learning_rate_decay_factor ** (step // decay_steps)``."""
        if self.decay_steps is None:
            return self.learning_rate
        return self.learning_rate * self.learning_rate_decay_factor ** (step // self.decay_steps)

    @property
    def moves_per_example(self) -> int:
        """M in ``patch = fov + 2 * deltas * M``."""
        return self.fov_moves if self.fov_policy == "fixed" else self.fov_moves + 1

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """(z, y, x) of one example's image, target and canvas: ``fov + 2 * deltas * M``."""
        m = self.moves_per_example
        return tuple(f + 2 * d * m for f, d in zip(self.model.fov_size, self.model.deltas))  # type: ignore[return-value]

    @property
    def patch_radius(self) -> tuple[int, int, int]:
        """(z, y, x) voxels a centre needs to every border: ``patch_size // 2``."""
        return tuple(s // 2 for s in self.patch_size)  # type: ignore[return-value]

    def as_dict(self) -> dict:
        """Plain types only (what checkpoints store)."""
        out = asdict(self)
        out["model"] = self.model.as_dict()
        out["permutable_axes"] = list(self.permutable_axes)
        out["reflectable_axes"] = list(self.reflectable_axes)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        data["model"] = FFNModelConfig(**data["model"])
        return cls(**data)
