"""How the field of view (FOV) moves inside a training example (google/ffn ``train.py``
``fixed_offsets`` / ``max_pred_offsets``): the ``fixed`` and the ``max_pred_moves`` policies.

Offsets are (z, y, x) relative to the patch centre.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from neurotut.ffn.model import logit, shifts
from neurotut.ffn.train_config import TrainConfig


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


def make_policy(config: TrainConfig, order: Sequence[Sequence[int]], state: dict | None = None):
    """A fresh (or restored) move policy for one example."""
    threshold = logit(config.threshold)
    if config.fov_policy == "fixed":
        return FixedMoves(order, threshold, (state or {}).get("position", 0))
    kwargs = {}
    if state is not None:
        kwargs = {"queue": state["queue"], "done": state["done"]}
    return MaxPredMoves(config.model.deltas, config.model.fov_size, config.patch_size, threshold, **kwargs)
