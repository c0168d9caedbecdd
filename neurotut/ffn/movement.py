"""The inference movement policy (google/ffn ``movement.py``).

After each network step, on each of the six faces of the box ``centre +- deltas``, the arg-max
logit is a candidate next centre if it is at least the score threshold. The candidates of one
step, best first, are appended to a FIFO queue (breadth-first over steps). A popped candidate is
skipped when its position quantised to the delta grid around the start,
``(pos - start + delta // 2) // delta``, was already visited, or when the caller finds it invalid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from neurotut.geometry import Pos, as_zyx


def scored_moves(logits: np.ndarray, deltas: Sequence[int], threshold: float) -> list[tuple[float, Pos]]:
    """Candidate moves from one FOV's logits: the arg-max of each face of ``centre +- deltas``.

    Args:
        logits: ``(Z, Y, X)`` logits of the FOV (odd sizes; the centre is ``shape // 2``).
        deltas: ``(z, y, x)`` move step; an axis with delta 0 has no faces.
        threshold: minimum logit of a face maximum.

    Returns:
        ``[(score, (dz, dy, dx)), ...]`` offsets relative to the FOV centre, best first (ties:
        larger offset first, the order of the original's reverse sort); duplicates (a voxel on
        two faces) appear once.
    """
    logits = np.asarray(logits)
    center = np.asarray(logits.shape) // 2
    deltas = [int(d) for d in deltas]
    box = [slice(c - d, c + d + 1) for c, d in zip(center, deltas)]
    found: set[tuple[float, Pos]] = set()
    for axis, d in enumerate(deltas):
        if d == 0:
            continue
        for offset in (-d, d):
            sel = list(box)
            sel[axis] = int(center[axis] + offset)
            face = logits[tuple(sel)]
            flat = int(np.argmax(face))
            score = float(face.flat[flat])
            if not score >= threshold:
                continue
            fpos = np.unravel_index(flat, face.shape)
            rel = [int(fpos[0] - face.shape[0] // 2), int(fpos[1] - face.shape[1] // 2)]
            rel.insert(axis, offset)
            found.add((score, (rel[0], rel[1], rel[2])))
    return sorted(found, reverse=True)


class FaceMaxMovementPolicy:
    """FIFO queue of candidate FOV centres, fed with face maxima (google/ffn ``movement.py``).

    ``deltas`` are (z, y, x); ``score_threshold`` is a logit.
    """

    def __init__(self, deltas: Sequence[int], score_threshold: float):
        self.deltas = np.asarray(as_zyx(deltas, "deltas"), dtype=np.int64)
        self.score_threshold = float(score_threshold)
        self.queue: deque[tuple[float, Pos]] = deque()
        self.done: set[Pos] = set()
        self.start: Pos = (0, 0, 0)

    def reset(self, start: Sequence[int]) -> None:
        """Empty queue and visited set; quantise around ``start`` from now on."""
        self.queue = deque()
        self.done = set()
        self.start = tuple(int(v) for v in start)  # type: ignore[assignment]

    def quantize(self, pos: Sequence[int]) -> Pos:
        """The cell of the delta grid centred on the start point that ``pos`` falls into."""
        step = np.maximum(self.deltas, 1)
        rel = np.asarray(pos, dtype=np.int64) - self.start
        q = (rel + self.deltas // 2) // step
        return int(q[0]), int(q[1]), int(q[2])

    def append(self, item: tuple[float, Sequence[int]]) -> None:
        score, pos = item
        self.queue.append((float(score), tuple(int(v) for v in pos)))  # type: ignore[arg-type]

    def update(self, logits: np.ndarray, position: Sequence[int]) -> None:
        """Mark ``position`` visited and queue the face maxima of its FOV ``logits``."""
        self.done.add(self.quantize(position))
        p = [int(v) for v in position]
        for score, off in scored_moves(logits, self.deltas, self.score_threshold):
            self.queue.append((score, (p[0] + off[0], p[1] + off[1], p[2] + off[2])))

    def pop(self, is_valid: Callable[[Pos], bool]) -> Pos | None:
        """The next candidate not yet visited (on the grid) and valid now; None when exhausted."""
        while self.queue:
            _, pos = self.queue.popleft()
            if self.quantize(pos) in self.done:
                continue
            if is_valid(pos):
                return pos
        return None

    def __len__(self) -> int:
        return len(self.queue)
