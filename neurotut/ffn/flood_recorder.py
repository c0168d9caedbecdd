"""Watching one object grow: a callback for :meth:`neurotut.ffn.inference.Canvas.segment_at`
that keeps the seed plane, the movement queue and the visited centres after every step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurotut.ffn.inference import Canvas
from neurotut.ffn.model import logit
from neurotut.geometry import Pos


@dataclass
class FloodFrame:
    """The state after one step of :meth:`Canvas.segment_at`, for pictures and animations."""

    #: step number: 0 is the start (only the seed voxel set), then 1, 2, ... after each step
    step: int
    #: (z, y, x) FOV centre of this step
    pos: Pos
    #: (Y, X) float32 seed logits on the recorded plane (NaN = not visited)
    plane: np.ndarray
    #: (K, 3) int64 positions waiting in the movement queue, in the order they will be popped
    queue: np.ndarray
    #: (S, 3) int64 FOV centres visited so far, this one included
    visited: np.ndarray


class FloodRecorder:
    """A ``callback`` for :meth:`Canvas.segment_at` that keeps :class:`FloodFrame` s.

    Records the start (step 0: only the seed voxel, at logit(init_activation)), then the seed on
    the plane ``z`` every ``every`` steps (and always the first step); call :meth:`finish` after
    ``segment_at`` to add the final state if it was not recorded.
    """

    def __init__(self, z: int, every: int = 1):
        self.z = int(z)
        self.every = max(1, int(every))
        self.frames: list[FloodFrame] = []
        self._visited: list[Pos] = []
        self._last: tuple[Canvas, Pos] | None = None

    def __call__(self, canvas: Canvas, pos: Pos, logits: np.ndarray) -> None:
        if not self._visited:  # the state before the first network call: the seed voxel alone
            plane = np.full(canvas.seed.shape[1:], np.nan, np.float32)
            if pos[0] == self.z:
                plane[pos[1], pos[2]] = logit(canvas.options.init_activation)
            empty = np.zeros((0, 3), np.int64)
            self.frames.append(FloodFrame(0, pos, plane, empty, empty))
        self._visited.append(pos)
        self._last = (canvas, pos)
        if len(self._visited) == 1 or len(self._visited) % self.every == 0:
            self._record(canvas, pos)

    def _record(self, canvas: Canvas, pos: Pos) -> None:
        queue = np.asarray([p for _, p in canvas.movement.queue], dtype=np.int64).reshape(-1, 3)
        self.frames.append(
            FloodFrame(len(self._visited), pos, canvas.seed[self.z].copy(), queue,
                       np.asarray(self._visited, dtype=np.int64).reshape(-1, 3))
        )

    def finish(self) -> list[FloodFrame]:
        """Add the final state (if not the last frame already); returns the frames."""
        if self._last is not None and (not self.frames or self.frames[-1].step != len(self._visited)):
            self._record(*self._last)
        return self.frames
