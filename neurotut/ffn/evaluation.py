"""FFN evaluation (google/ffn ``training/tracker.py``'s ``EvalTracker``): voxel counts of
finished examples against their targets, and the evaluation of a network on fixed centres."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurotut.ffn.examples import run_examples
from neurotut.ffn.inputs import Example, TrainVolume, load_example
from neurotut.ffn.model import ConvStack3DFFN, logit
from neurotut.ffn.train_config import TrainConfig


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
