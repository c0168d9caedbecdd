"""Running FOV moves on training examples: one example stream per batch slot
(:class:`ExampleStream`), and :func:`run_examples`, the move loop without training (for
evaluation and pictures). The canvas is data, not a graph: no gradient crosses moves."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from neurotut.ffn.fov_policies import FixedMoves, MaxPredMoves, fixed_move_order, make_policy
from neurotut.ffn.inputs import Example, fov_slices
from neurotut.ffn.model import ConvStack3DFFN
from neurotut.ffn.train_config import TrainConfig


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


def to_device_batch(arrays: list[np.ndarray], device: torch.device, channels_last: bool) -> torch.Tensor:
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
            logits = model(to_device_batch([p[0] for p in parts], device, False),
                           to_device_batch([p[1] for p in parts], device, False))
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
