"""Training a Flood-Filling Network the way google/ffn's ``train.py`` does, in PyTorch.

One training *example* is a patch around a centre drawn from the balanced sampler of
:mod:`neurotut.ffn.coordinates`. Its size is ``fov + 2 * deltas * M`` (M = 1 for the ``fixed``
policy, 2 for ``max_pred_moves``), so that the field of view (FOV) can move inside it:

1. **Target.** ``(labels > 0) & (labels == labels[centre])``, softened to 0.95 / 0.05. A centre
   on background (label 0) gives an all-0.05 target: a negative example.
2. **Augmentation.** Image and labels get the same random axis permutation (default: y and x, a
   transpose with p = 1/2) and independent flips of each axis (p = 1/2 each).
3. **Seed canvas.** A patch-sized array of logits, ``logit(0.05)`` everywhere and ``logit(0.95)``
   at the centre voxel.
4. **Moves.** The FOV starts at the centre. After each step the predicted logits of the whole FOV
   are **written back** into the canvas, and the next position is chosen on the updated canvas:
   the ``fixed`` policy tries the 26 shifts (+-delta per axis) in an order shuffled once, taking a
   shift only where the canvas is >= ``logit(threshold)`` (0.9); ``max_pred_moves`` follows the
   inference policy (face maxima of the prediction, breadth first). One example gives 1..27
   steps. The canvas is data, not a graph: no gradient flows from one move to the next.
5. **Batches.** ``batch_size`` independent example streams each contribute one FOV per optimiser
   step; a stream whose example has no move left starts a new example.
6. **Loss and optimiser.** Sigmoid cross-entropy between the updated logits and the soft target,
   averaged over every voxel; plain SGD at lr 1e-3 with every gradient entry clipped to +-0.7
   (Adam as an option); no weight decay.
7. **Evaluation.** When an example is finished, its whole canvas is compared with its target:
   precision, recall and F1 with predictions at ``logit(0.9)`` and labels at 0.5, plus the loss
   over the patch; summaries also report the F1 of the trivial "everything is the object"
   predictor on the same patches.

Arrays are z, y, x; images fed to the network are ``(B, 1, Z, Y, X)`` float32. Randomness comes
from one NumPy generator (augmentation, move order) and the sampler's own generator; both, the
torch generator, the streams' canvases and positions and the optimiser state go into checkpoints,
so a resumed run continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from tqdm.auto import tqdm

from neurotut.ffn.coordinates import BalancedSampler, index_partitions
from neurotut.ffn.model import ConvStack3DFFN, FFNModelConfig, shifts
from neurotut.ffn.partitions import DEFAULT_THRESHOLDS, compute_partitions
from neurotut.io import atomic_path, load_torch_checkpoint

CHECKPOINT_FORMAT = "neurotut-ffn-checkpoint"
CHECKPOINT_VERSION = 1
_CKPT_RE = re.compile(r"^model\.ckpt-(\d+)\.pt$")


def logit(p: float) -> float:
    """``ln(p / (1 - p))``: logit(0.95) = 2.944, logit(0.05) = -2.944, logit(0.9) = 2.197."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"logit needs a probability strictly between 0 and 1, got {p}")
    return math.log(p / (1.0 - p))


# --------------------------------------------------------------------------------------------
# configuration


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


def _mean_std(image: np.ndarray, block: int = 8) -> tuple[float, float]:
    """Mean and standard deviation (ddof 0) of a (Z, Y, X) array, ``block`` slices at a time in
    float64 (no float64 copy of the whole volume)."""
    total = total_sq = 0.0
    for z in range(0, image.shape[0], block):
        part = image[z : z + block].astype(np.float64)
        total += float(part.sum())
        total_sq += float(np.square(part).sum())
    n = image.size
    mean = total / n
    return mean, math.sqrt(max(total_sq / n - mean * mean, 0.0))


@dataclass
class TrainVolume:
    """One training volume: EM image, labels and the image's normalisation.

    ``image`` (Z, Y, X) uint8 (or float), ``labels`` (Z, Y, X) integer object ids (0 = background).
    The network sees ``(image - image_mean) / image_stddev``; by default mean and standard deviation
    are measured on this volume (per-volume normalisation).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    image_mean: float | None = None
    image_stddev: float | None = None

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image)
        self.labels = np.asarray(self.labels)
        if self.image.ndim != 3:
            raise ValueError(f"volume {self.name!r}: image must be (Z, Y, X), got {self.image.shape}")
        if self.labels.shape != self.image.shape:
            raise ValueError(
                f"volume {self.name!r}: labels {self.labels.shape} and image {self.image.shape} "
                "differ in shape"
            )
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise TypeError(f"volume {self.name!r}: labels must be integer ids, got {self.labels.dtype}")
        if self.image_mean is None or self.image_stddev is None:
            mean, std = _mean_std(self.image)
            if self.image_mean is None:
                self.image_mean = mean
            if self.image_stddev is None:
                self.image_stddev = std
        if not self.image_stddev > 0:
            raise ValueError(f"volume {self.name!r}: image_stddev must be positive, got {self.image_stddev}")


# --------------------------------------------------------------------------------------------
# building examples


@dataclass(frozen=True)
class Augmentation:
    """An axis permutation of (z, y, x) and a flip flag per axis, applied permutation first."""

    permutation: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Augment a (Z, Y, X) array (a copy, C-contiguous)."""
        out = np.transpose(array, self.permutation)
        flip_axes = tuple(a for a, f in enumerate(self.flips) if f)
        if flip_axes:
            out = np.flip(out, flip_axes)
        return np.ascontiguousarray(out)

    def as_dict(self) -> dict:
        return {"permutation": list(self.permutation), "flips": list(self.flips)}


def draw_augmentation(
    rng: np.random.Generator, permutable_axes: Sequence[int] = (1, 2), reflectable_axes: Sequence[int] = (0, 1, 2)
) -> Augmentation:
    """A random :class:`Augmentation`: the permutable axes in a random order, each reflectable
    axis flipped with p = 1/2. Draws ``rng.permutation`` (when 2+ axes are permutable) and then one
    ``rng.random()`` per reflectable axis, in that order."""
    permutation = [0, 1, 2]
    if len(permutable_axes) > 1:
        order = rng.permutation(len(permutable_axes))
        for slot, k in zip(permutable_axes, order):
            permutation[slot] = permutable_axes[int(k)]
    flips = [False, False, False]
    for axis in reflectable_axes:
        flips[axis] = bool(rng.random() < 0.5)
    return Augmentation(tuple(permutation), tuple(flips))  # type: ignore[arg-type]


def crop_centered(array: np.ndarray, center: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The (z, y, x) box of ``size`` whose middle voxel (index ``size // 2``) is ``center``.

    Start = ``center - (size - 1) // 2``, as the original's patch loader. Raises ValueError when
    the box leaves the array (the original does not pad; the sampler's margin must prevent it).
    """
    starts = [int(c) - (int(s) - 1) // 2 for c, s in zip(center, size)]
    if any(a < 0 or a + s > n for a, s, n in zip(starts, size, array.shape)):
        raise ValueError(
            f"a patch of size (z, y, x) {tuple(size)} around {tuple(int(c) for c in center)} leaves "
            f"the volume of shape {array.shape}; sample centres at least {tuple(s // 2 for s in size)} "
            "voxels from every border (the coordinates' margin)"
        )
    return array[tuple(slice(a, a + s) for a, s in zip(starts, size))]


def soft_labels(labels: np.ndarray, softness: float = 0.05) -> np.ndarray:
    """Soft target of a (Z, Y, X) label patch: ``1 - softness`` where the voxel carries the centre
    voxel's non-zero id, ``softness`` elsewhere (everywhere when the centre is background).

    Returns (Z, Y, X) float32. The centre is ``labels[Z // 2, Y // 2, X // 2]``.
    """
    center = labels[tuple(s // 2 for s in labels.shape)]
    mask = (labels > 0) & (labels == center)
    return np.where(mask, 1.0 - softness, softness).astype(np.float32)


def make_seed_canvas(
    shape: Sequence[int], pad: float = 0.05, init: float = 0.95
) -> np.ndarray:
    """(Z, Y, X) float32 logits: ``logit(pad)`` everywhere, ``logit(init)`` at the centre voxel."""
    canvas = np.full(tuple(shape), logit(pad), dtype=np.float32)
    canvas[tuple(s // 2 for s in shape)] = logit(init)
    return canvas


@dataclass
class Example:
    """One training example: patch-sized arrays around ``center`` of volume ``volume``.

    ``image`` normalised float32, ``target`` soft labels float32, ``canvas`` logits float32, all
    (Z, Y, X) of the training patch size, already augmented.
    """

    volume: str
    center: tuple[int, int, int]
    augmentation: Augmentation
    image: np.ndarray
    target: np.ndarray
    canvas: np.ndarray


def load_example(
    volume: TrainVolume,
    center: Sequence[int],
    config: TrainConfig,
    augmentation: Augmentation | None = None,
) -> Example:
    """Cut, augment, normalise and soften one example around ``center`` (z, y, x), and give it a
    fresh seed canvas. ``augmentation=None`` means none."""
    aug = augmentation or Augmentation()
    size = config.patch_size
    raw = crop_centered(volume.image, center, size)
    labels = crop_centered(volume.labels, center, size)
    image = (aug.apply(raw).astype(np.float32) - np.float32(volume.image_mean)) / np.float32(volume.image_stddev)
    target = soft_labels(aug.apply(labels), config.label_softness)
    canvas = make_seed_canvas(size, config.seed_pad, config.seed_init)
    center = tuple(int(c) for c in center)
    return Example(volume.name, center, aug, image.astype(np.float32), target, canvas)  # type: ignore[arg-type]


def fov_slices(patch_shape: Sequence[int], fov_size: Sequence[int], offset: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the FOV whose centre is ``offset`` (z, y, x) away from the patch centre."""
    out = []
    for n, f, o in zip(patch_shape, fov_size, offset):
        start = n // 2 + int(o) - f // 2
        if start < 0 or start + f > n:
            raise ValueError(f"FOV {tuple(fov_size)} at offset {tuple(offset)} leaves the patch {tuple(patch_shape)}")
        out.append(slice(start, start + f))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# FOV movement policies


def fixed_move_order(
    deltas: Sequence[int], rng: np.random.Generator | None = None
) -> list[tuple[int, int, int]]:
    """The fixed policy's candidate list: ``(0, 0, 0)`` first, then the 26 shifts, shuffled with
    ``rng`` (once per run, as the original's ``--shuffle_moves``) or in fixed order if None."""
    moves = shifts(deltas)
    if rng is not None:
        moves = [moves[int(i)] for i in rng.permutation(len(moves))]
    return [(0, 0, 0)] + moves


class FixedMoves:
    """The ``fixed`` policy for one example: walk the candidate list, taking a candidate only where
    the current canvas is >= the threshold logit at ``centre + offset``.

    The check happens when the next position is asked for, i.e. on the canvas after the previous
    step's write-back.
    """

    def __init__(self, order: Sequence[Sequence[int]], threshold_logit: float, position: int = 0):
        self.order = [tuple(int(v) for v in o) for o in order]
        self.threshold_logit = float(threshold_logit)
        self.position = int(position)

    def next_offset(self, canvas: np.ndarray) -> tuple[int, int, int] | None:
        center = tuple(s // 2 for s in canvas.shape)
        while self.position < len(self.order):
            offset = self.order[self.position]
            self.position += 1
            value = canvas[tuple(c + o for c, o in zip(center, offset))]
            if value >= self.threshold_logit:
                return offset  # type: ignore[return-value]
        return None

    def observe(self, fov_logits: np.ndarray, offset: Sequence[int]) -> None:
        """Nothing to learn from a prediction: the candidate list is fixed."""

    def state(self) -> dict:
        return {"kind": "fixed", "position": self.position}


def face_max_moves(
    fov_logits: np.ndarray, deltas: Sequence[int], threshold_logit: float
) -> list[tuple[float, tuple[int, int, int]]]:
    """Face-maximum move candidates of one FOV prediction (the inference movement policy).

    For each axis with delta d > 0 and each sign, look at the face of the cuboid +-deltas around
    the FOV centre that lies at +-d along that axis (a (2 d_a + 1) x (2 d_b + 1) plane); its
    largest logit, if >= ``threshold_logit``, proposes that voxel as the next centre. Returns up to
    6 ``(score, offset)`` pairs, offset (z, y, x) relative to the FOV centre, sorted by score,
    highest first (ties keep the order z-, z+, y-, y+, x-, x+).
    """
    center = [s // 2 for s in fov_logits.shape]
    found = []
    for axis, d in enumerate(deltas):
        if d <= 0:
            continue
        for sign in (-1, 1):
            index = []
            for a, (c, da) in enumerate(zip(center, deltas)):
                index.append(c + sign * d if a == axis else slice(c - da, c + da + 1))
            face = fov_logits[tuple(index)]
            flat = int(np.argmax(face))
            score = float(face.reshape(-1)[flat])
            if score < threshold_logit:
                continue
            within = np.unravel_index(flat, face.shape)
            offset, k = [], 0
            for a, (c, da) in enumerate(zip(center, deltas)):
                if a == axis:
                    offset.append(sign * d)
                else:
                    offset.append(int(within[k]) - da)
                    k += 1
            found.append((score, tuple(offset)))
    found.sort(key=lambda item: -item[0])  # stable: ties keep their order
    return found  # type: ignore[return-value]


class MaxPredMoves:
    """The ``max_pred_moves`` policy for one example: the inference movement inside the patch.

    A FIFO queue starts with ``(0, 0, 0)``. After each step the face-maximum candidates of the
    prediction (:func:`face_max_moves`), sorted by score, are appended (breadth first). A popped
    position is skipped when the FOV would leave the patch or when its position quantised to the
    delta grid, ``(offset + delta // 2) // delta``, was visited already.
    """

    def __init__(
        self,
        deltas: Sequence[int],
        fov_size: Sequence[int],
        patch_size: Sequence[int],
        threshold_logit: float,
        queue: Iterable[Sequence[int]] = ((0, 0, 0),),
        done: Iterable[Sequence[int]] = (),
    ):
        self.deltas = tuple(int(d) for d in deltas)
        self.limit = tuple(p // 2 - f // 2 for p, f in zip(patch_size, fov_size))
        self.threshold_logit = float(threshold_logit)
        self.queue = deque(tuple(int(v) for v in q) for q in queue)
        self.done = {tuple(int(v) for v in d) for d in done}

    def _quantize(self, offset: Sequence[int]) -> tuple[int, ...]:
        return tuple((o + d // 2) // d if d > 0 else o for o, d in zip(offset, self.deltas))

    def next_offset(self, canvas: np.ndarray) -> tuple[int, int, int] | None:
        while self.queue:
            offset = self.queue.popleft()
            if any(abs(o) > lim for o, lim in zip(offset, self.limit)):
                continue
            key = self._quantize(offset)
            if key in self.done:
                continue
            self.done.add(key)
            return offset  # type: ignore[return-value]
        return None

    def observe(self, fov_logits: np.ndarray, offset: Sequence[int]) -> None:
        for _, move in face_max_moves(fov_logits, self.deltas, self.threshold_logit):
            self.queue.append(tuple(o + m for o, m in zip(offset, move)))

    def state(self) -> dict:
        return {"kind": "max_pred_moves", "queue": [list(q) for q in self.queue],
                "done": sorted(list(d) for d in self.done)}


# --------------------------------------------------------------------------------------------
# evaluation statistics


@dataclass
class EvalCounts:
    """Voxel counts over finished examples' whole patches (the original's ``EvalTracker``).

    A voxel is predicted inside when its canvas logit >= ``logit(threshold)`` and is truly inside
    when its soft target > 0.5.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    loss_sum: float = 0.0  # sum over voxels of the patch cross-entropy
    examples: int = 0
    steps: int = 0  # FOV steps the examples took

    def add(self, canvas: np.ndarray, target: np.ndarray, threshold_logit: float, steps: int = 1) -> None:
        """Count one finished example: its final canvas (logits) against its soft target."""
        pred = canvas >= threshold_logit
        truth = target > 0.5
        self.tp += int(np.count_nonzero(pred & truth))
        self.fp += int(np.count_nonzero(pred & ~truth))
        self.fn += int(np.count_nonzero(~pred & truth))
        self.tn += int(np.count_nonzero(~pred & ~truth))
        x = torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
        self.loss_sum += float(F.binary_cross_entropy_with_logits(x, y, reduction="sum"))
        self.examples += 1
        self.steps += int(steps)

    @property
    def voxels(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def __add__(self, other: EvalCounts) -> EvalCounts:
        """The counts of both sets of examples together."""
        if not isinstance(other, EvalCounts):
            return NotImplemented
        return EvalCounts(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def metrics(self) -> dict[str, float]:
        """precision, recall, f1, patch_loss, examples, steps_per_example, and
        ``f1_all_inside``: the F1 of predicting every voxel of every patch as the object (the
        trivial predictor). NaN where undefined."""
        nan = float("nan")
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else nan
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else nan
        if self.tp:
            f1 = 2 * precision * recall / (precision + recall)
        else:
            f1 = 0.0 if self.voxels else nan
        positives = self.tp + self.fn
        trivial = 2 * positives / (2 * positives + self.fp + self.tn) if self.voxels else nan
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "f1_all_inside": trivial,
            "patch_loss": self.loss_sum / self.voxels if self.voxels else nan,
            "examples": float(self.examples),
            "steps_per_example": self.steps / self.examples if self.examples else nan,
        }


# --------------------------------------------------------------------------------------------
# example streams


class ExampleStream:
    """One of the batch's independent example generators: an example and its move policy."""

    def __init__(self) -> None:
        self.example: Example | None = None
        self.policy: FixedMoves | MaxPredMoves | None = None
        self.offset: tuple[int, int, int] | None = None
        self.steps_taken = 0

    @property
    def active(self) -> bool:
        return self.offset is not None

    def start(self, example: Example, policy: FixedMoves | MaxPredMoves) -> None:
        self.example, self.policy, self.steps_taken = example, policy, 0
        self.offset = policy.next_offset(example.canvas)
        if self.offset is None:  # cannot happen with seed_init > threshold, but be explicit
            raise ValueError("the move policy refused the centre; seed_init must exceed threshold")

    def fov(self, fov_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, seed, target) of the current FOV, each (Z, Y, X) float32."""
        ex = self.example
        sl = fov_slices(ex.canvas.shape, fov_size, self.offset)
        return ex.image[sl], ex.canvas[sl], ex.target[sl]

    def write_back(self, fov_logits: np.ndarray, fov_size: Sequence[int]) -> bool:
        """Overwrite the canvas FOV with the prediction and move on. Returns True when the
        example is finished (no move left)."""
        ex = self.example
        ex.canvas[fov_slices(ex.canvas.shape, fov_size, self.offset)] = fov_logits
        self.policy.observe(fov_logits, self.offset)
        self.offset = self.policy.next_offset(ex.canvas)
        return self.offset is None

    def state(self) -> dict | None:
        if self.example is None:
            return None
        ex = self.example
        return {
            "volume": ex.volume,
            "center": list(ex.center),
            "augmentation": ex.augmentation.as_dict(),
            "canvas": torch.from_numpy(ex.canvas.copy()),
            "policy": self.policy.state(),
            "offset": None if self.offset is None else list(self.offset),
            "steps_taken": self.steps_taken,
        }


def make_policy(config: TrainConfig, order: Sequence[Sequence[int]], state: dict | None = None):
    """A fresh (or restored) move policy for one example."""
    threshold = logit(config.threshold)
    if config.fov_policy == "fixed":
        return FixedMoves(order, threshold, (state or {}).get("position", 0))
    kwargs = {}
    if state is not None:
        kwargs = {"queue": state["queue"], "done": state["done"]}
    return MaxPredMoves(config.model.deltas, config.model.fov_size, config.patch_size, threshold, **kwargs)


def _to_device_batch(arrays: list[np.ndarray], device: torch.device, channels_last: bool) -> torch.Tensor:
    t = torch.from_numpy(np.stack(arrays)[:, None]).to(device, non_blocking=True)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last_3d)
    return t


def run_examples(
    model: ConvStack3DFFN,
    examples: Iterable[Example],
    config: TrainConfig,
    order: Sequence[Sequence[int]] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    record: bool = False,
) -> Iterator[tuple[Example, list[dict]]]:
    """Run the move policy on examples without training, ``batch_size`` examples at a time.

    Each example moves exactly as in training (canvas write-back, the policy of ``config``;
    ``order`` is the fixed policy's candidate list, default unshuffled), with the network in eval
    mode and no gradient. Canvases are updated in place. ``examples`` is consumed lazily. Yields
    ``(example, steps)`` as each example finishes (not in input order); ``steps`` has one dict per
    step with its ``offset`` (z, y, x) and, when ``record``, ``canvas_before`` and
    ``canvas_after`` (patch-sized float32 copies).
    """
    device = torch.device(device)
    order = order or fixed_move_order(config.model.deltas)
    fov = config.model.fov_size
    pending = iter(examples)
    active: list[tuple[ExampleStream, list[dict]]] = []
    exhausted = False
    model.eval()
    with torch.no_grad():
        while True:
            while not exhausted and len(active) < batch_size:
                example = next(pending, None)
                if example is None:
                    exhausted = True
                    break
                stream = ExampleStream()
                stream.start(example, make_policy(config, order))
                active.append((stream, []))
            if not active:
                return
            parts = [s.fov(fov) for s, _ in active]
            logits = model(_to_device_batch([p[0] for p in parts], device, False),
                           _to_device_batch([p[1] for p in parts], device, False))
            logits = logits[:, 0].float().cpu().numpy()
            still = []
            for (stream, steps), pred in zip(active, logits):
                step = {"offset": stream.offset}
                if record:
                    step["canvas_before"] = stream.example.canvas.copy()
                finished = stream.write_back(pred, fov)
                if record:
                    step["canvas_after"] = stream.example.canvas.copy()
                steps.append(step)
                if finished:
                    yield stream.example, steps
                else:
                    still.append((stream, steps))
            active = still


def run_example(
    model: ConvStack3DFFN,
    example: Example,
    config: TrainConfig,
    order: Sequence[Sequence[int]] | None = None,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """:func:`run_examples` for one example, recording the canvas before and after every step.

    Returns one dict per step: ``offset`` (z, y, x), ``canvas_before`` and ``canvas_after``.
    """
    for _, steps in run_examples(model, [example], config, order, device, record=True):
        return steps
    raise AssertionError("unreachable: every example makes at least one step")


@dataclass
class ExampleResult:
    """One evaluated example: where it was, how many FOV steps it took and its counts."""

    volume: str
    center: tuple[int, int, int]
    #: fraction of the patch that is the centre's object (soft target > 0.5); 0 on background
    object_fraction: float
    counts: EvalCounts

    @property
    def steps(self) -> int:
        return self.counts.steps


def evaluate_examples(
    model: ConvStack3DFFN,
    volumes: Sequence[TrainVolume],
    centers: Sequence[tuple[str, Sequence[int]]],
    config: TrainConfig,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    order: Sequence[Sequence[int]] | None = None,
) -> list[ExampleResult]:
    """:func:`evaluate` example by example: one :class:`ExampleResult` per centre, in the order of
    ``centers`` (their counts sum to what :func:`evaluate` returns)."""
    by_name = {v.name: v for v in volumes}
    for name, _ in centers:
        if name not in by_name:
            raise KeyError(f"no volume named {name!r}; have {sorted(by_name)}")
    index: dict[int, int] = {}  # id of a running example -> its place in ``centers``

    def examples() -> Iterator[Example]:  # loaded lazily: at most batch_size patches in memory
        for i, (name, center) in enumerate(centers):
            example = load_example(by_name[name], center, config)
            index[id(example)] = i
            yield example

    threshold = logit(config.threshold)
    results: list[ExampleResult | None] = [None] * len(centers)
    for example, steps in run_examples(model, examples(), config, order, device, batch_size):
        counts = EvalCounts()
        counts.add(example.canvas, example.target, threshold, steps=len(steps))
        fraction = float(np.mean(example.target > 0.5))
        results[index.pop(id(example))] = ExampleResult(example.volume, example.center, fraction, counts)
    return results  # type: ignore[return-value]


def evaluate(
    model: ConvStack3DFFN,
    volumes: Sequence[TrainVolume],
    centers: Sequence[tuple[str, Sequence[int]]],
    config: TrainConfig,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    order: Sequence[Sequence[int]] | None = None,
) -> EvalCounts:
    """Evaluation statistics of a model on fixed examples: each ``(volume name, (z, y, x))`` centre
    is run through the move policy (:func:`run_examples`: no augmentation, no gradient) and its
    final canvas is compared with its target. Returns the summed :class:`EvalCounts` (empty
    counts, whose metrics are NaN, for no centres)."""
    total = EvalCounts()
    for result in evaluate_examples(model, volumes, centers, config, device, batch_size, order):
        total = total + result.counts
    return total


# --------------------------------------------------------------------------------------------
# samplers


def make_sampler(
    volumes: Sequence[TrainVolume],
    config: TrainConfig,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    lom_radius: Sequence[int] | None = None,
    min_size: int = 10000,
    seed: int = 0,
    progress: bool = False,
) -> BalancedSampler:
    """Partitions, balanced index and sampler for in-memory volumes, in one call.

    ``lom_radius`` (z, y, x) defaults to the README's rule ``fov // 2 + deltas``; the margin is the
    training patch radius, so every drawn centre has its whole patch inside its volume.
    """
    if lom_radius is None:
        lom_radius = tuple(f // 2 + d for f, d in zip(config.model.fov_size, config.model.deltas))
    parts = [
        (v.name, compute_partitions(v.labels, thresholds, lom_radius, min_size=min_size, progress=progress))
        for v in volumes
    ]
    index = index_partitions(parts, margin=config.patch_radius)
    return BalancedSampler(index, seed=seed)


# --------------------------------------------------------------------------------------------
# the trainer


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.SGD(params, lr=config.learning_rate)


def clip_gradient_entries(model: torch.nn.Module, max_entry: float) -> None:
    """Clamp every gradient entry to ``[-max_entry, max_entry]`` in place (0: no clipping)."""
    if max_entry <= 0:
        return
    for p in model.parameters():
        if p.grad is not None:
            p.grad.clamp_(-max_entry, max_entry)


class Trainer:
    """FFN training state: model, optimiser, example streams, random generators and counters.

    Args:
        config: the run's :class:`TrainConfig`.
        volumes: the training volumes; their names are those of ``sampler``'s index.
        sampler: draws ``(volume index, (z, y, x))`` centres (:class:`BalancedSampler`).
        device: where the network runs (default: :func:`neurotut.config.get_device`).

    ``trainer.step()`` does one optimiser step; ``trainer.train(n)`` does ``n`` with summaries;
    ``trainer.save(path)`` and ``Trainer.resume(path, volumes, sampler)`` checkpoint and resume.
    """

    def __init__(
        self,
        config: TrainConfig,
        volumes: Sequence[TrainVolume],
        sampler: BalancedSampler,
        device: torch.device | str | None = None,
    ):
        from neurotut import config as nt_config

        self.config = config
        self.device = torch.device(device) if device is not None else nt_config.get_device(verbose=False)
        if config.amp and self.device.type != "cuda":
            raise ValueError("amp (mixed precision) is for CUDA devices only; the CPU trains in float32")
        self.volumes = {v.name: v for v in volumes}
        if len(self.volumes) != len(volumes):
            raise ValueError("training volumes must have distinct names")
        names = tuple(sampler.index.volume_names)
        missing = [n for n in names if n not in self.volumes]
        if missing:
            raise ValueError(
                f"the coordinates name volumes {missing} that were not given; have {sorted(self.volumes)}"
            )
        self.volume_order = names
        margin = sampler.index.margin
        need = config.patch_radius
        if any(m < r for m, r in zip(margin, need)):
            raise ValueError(
                f"the coordinates were built with margin (z, y, x) {tuple(margin)}, but training "
                f"patches of size {config.patch_size} need {need}: rebuild them with that margin"
            )
        for name in names:
            expected = sampler.index.volume_shapes[names.index(name)]
            if tuple(self.volumes[name].labels.shape) != tuple(expected):
                raise ValueError(
                    f"volume {name!r} has shape {self.volumes[name].labels.shape} but its "
                    f"coordinates were computed on shape {tuple(expected)}"
                )
        self.sampler = sampler

        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.model = ConvStack3DFFN(config.model).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.optimizer = _optimizer(config, self.model.parameters())
        self.rng = np.random.default_rng(config.seed)
        self.move_order = fixed_move_order(config.model.deltas, self.rng if config.shuffle_moves else None)
        self.streams = [ExampleStream() for _ in range(config.batch_size)]
        self.global_step = 0
        self.counts = EvalCounts()
        self.history: list[dict] = []
        self.last_example: Example | None = None  # most recently finished (for images)
        self._loss_sum = 0.0
        self._loss_steps = 0

    # -- one step ---------------------------------------------------------------------------

    def _new_example(self, stream: ExampleStream) -> None:
        vol, centers = self.sampler.sample(1)
        volume = self.volumes[self.volume_order[int(vol[0])]]
        aug = draw_augmentation(self.rng, self.config.permutable_axes, self.config.reflectable_axes)
        example = load_example(volume, centers[0], self.config, aug)
        stream.start(example, make_policy(self.config, self.move_order))

    def step(self) -> float:
        """One optimiser step on one FOV from each stream; returns the loss (float)."""
        cfg = self.config
        fov = cfg.model.fov_size
        for stream in self.streams:
            if not stream.active:
                self._new_example(stream)
        parts = [s.fov(fov) for s in self.streams]
        image = _to_device_batch([p[0] for p in parts], self.device, cfg.channels_last)
        seed = _to_device_batch([p[1] for p in parts], self.device, cfg.channels_last)
        target = _to_device_batch([p[2] for p in parts], self.device, cfg.channels_last)

        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            logits = self.model(image, seed)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        for group in self.optimizer.param_groups:  # a function of the step: resumes exactly
            group["lr"] = cfg.learning_rate_at(self.global_step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradient_entries(self.model, cfg.max_gradient_entry_mag)
        self.optimizer.step()

        # write the (pre-update) prediction back into each canvas: no graph crosses moves
        predicted = logits.detach()[:, 0].float().cpu().numpy()
        threshold = logit(cfg.threshold)
        for stream, pred in zip(self.streams, predicted):
            stream.steps_taken += 1
            if stream.write_back(pred, fov):
                self.counts.add(stream.example.canvas, stream.example.target, threshold,
                                steps=stream.steps_taken)
                self.last_example = stream.example
        self.global_step += 1
        value = float(loss.detach())
        self._loss_sum += value
        self._loss_steps += 1
        return value

    # -- summaries --------------------------------------------------------------------------

    def summarize(self, steps_per_sec: float = float("nan")) -> dict:
        """Statistics since the last summary (then reset): mean training loss, precision, recall,
        F1 and the trivial F1 over finished examples, and steps/s. Appended to ``history``."""
        row = {"step": self.global_step,
               "loss": self._loss_sum / self._loss_steps if self._loss_steps else float("nan")}
        row.update(self.counts.metrics())
        row["steps_per_sec"] = float(steps_per_sec)
        row["learning_rate"] = self.config.learning_rate_at(max(self.global_step - 1, 0))
        self.history.append(row)
        self.counts = EvalCounts()
        self._loss_sum, self._loss_steps = 0.0, 0
        return row

    def train(
        self,
        steps: int,
        *,
        summary_every: int | None = 100,
        summary_secs: float | None = None,
        writer: SummaryLogger | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_secs: float | None = 300.0,
        keep_checkpoints: int = 5,
        progress: bool = True,
        callback: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """Train until ``global_step`` reaches ``steps`` (a total, like ``--max_steps``).

        Summaries (see :meth:`summarize`) every ``summary_every`` steps or ``summary_secs`` seconds
        and at the end; they go to ``history``, to ``writer`` (TensorBoard) and to ``callback``.
        With ``checkpoint_dir``, a checkpoint ``model.ckpt-<step>.pt`` is written every
        ``checkpoint_secs`` seconds and at the end, and only the newest ``keep_checkpoints`` of
        that folder are kept (0 keeps all). Returns the summaries of this call.
        """
        start_step = self.global_step
        rows: list[dict] = []
        t_summary = t_ckpt = time.perf_counter()
        steps_at_summary = self.global_step
        bar = tqdm(total=max(steps - start_step, 0), desc="FFN training", unit="step", disable=not progress)
        try:
            while self.global_step < steps:
                loss = self.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                now = time.perf_counter()
                due = (summary_every is not None and self.global_step % summary_every == 0) or (
                    summary_secs is not None and now - t_summary >= summary_secs
                )
                if due or self.global_step == steps:
                    rate = (self.global_step - steps_at_summary) / max(now - t_summary, 1e-9)
                    row = self.summarize(rate)
                    rows.append(row)
                    if writer is not None:
                        writer.log(row, self.last_example, self.config)
                    if callback is not None:
                        callback(row)
                    t_summary, steps_at_summary = time.perf_counter(), self.global_step
                if checkpoint_dir is not None and (
                    self.global_step == steps
                    or (checkpoint_secs is not None and now - t_ckpt >= checkpoint_secs)
                ):
                    self.save(checkpoint_path(checkpoint_dir, self.global_step), overwrite=True)
                    prune_checkpoints(checkpoint_dir, keep_checkpoints)
                    t_ckpt = time.perf_counter()
        finally:
            bar.close()
        return rows

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: tensors and plain Python types only."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.as_dict(),
            "step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "sampler": self.sampler.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "normalization": {n: [v.image_mean, v.image_stddev] for n, v in self.volumes.items()},
            "move_order": [list(m) for m in self.move_order],
            "streams": [s.state() for s in self.streams],
            "counts": asdict(self.counts),
            "loss_accumulator": [self._loss_sum, self._loss_steps],
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (the config must be the same)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a neurotut FFN checkpoint")
        if "optimizer" not in state:
            raise ValueError("the checkpoint holds only a network (converted from TensorFlow?); "
                             "it cannot resume a training run")
        if TrainConfig.from_dict(state["config"]) != self.config:
            raise ValueError(
                "the checkpoint was written with another configuration:\n"
                f"  checkpoint: {state['config']}\n  this run:   {self.config.as_dict()}\n"
                "use a new train_dir for a different configuration"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        self.sampler.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in state["rng"]["cuda"]])
        self.move_order = [tuple(m) for m in state["move_order"]]
        for stream, st in zip(self.streams, state["streams"], strict=True):
            stream.example, stream.policy, stream.offset, stream.steps_taken = None, None, None, 0
            if st is None:
                continue
            aug = Augmentation(tuple(st["augmentation"]["permutation"]), tuple(st["augmentation"]["flips"]))
            example = load_example(self.volumes[st["volume"]], st["center"], self.config, aug)
            example.canvas = st["canvas"].cpu().numpy().copy()
            stream.example = example
            stream.policy = make_policy(self.config, self.move_order, st["policy"])
            stream.offset = None if st["offset"] is None else tuple(st["offset"])
            stream.steps_taken = int(st["steps_taken"])
        self.counts = EvalCounts(**state["counts"])
        self._loss_sum, self._loss_steps = state["loss_accumulator"]
        self.history = list(state["history"])

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a checkpoint atomically (an existing file is refused unless ``overwrite``)."""
        with atomic_path(path, overwrite) as tmp:
            torch.save(self.state_dict(), tmp)
        return Path(path)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        volumes: Sequence[TrainVolume],
        sampler: BalancedSampler,
        device: torch.device | str | None = None,
    ) -> Trainer:
        """A trainer restored from a checkpoint written by :meth:`save`."""
        state = load_checkpoint(path)
        trainer = cls(TrainConfig.from_dict(state["config"]), volumes, sampler, device)
        trainer.load_state_dict(state)
        return trainer


def checkpoint_path(train_dir: str | os.PathLike, step: int) -> Path:
    """``train_dir/model.ckpt-<step>.pt`` (the original's checkpoint name plus ``.pt``)."""
    return Path(train_dir) / f"model.ckpt-{int(step)}.pt"


def latest_checkpoint(train_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``train_dir``, or None."""
    folder = Path(train_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return max(found)[1] if found else None


def prune_checkpoints(train_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` ``model.ckpt-<step>.pt`` files of ``train_dir``
    (``keep`` 0: none deleted). Returns the deleted paths."""
    if keep <= 0:
        return []
    found = sorted((int(m.group(1)), p) for p in Path(train_dir).iterdir() if (m := _CKPT_RE.match(p.name)))
    doomed = [p for _, p in found[:-keep]]
    for p in doomed:
        p.unlink()
    return doomed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (``torch.load(weights_only=True)``)."""
    state = load_torch_checkpoint(path, map_location, what="FFN checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a neurotut FFN checkpoint")
    return state


def model_from_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[ConvStack3DFFN, TrainConfig]:
    """The trained network (in eval mode) and the run's config, e.g. for inference."""
    state = load_checkpoint(path, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    model = ConvStack3DFFN(config.model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config


# --------------------------------------------------------------------------------------------
# TensorBoard


def center_slices(example: Example) -> dict[str, np.ndarray]:
    """Images of an example's centre planes, each (H, W) float32 in [0, 1]: image, target and
    predicted probability side by side, for the xy, xz and yz planes through the centre."""
    cz, cy, cx = (s // 2 for s in example.canvas.shape)
    prob = expit(example.canvas.astype(np.float64))
    img = example.image
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    planes = {"xy": (slice(cz, cz + 1), slice(None), slice(None)),
              "xz": (slice(None), slice(cy, cy + 1), slice(None)),
              "yz": (slice(None), slice(None), slice(cx, cx + 1))}
    out = {}
    for name, sl in planes.items():
        tiles = [np.squeeze(a[sl]) for a in (img, example.target, prob)]
        gap = np.ones((tiles[0].shape[0], 1))
        out[name] = np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1).astype(np.float32)
    return out


class SummaryLogger:
    """Writes summaries to TensorBoard (``torch.utils.tensorboard``) in ``log_dir``.

    Needs the ``tensorboard`` package; without it, a message says so and nothing is logged
    (training is unaffected).
    """

    def __init__(self, log_dir: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("neurotut: the tensorboard package is not installed; no TensorBoard logs "
                  "(pip install tensorboard)")
            self.writer = None
        else:
            self.writer = SummaryWriter(str(log_dir))

    def log(self, row: dict, example: Example | None, config: TrainConfig | None = None) -> None:
        if self.writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and value == value:  # skip NaN
                self.writer.add_scalar(f"ffn/{key}", value, step)
        if example is not None:
            for plane, image in center_slices(example).items():
                self.writer.add_image(f"center_{plane}/image|target|prediction", image[None], step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
