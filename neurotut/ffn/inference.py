"""FFN inference: flood-filling one object after another (google/ffn ``inference.py``, ``movement.py``).

The :class:`Canvas` holds the state of one subvolume, all arrays (Z, Y, X):

* ``seed``: float32 object-mask logits of the object being grown; NaN = not visited yet.
* ``segmentation``: int32 ids; 0 = free, -1 = a rejected seed location, > 0 = a segment.
* ``seg_prob``: uint8 quantised probability of the segment that owns each voxel.

**One object** (:meth:`Canvas.segment_at`): the seed is reset to NaN and set to
``logit(init_activation)`` at the start point. The field of view (FOV) then moves as the
:class:`FaceMaxMovementPolicy` says. At every position the network gets the normalised image and
the seed inside the FOV (NaN replaced by ``logit(pad_value)``) and returns new logits, which
**overwrite** the FOV in the canvas after the *disconnected-seed bias*: when any of the new FOV is
at or above the move threshold, voxels that were below logit 0.5 = 0 may not rise again. The run
stops when the queue is empty or the value at the start point drops below the move threshold.

**Movement**: after each step, on each of the six faces of the box ``centre +- deltas``, the
arg-max logit is a candidate next centre if it is at least ``logit(move_threshold)``. The
candidates of one step, best first, are appended to a FIFO queue (breadth-first over steps). A
popped candidate is skipped when its position quantised to the delta grid around the start,
``(pos - start + delta // 2) // delta``, was already visited, or when the position is no longer
valid (seed below the threshold, FOV outside the volume, or already segmented).

**The subvolume** (:meth:`Canvas.segment_all`): every point of the seed policy (see
:mod:`neurotut.ffn.seeds`) is tried in turn. A point is skipped when invalid, and marked -1 when
a segmented voxel lies within ``min_boundary_dist`` (z, y, x) of it. Otherwise one object is
grown; it is rejected (marked -1) when the seed went weak or when fewer than ``min_segment_size``
voxels with probability >= ``segment_threshold`` are still free. Voxels already owned by a segment
are never taken (first come keeps the voxel); the segments a new object overlapped are recorded
in ``overlaps`` and its seed, step count and time in ``origins``. No connected-component step
happens here; :func:`neurotut.ffn.storage.load_segmentation` splits components on load.

Deviations from the original, all of them documented where they live: checkpoints are written
between seed points only (the original can also checkpoint inside an object); several positions
are evaluated in one network call only when this provably gives the sequential result
(``batch_size``); the request may also be YAML.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.special import expit
from tqdm.auto import tqdm

from neurotut.ffn import storage
from neurotut.ffn.partitions import as_zyx
from neurotut.ffn.seeds import SEED_POLICIES, SeedPolicy, make_seed_policy
from neurotut.ffn.storage import OriginInfo
from neurotut.io import (
    atomic_path,
    check_can_write,
    check_dataset,
    get_dataset,
    open_h5,
    parse_volume_spec,
)

#: the original's cap on self-consistency iterations per position
MAX_SELF_CONSISTENT_ITERS = 32

#: a network evaluated on a batch: images (B, Z, Y, X) float32 (normalised) and seed logits
#: (B, Z, Y, X) float32 -> updated logits (B, Z, Y, X) float32
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
Pos = tuple[int, int, int]


def logit(p: float) -> float:
    """``ln(p / (1 - p))``; logit(0.95) = 2.944, logit(0.9) = 2.197, logit(0.6) = 0.405."""
    return float(np.log(p / (1.0 - p)))


@dataclass(frozen=True)
class InferenceOptions:
    """The original's ``InferenceOptions`` (probabilities, not logits; sizes z, y, x).

    Defaults are the sample request's (and the ffn_windows SNEMI3D request's). google/ffn's
    newer manual recommends ``pad_value=0.5``, ``move_threshold=0.6``,
    ``min_boundary_dist=(1, 2, 2)`` and says ``pad_value`` / ``move_threshold`` should match
    training's ``seed_pad`` / ``threshold``.
    """

    #: probability placed at the seed point of a new object
    init_activation: float = 0.95
    #: probability fed to the network for voxels not visited yet
    pad_value: float = 0.05
    #: a face maximum must reach this probability to become a move; the seed must stay above it
    move_threshold: float = 0.9
    #: (z, y, x) half-size of the box around a seed point that must hold no segmented voxel
    min_boundary_dist: tuple[int, int, int] = (1, 1, 1)
    #: probability at which a grown object's voxels become the segment
    segment_threshold: float = 0.6
    #: fewer free voxels than this: the object is rejected
    min_segment_size: int = 1000
    #: > 0: re-run the network at a position until the mean absolute change of probability is below it
    consistency_threshold: float = 0.0
    #: >= 0: the disconnected-seed bias is applied when the share of the FOV at or above the move
    #: threshold exceeds this (0 = on for any move); < 0 switches it off
    disco_seed_threshold: float = 0.0

    def __post_init__(self) -> None:
        for name in ("init_activation", "pad_value", "move_threshold", "segment_threshold"):
            value = float(getattr(self, name))
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} is a probability strictly between 0 and 1, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(
            self, "min_boundary_dist", as_zyx(self.min_boundary_dist, "min_boundary_dist")
        )
        if int(self.min_segment_size) < 0:
            raise ValueError(f"min_segment_size must be >= 0, got {self.min_segment_size}")
        object.__setattr__(self, "min_segment_size", int(self.min_segment_size))
        object.__setattr__(self, "consistency_threshold", float(self.consistency_threshold))
        object.__setattr__(self, "disco_seed_threshold", float(self.disco_seed_threshold))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["min_boundary_dist"] = list(self.min_boundary_dist)
        return d


# ---------------------------------------------------------------------------------------------
# the network


class TorchPredictor:
    """Evaluates a :class:`~neurotut.ffn.model.ConvStack3DFFN` on batches of FOVs.

    ``predictor(images, seeds)`` with both ``(B, Z, Y, X) float32`` returns the updated logits
    ``(B, Z, Y, X) float32``. ``mixed_precision=True`` runs the convolutions under autocast
    (float16 on CUDA, bfloat16 on CPU); the additive seed update stays float32. It changes the
    numbers slightly, so compare its segmentation with a float32 run before relying on it.
    """

    def __init__(self, model, device=None, mixed_precision: bool = False):
        import torch

        from neurotut import config

        self.device = torch.device(device) if device is not None else config.get_device(verbose=False)
        self.model = model.to(self.device).eval()
        self.mixed_precision = bool(mixed_precision)
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16

    def __call__(self, images: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            img = torch.from_numpy(np.ascontiguousarray(images, np.float32)[:, None]).to(self.device)
            sd = torch.from_numpy(np.ascontiguousarray(seeds, np.float32)[:, None]).to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.mixed_precision):
                out = self.model(img, sd)
            return out[:, 0].float().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# movement


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


# ---------------------------------------------------------------------------------------------
# the canvas


def _boxes_overlap(a: Pos, b: Pos, size: np.ndarray) -> bool:
    return all(abs(a[i] - b[i]) < size[i] for i in range(3))


class Canvas:
    """State of the inference in one subvolume (see the module docstring).

    Args:
        image: normalised image ``(Z, Y, X) float32`` (``(raw - mean) / std``).
        predictor: the network, see :data:`Predictor` (e.g. a :class:`TorchPredictor`).
        fov_size: ``(z, y, x)`` FOV of the network, odd.
        deltas: ``(z, y, x)`` FOV move step.
        options: :class:`InferenceOptions` (probabilities; turned into logits here).
        mask: optional ``(Z, Y, X) bool``, True = never segment: the FOV does not move to a masked
            centre, no seed starts there and PolicyPeaks treats it as edge.
        seed_mask: optional ``(Z, Y, X) bool``, True = no seed starts there.
        checkpoint_path: where :meth:`segment_all` saves its state (``.cpoint``); None = never.
        checkpoint_interval: seconds between checkpoints; 0 = after every seed point.
        batch_size: most positions per network call. Positions are only evaluated together
            when the sequential algorithm would evaluate them one after the other with the same
            inputs (their FOVs do not overlap and each one's validity is already decided), so the
            segmentation is the same for every batch size (only skip counters may differ).
    """

    def __init__(
        self,
        image: np.ndarray,
        predictor: Predictor,
        fov_size: Sequence[int],
        deltas: Sequence[int],
        options: InferenceOptions | None = None,
        mask: np.ndarray | None = None,
        seed_mask: np.ndarray | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_interval: float | None = None,
        batch_size: int = 1,
    ):
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"image must be (Z, Y, X), got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(
                f"image must be the normalised float image, got {image.dtype}; use "
                "normalize_image(raw, mean, std)"
            )
        self.image = image.astype(np.float32, copy=False)
        self.shape: Pos = tuple(int(s) for s in image.shape)  # type: ignore[assignment]
        self.fov_size = np.asarray(as_zyx(fov_size, "fov_size", 1), dtype=np.int64)
        if np.any(self.fov_size % 2 == 0):
            raise ValueError(f"fov_size (z, y, x) must be odd, got {tuple(self.fov_size)}")
        if np.any(self.fov_size > np.asarray(self.shape)):
            raise ValueError(
                f"the volume {self.shape} is smaller than the FOV {tuple(self.fov_size)} (z, y, x); "
                "no position has enough context"
            )
        self.margin = self.fov_size // 2
        self.deltas = np.asarray(as_zyx(deltas, "deltas"), dtype=np.int64)
        if np.any(self.deltas > self.margin):
            raise ValueError(f"deltas {tuple(self.deltas)} must not exceed half the FOV {tuple(self.fov_size)}")
        self.options = options or InferenceOptions()
        self.predictor = predictor
        self.mask = self._check_mask(mask, "mask")
        self.seed_mask = self._check_mask(seed_mask, "seed_mask")
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.checkpoint_interval = checkpoint_interval
        self.batch_size = max(1, int(batch_size))
        if self.options.consistency_threshold > 0:
            self.batch_size = 1  # the self-consistency loop is per position

        o = self.options
        self.t_init = np.float32(logit(o.init_activation))
        self.t_pad = np.float32(logit(o.pad_value))
        self.t_move = np.float32(logit(o.move_threshold))
        self.t_segment = np.float32(logit(o.segment_threshold))

        self.seed = np.full(self.shape, np.nan, dtype=np.float32)
        self.segmentation = np.zeros(self.shape, dtype=np.int32)
        self.seg_prob = np.zeros(self.shape, dtype=np.uint8)
        self.origins: dict[int, OriginInfo] = {}
        self.overlaps: dict[int, np.ndarray] = {}
        self.counters: Counter = Counter()
        self.movement = FaceMaxMovementPolicy(self.deltas, float(self.t_move))
        #: FOV centres of the current object, in order
        self.history: list[Pos] = []
        self.seed_policy: SeedPolicy | None = None
        self._max_id = 0
        self._min_pos = np.zeros(3, np.int64)
        self._max_pos = np.zeros(3, np.int64)
        self._dirty: tuple[slice, ...] | None = None
        self._seed_policy_state: dict | None = None
        self._checkpoint_last = time.time()

    def _check_mask(self, mask: np.ndarray | None, name: str) -> np.ndarray | None:
        if mask is None:
            return None
        mask = np.asarray(mask).astype(bool, copy=False)
        if mask.shape != self.shape:
            raise ValueError(f"{name} shape {mask.shape} differs from the image shape {self.shape}")
        return mask

    # -- positions ------------------------------------------------------------------------------

    def fov_slices(self, pos: Sequence[int]) -> tuple[slice, slice, slice]:
        """The slices of the FOV centred at ``pos``."""
        m = self.margin
        return tuple(slice(int(p) - int(mi), int(p) + int(mi) + 1) for p, mi in zip(pos, m))  # type: ignore[return-value]

    def is_valid_pos(self, pos: Pos, ignore_move_threshold: bool = False) -> bool:
        """Whether the network should run at ``pos``: seed not below the move threshold (unless
        ignored, for a new seed), FOV inside the volume, and not already segmented."""
        if not ignore_move_threshold and self.seed[pos] < self.t_move:
            self.counters["skip_threshold"] += 1
            return False
        for p, m, s in zip(pos, self.margin, self.shape):
            if p - m < 0 or p + m >= s:
                self.counters["skip_invalid_pos"] += 1
                return False
        if self.segmentation[pos] > 0:
            self.counters["skip_invalid_pos"] += 1
            return False
        return True

    def _masked(self, pos: Pos) -> bool:
        return self.mask is not None and bool(self.mask[pos])

    # -- one network step -------------------------------------------------------------------------

    def _predict(self, positions: Sequence[Pos], seeds: np.ndarray) -> np.ndarray:
        images = np.stack([self.image[self.fov_slices(p)] for p in positions])
        t0 = time.perf_counter()
        out = self.predictor(images, seeds)
        self.counters["time-network-s"] += time.perf_counter() - t0
        self.counters["network-calls"] += 1
        self.counters["network-positions"] += len(positions)
        out = np.asarray(out, dtype=np.float32)
        if out.shape != seeds.shape:
            raise ValueError(f"the predictor returned {out.shape}, expected {seeds.shape}")
        return out

    def _seed_input(self, pos: Pos) -> np.ndarray:
        values = self.seed[self.fov_slices(pos)].copy()
        values[np.isnan(values)] = self.t_pad
        return values

    def _evaluate(self, positions: Sequence[Pos]) -> np.ndarray:
        """New logits ``(B, Z, Y, X)`` at ``positions`` (with the self-consistency loop if set)."""
        seeds = np.stack([self._seed_input(p) for p in positions])
        logits = self._predict(positions, seeds)
        thr = self.options.consistency_threshold
        if thr > 0:  # one position only (batch_size is 1 then)
            prob_seed = expit(seeds)
            for _ in range(MAX_SELF_CONSISTENT_ITERS - 1):
                prob = expit(logits)
                if np.mean(np.abs(prob_seed - prob)) < thr:
                    break
                prob_seed, seeds = prob, logits
                logits = self._predict(positions, seeds)
        return logits

    def _apply(self, pos: Pos, logits: np.ndarray) -> np.ndarray:
        """Disconnected-seed bias, then overwrite the canvas FOV; returns the logits written."""
        sel = self.fov_slices(pos)
        if self.options.disco_seed_threshold >= 0:
            if np.mean(logits >= self.t_move) > self.options.disco_seed_threshold:
                old = self.seed[sel]
                with np.errstate(invalid="ignore"):  # NaN (unvisited) compares False: exempt
                    frozen = (old < 0) & (logits > old)
                logits[frozen] = old[frozen]
        self.seed[sel] = logits
        return logits

    def update_at(self, pos: Pos) -> np.ndarray:
        """Run the network at ``pos`` and write the result into the canvas; returns its logits."""
        return self._apply(pos, self._evaluate([pos])[0])

    # -- one object -----------------------------------------------------------------------------

    def _reset_seed(self) -> None:
        if self._dirty is not None:
            self.seed[self._dirty] = np.nan
        self._dirty = None

    def _collect_batch(self, first: Pos) -> list[Pos]:
        """``first`` plus queued positions the sequential run would evaluate next, unchanged.

        A candidate joins when it is on an unvisited grid cell, valid now, unmasked, and its FOV
        overlaps no FOV of the batch: then nothing the batch writes can change its input, its
        validity or the order (the queue is FIFO and the batch's new candidates go behind it).
        Collection stops at the first candidate whose fate depends on the batch's results.
        """
        batch = [first]
        cells = {self.movement.quantize(first)}
        queue = self.movement.queue
        while len(batch) < self.batch_size and queue:
            _, cand = queue[0]
            cell = self.movement.quantize(cand)
            if cell in self.movement.done or cell in cells:
                queue.popleft()
                continue
            if any(_boxes_overlap(cand, b, self.fov_size) for b in batch):
                break
            queue.popleft()
            if not self.is_valid_pos(cand):
                continue
            if self._masked(cand):
                self.counters["skip_restricted_pos"] += 1
                continue
            batch.append(cand)
            cells.add(cell)
        return batch

    def segment_at(
        self,
        start: Sequence[int],
        callback: Callable[[Canvas, Pos, np.ndarray], None] | None = None,
    ) -> int:
        """Grow one object from ``start`` (z, y, x); returns the number of network steps.

        ``callback(canvas, pos, logits)`` is called after every step (e.g. to record frames of
        an animation). The object is left in ``canvas.seed``; nothing is segmented here.
        """
        start = tuple(int(v) for v in start)
        self._reset_seed()
        self.seed[start] = self.t_init
        self.movement.reset(start)
        self.history = []
        self._min_pos = np.asarray(start, np.int64)
        self._max_pos = np.asarray(start, np.int64)
        self._dirty = tuple(slice(s, s + 1) for s in start)
        self.movement.append((2 * float(self.t_move), start))
        num_iters = 0
        while True:
            pos = self.movement.pop(self.is_valid_pos)
            if pos is None:
                break
            if self.seed[start] < self.t_move:
                self.counters["seed_got_too_weak"] += 1
                break
            if self._masked(pos):
                self.counters["skip_restricted_pos"] += 1
                continue
            batch = self._collect_batch(pos) if self.batch_size > 1 else [pos]
            self.counters[f"batch-size-{len(batch)}"] += 1
            results = self._evaluate(batch)
            for k, (p, logits) in enumerate(zip(batch, results)):
                if k > 0 and self.seed[start] < self.t_move:
                    self.counters["seed_got_too_weak"] += 1
                    return num_iters
                logits = self._apply(p, logits)
                self._min_pos = np.minimum(self._min_pos, p)
                self._max_pos = np.maximum(self._max_pos, p)
                self._dirty = tuple(
                    slice(int(lo - m), int(hi + m + 1))
                    for lo, hi, m in zip(self._min_pos, self._max_pos, self.margin)
                )
                num_iters += 1
                self.movement.update(logits, p)
                self.history.append(p)
                if callback is not None:
                    callback(self, p, logits)
        return num_iters

    # -- the subvolume ----------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._max_id += 1
        while self._max_id in self.origins:
            self._max_id += 1
        return self._max_id

    def make_seed_policy(self, seed_policy: str | SeedPolicy = "PolicyPeaks", **kwargs) -> SeedPolicy:
        """A seed policy over this canvas' image, margin and mask."""
        if isinstance(seed_policy, SeedPolicy):
            return seed_policy
        return make_seed_policy(seed_policy, self.image, self.margin, self.mask, **kwargs)

    def segment_all(
        self,
        seed_policy: str | SeedPolicy = "PolicyPeaks",
        seed_policy_args: Mapping | None = None,
        progress: bool = True,
        max_seeds: int | None = None,
    ) -> None:
        """Try every point of the seed policy; the result is left in ``segmentation``.

        Args:
            seed_policy: a policy name (``"PolicyPeaks"``, ``"PolicyGrid3d"``, ``"PolicyMax"``)
                or a :class:`~neurotut.ffn.seeds.SeedPolicy` over this canvas' image.
            seed_policy_args: keyword arguments for a policy given by name.
            max_seeds: stop after trying this many seed points (None: all); for demonstrations.

        After :meth:`restore_checkpoint`, continues where the checkpoint was written.
        """
        t_start = time.perf_counter()
        t0 = time.perf_counter()
        policy = self.make_seed_policy(seed_policy, **dict(seed_policy_args or {}))
        if self._seed_policy_state is not None:
            policy.set_state(self._seed_policy_state)
            self._seed_policy_state = None
        n_points = len(policy)  # computes the points
        self.counters["time-seed-policy-s"] += time.perf_counter() - t0
        self.seed_policy = policy
        mbd = np.asarray(self.options.min_boundary_dist, dtype=np.int64)
        bar = tqdm(total=n_points, initial=policy.idx, desc="seed points", unit="pt", disable=not progress)
        tried = 0
        try:
            for pos in policy:
                bar.update(policy.idx - bar.n)
                if max_seeds is not None and tried >= max_seeds:
                    policy.idx -= 1  # not tried: a resumed run starts here
                    break
                tried += 1
                self._try_seed(pos, mbd)
                bar.set_postfix(segments=len(self.origins), refresh=False)
                self._maybe_checkpoint()
            bar.update(policy.idx - bar.n)
        finally:
            bar.close()
            self.counters["time-segment_all-s"] += time.perf_counter() - t_start

    def try_seed(self, pos: Sequence[int]) -> int:
        """Try one seed point exactly as :meth:`segment_all` does (validity, ``min_boundary_dist``,
        growth, weak-seed and size rejection, first-come ownership); returns the id of the segment
        created, or 0 when none was. ``history`` then holds the FOV centres it visited."""
        before = self._max_id
        self.history = []
        self._try_seed(tuple(int(v) for v in pos), np.asarray(self.options.min_boundary_dist, np.int64))
        return self._max_id if self._max_id != before else 0

    def set_state(self, segmentation: np.ndarray, origins: Mapping[int, OriginInfo]) -> None:
        """Continue from an existing segmentation ``(Z, Y, X)`` (ids >= 0, e.g. a saved result, or
        one cut down to its first segments) and its ``origins``: new segments get ids after the
        largest origin; the seed, probabilities and overlaps start empty."""
        segmentation = np.asarray(segmentation)
        if segmentation.shape != self.shape:
            raise ValueError(f"segmentation shape {segmentation.shape} differs from the canvas {self.shape}")
        if not np.issubdtype(segmentation.dtype, np.integer):
            raise TypeError(f"segmentation must hold integer ids, got {segmentation.dtype}")
        if segmentation.size and int(segmentation.max()) > np.iinfo(np.int32).max:
            raise ValueError(f"segment id {int(segmentation.max())} does not fit the canvas (int32)")
        self.segmentation[...] = segmentation
        self.seg_prob[...] = 0
        self.origins = dict(origins)
        self.overlaps = {}
        self._max_id = max(self.origins, default=0)
        self.seed[...] = np.nan
        self._dirty = None

    def _try_seed(self, pos: Pos, mbd: np.ndarray) -> None:
        c = self.counters
        if not self.is_valid_pos(pos, ignore_move_threshold=True):
            c["seeds-invalid"] += 1
            return
        if self._masked(pos) or (self.seed_mask is not None and self.seed_mask[pos]):
            c["seeds-masked"] += 1
            return
        low = np.asarray(pos) - mbd
        high = np.asarray(pos) + mbd + 1
        if np.any(self.segmentation[tuple(slice(max(int(a), 0), int(b)) for a, b in zip(low, high))] > 0):
            self.segmentation[pos] = -1
            c["seeds-too-close"] += 1
            return
        t0 = time.perf_counter()
        num_iters = self.segment_at(pos)
        t_seg = time.perf_counter() - t0
        if num_iters <= 0:
            c["seeds-no-steps"] += 1
            c["invalid-other-time-ms"] += 1000 * t_seg
            return
        if self.seed[pos] < self.t_move:
            if self.segmentation[pos] == 0:
                self.segmentation[pos] = -1
            c["seeds-weak"] += 1
            c["invalid-weak-time-ms"] += 1000 * t_seg
            return
        sel = tuple(
            slice(max(int(lo - m), 0), int(hi + m + 1))
            for lo, hi, m in zip(self._min_pos, self._max_pos, self.margin)
        )
        seed = self.seed[sel]
        seg = self.segmentation[sel]
        mask = seed >= self.t_segment
        raw_voxels = int(mask.sum())
        ids, counts = np.unique(seg[mask], return_counts=True)
        keep = ids > 0
        ids, counts = ids[keep], counts[keep]
        mask &= seg <= 0
        voxels = int(mask.sum())
        if voxels < self.options.min_segment_size:
            if self.segmentation[pos] == 0:
                self.segmentation[pos] = -1
            c["seeds-too-small"] += 1
            c["invalid-small-time-ms"] += 1000 * t_seg
            return
        c["voxels-segmented"] += voxels
        c["voxels-overlapping"] += raw_voxels - voxels
        sid = self._next_id()
        seg[mask] = sid
        self.seg_prob[sel][mask] = storage.quantize_probability(expit(seed[mask]))
        self.overlaps[sid] = np.stack([ids.astype(np.int64), counts.astype(np.int64)])
        self.origins[sid] = OriginInfo(pos, num_iters, t_seg)
        c["segments-created"] += 1
        c["valid-time-ms"] += 1000 * t_seg

    def result(self) -> np.ndarray:
        """The segmentation with the -1 markers set to 0, ``(Z, Y, X)`` uint32."""
        return np.maximum(self.segmentation, 0).astype(np.uint32)

    # -- checkpoints ------------------------------------------------------------------------------

    def _identity(self) -> dict:
        return {
            "shape": list(self.shape),
            "fov_size": self.fov_size.tolist(),
            "deltas": self.deltas.tolist(),
            "options": self.options.as_dict(),
        }

    def _maybe_checkpoint(self) -> None:
        if self.checkpoint_path is None or self.checkpoint_interval is None:
            return
        if time.time() - self._checkpoint_last < self.checkpoint_interval:
            return
        self.save_checkpoint(self.checkpoint_path)
        self._checkpoint_last = time.time()

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Save the state between two seed points (replacing an older checkpoint), atomically.

        Holds segmentation, probabilities, origins, overlaps, counters, the seed policy's
        position and what identifies the run (shape, FOV, deltas, options); no pickles.
        """
        t0 = time.perf_counter()
        state = self.seed_policy.get_state() if self.seed_policy is not None else self._seed_policy_state
        path = Path(path)
        with atomic_path(path, overwrite=True) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    segmentation=self.segmentation,
                    seg_prob=self.seg_prob,
                    origins=storage.origins_to_array(self.origins),
                    overlaps=storage.overlaps_to_array(self.overlaps),
                    max_id=np.int64(self._max_id),
                    seed_policy_state=np.asarray(json.dumps(state)),
                    counters=np.asarray(json.dumps(dict(self.counters))),
                    identity=np.asarray(json.dumps(self._identity(), sort_keys=True)),
                )
        self.counters["checkpoints-saved"] += 1
        self.counters["time-checkpoint-s"] += time.perf_counter() - t0
        return path

    def restore_checkpoint(self, path: str | os.PathLike) -> None:
        """Load a checkpoint of :meth:`save_checkpoint`; :meth:`segment_all` then resumes.

        Raises ValueError when it was written for a different volume shape, FOV, deltas or
        options.
        """
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            identity = json.loads(str(data["identity"]))
            mine = json.loads(json.dumps(self._identity(), sort_keys=True))
            if identity != mine:
                diff = sorted(k for k in mine if identity.get(k) != mine[k])
                raise ValueError(
                    f"the inference checkpoint {path} belongs to another run (different {diff}); "
                    "delete it to start over, or use the settings it was written with"
                )
            self.segmentation[...] = data["segmentation"]
            self.seg_prob[...] = data["seg_prob"]
            self.origins = storage.origins_from_array(data["origins"])
            self.overlaps = storage.overlaps_from_array(data["overlaps"])
            self._max_id = int(data["max_id"])
            self._seed_policy_state = json.loads(str(data["seed_policy_state"]))
            self.counters = Counter(json.loads(str(data["counters"])))
        self.counters["checkpoints-restored"] += 1
        self.seed[...] = np.nan
        self._dirty = None


# ---------------------------------------------------------------------------------------------
# watching one object grow


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


# ---------------------------------------------------------------------------------------------
# whole-volume convenience


def normalize_image(raw: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(raw - mean) / std`` as ``(Z, Y, X) float32``, the image the network and seeds see."""
    if std <= 0:
        raise ValueError(f"image_stddev must be positive, got {std}")
    return ((np.asarray(raw, dtype=np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)


@dataclass
class InferenceResult:
    """What :func:`segment_volume` returns."""

    #: (Z, Y, X) uint32 ids, 0 = unsegmented (no connected-component splitting)
    segmentation: np.ndarray
    #: (Z, Y, X) uint8 quantised probability of each voxel's segment (0 = none)
    seg_prob: np.ndarray
    origins: dict[int, OriginInfo]
    overlaps: dict[int, np.ndarray]
    counters: dict[str, float] = field(default_factory=dict)


def segment_volume(
    raw: np.ndarray,
    predictor: Predictor,
    fov_size: Sequence[int],
    deltas: Sequence[int],
    options: InferenceOptions | None = None,
    image_mean: float | None = None,
    image_stddev: float | None = None,
    seed_policy: str | SeedPolicy = "PolicyPeaks",
    seed_policy_args: Mapping | None = None,
    mask: np.ndarray | None = None,
    batch_size: int = 1,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_interval: float | None = None,
    progress: bool = True,
) -> InferenceResult:
    """Segment a whole ``(Z, Y, X)`` volume with an FFN (one canvas, as ``run_inference.py``).

    ``raw`` is normalised with ``image_mean`` / ``image_stddev`` (defaults: its own mean and
    standard deviation); a float image is used as given when both are None. With a
    ``checkpoint_path``, an existing checkpoint is resumed and the checkpoint is removed at the
    end.
    """
    raw = np.asarray(raw)
    if image_mean is None and image_stddev is None and np.issubdtype(raw.dtype, np.floating):
        image = raw.astype(np.float32, copy=False)
    else:
        mean = float(raw.mean()) if image_mean is None else float(image_mean)
        std = float(raw.std()) if image_stddev is None else float(image_stddev)
        image = normalize_image(raw, mean, std)
    canvas = Canvas(
        image, predictor, fov_size, deltas, options, mask=mask, batch_size=batch_size,
        checkpoint_path=checkpoint_path, checkpoint_interval=checkpoint_interval,
    )
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        canvas.restore_checkpoint(checkpoint_path)
    canvas.segment_all(seed_policy, seed_policy_args, progress=progress)
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        Path(checkpoint_path).unlink()
    return InferenceResult(
        canvas.result(), canvas.seg_prob, canvas.origins, canvas.overlaps, dict(canvas.counters)
    )


# ---------------------------------------------------------------------------------------------
# the inference request (run_inference.py)

_TOKEN = re.compile(
    r"""\s*(?:(?P<comment>\#[^\n]*)|(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<punct>[{}:<>;,\[\]])|(?P<word>[^\s{}:<>;,"'\[\]\#]+))"""
)


def parse_text_proto(text: str) -> dict:
    """Parse protobuf text format (the original's ``.pbtxt`` requests) into nested dicts.

    ``name: value`` pairs and ``name { ... }`` messages; a repeated name becomes a list.
    Strings are unquoted, numbers become int/float, ``true``/``false`` bool.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot parse the text proto near {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "comment" or kind is None:
            continue
        tokens.append((kind, m.group(kind)))

    def value_of(kind: str, tok: str):
        if kind == "string":
            return ast.literal_eval(tok)
        low = tok.lower()
        if low in ("true", "false"):
            return low == "true"
        for cast in (int, float):
            try:
                return cast(tok)
            except ValueError:
                pass
        return tok  # an enum name

    def message(i: int, closing: str | None) -> tuple[dict, int]:
        out: dict = {}
        while i < len(tokens):
            kind, tok = tokens[i]
            if closing is not None and kind == "punct" and tok == closing:
                return out, i + 1
            if kind == "punct" and tok in ";,":
                i += 1
                continue
            if kind != "word":
                raise ValueError(f"expected a field name, found {tok!r}")
            name, i = tok, i + 1
            if i < len(tokens) and tokens[i] == ("punct", ":"):
                i += 1
            if i >= len(tokens):
                raise ValueError(f"field {name!r} has no value")
            kind, tok = tokens[i]
            if kind == "punct" and tok in "{<":
                value, i = message(i + 1, "}" if tok == "{" else ">")
            elif kind == "punct" and tok == "[":
                value, i = [], i + 1
                while tokens[i] != ("punct", "]"):
                    if tokens[i] != ("punct", ","):
                        value.append(value_of(*tokens[i]))
                    i += 1
                i += 1
            elif kind in ("string", "word"):
                value = value_of(kind, tok)
                i += 1
                while i < len(tokens) and tokens[i][0] == "string" and kind == "string":
                    value += ast.literal_eval(tokens[i][1])  # adjacent strings concatenate
                    i += 1
            else:
                raise ValueError(f"unexpected {tok!r} after field {name!r}")
            if name in out:
                if not isinstance(out[name], list) or isinstance(value, list):
                    out[name] = [out[name]]
                out[name].append(value)
            else:
                out[name] = value
        if closing is not None:
            raise ValueError(f"missing {closing!r} at the end of the text proto")
        return out, i

    return message(0, None)[0]


def _xyz_to_zyx(value, name: str) -> tuple[int, int, int]:
    """``{x:, y:, z:}`` or ``[x, y, z]`` (the original's order) -> (z, y, x)."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"x", "y", "z"}
        if unknown:
            raise ValueError(f"{name} has fields {sorted(unknown)}; use x, y and z")
        return int(value.get("z", 0)), int(value.get("y", 0)), int(value.get("x", 0))
    if isinstance(value, (list, tuple)) and len(value) == 3:
        x, y, z = (int(v) for v in value)
        return z, y, x
    raise ValueError(f"{name} must be {{x: .. y: .. z: ..}} or [x, y, z], got {value!r}")


_OPTION_FIELDS = {f for f in InferenceOptions.__dataclass_fields__}
_IGNORED_FIELDS = {"concurrent_requests", "model_name", "movement_policy_name"}
_UNSUPPORTED_FIELDS = {
    "masks", "seed_masks", "init_segmentation", "alignment_options", "shift_mask",
    "shift_mask_fov", "shift_mask_threshold", "shift_mask_scale", "histogram_matching",
    "self_prediction", "reference_histogram", "movement_policy_args",
}


@dataclass(frozen=True)
class InferenceRequest:
    """The original's ``InferenceRequest``, with the fields neurotut runs.

    ``image`` is ``file.h5:dataset`` (or ``@``); ``model_checkpoint_path`` a neurotut FFN
    checkpoint (``model.ckpt-<step>.pt`` of :mod:`neurotut.ffn.train`) or a google/ffn
    TensorFlow checkpoint prefix (``model.ckpt-7000000``, read by :mod:`neurotut.ffn.tf_model`);
    ``model_args`` the original's JSON with ``fov_size`` / ``deltas`` in x, y, z (optional for a
    neurotut checkpoint, which knows its architecture; when given, it must agree; a TensorFlow
    checkpoint takes its fov_size and deltas from it).
    """

    image: str
    image_mean: float
    image_stddev: float
    model_checkpoint_path: str
    segmentation_output_dir: str
    model_args: dict = field(default_factory=dict)
    seed_policy: str = "PolicyPeaks"
    seed_policy_args: dict = field(default_factory=dict)
    inference_options: InferenceOptions = field(default_factory=InferenceOptions)
    #: seconds between inference checkpoints; 0 = none (as in the original)
    checkpoint_interval: float = 0.0
    #: most positions per network call (results do not depend on it)
    batch_size: int = 1
    #: run the network under autocast (float16 on CUDA, bfloat16 on CPU); changes results slightly
    mixed_precision: bool = False

    @classmethod
    def from_dict(cls, data: Mapping) -> InferenceRequest:
        """From the parsed YAML or text proto (the original's field names)."""
        data = dict(data)
        unsupported = sorted(set(data) & _UNSUPPORTED_FIELDS)
        if unsupported:
            raise ValueError(f"the request uses {unsupported}, which neurotut's inference does not support")
        for name in _IGNORED_FIELDS & set(data):
            if name == "model_name" and "ConvStack3D" not in str(data[name]):
                raise ValueError(f"model_name {data[name]!r}: only ConvStack3DFFNModel is implemented")
            data.pop(name)
        image = data.pop("image", None)
        if isinstance(image, Mapping):
            if "hdf5" not in image:
                raise ValueError(f"image must name an HDF5 volume (image {{ hdf5: 'file.h5:raw' }}), got {image}")
            image = image["hdf5"]
        if "checkpoint" in data and "model_checkpoint_path" not in data:
            data["model_checkpoint_path"] = data.pop("checkpoint")
        missing = [k for k in ("image_mean", "image_stddev", "model_checkpoint_path", "segmentation_output_dir")
                   if k not in data] + ([] if image else ["image"])
        if missing:
            raise ValueError(f"the inference request lacks {missing}")
        options = dict(data.pop("inference_options", {}) or {})
        unknown = set(options) - _OPTION_FIELDS
        if unknown:
            raise ValueError(f"unknown inference_options {sorted(unknown)}; known: {sorted(_OPTION_FIELDS)}")
        if "min_boundary_dist" in options:
            options["min_boundary_dist"] = _xyz_to_zyx(options["min_boundary_dist"], "min_boundary_dist")
        for key in ("model_args", "seed_policy_args"):
            value = data.get(key)
            if isinstance(value, str):
                data[key] = json.loads(value) if value.strip() else {}
            elif value is None:
                data[key] = {}
        known = set(cls.__dataclass_fields__) - {"image", "inference_options"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown request fields {sorted(unknown)}; known: {sorted(known | {'image', 'inference_options'})}")
        if data.get("seed_policy", "PolicyPeaks") not in SEED_POLICIES:
            raise ValueError(f"seed_policy {data['seed_policy']!r} is not one of {sorted(SEED_POLICIES)}")
        return cls(image=str(image), inference_options=InferenceOptions(**options), **data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> InferenceRequest:
        """Read a request file: YAML (``.yml``/``.yaml``) or the original's text proto."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such inference request: {path}")
        return cls.parse(path.read_text(), yaml_format=path.suffix.lower() in (".yml", ".yaml"))

    @classmethod
    def parse(cls, text: str, yaml_format: bool | None = None) -> InferenceRequest:
        """Parse request text; ``yaml_format=None`` guesses (text proto when it has ``{``)."""
        if yaml_format is None:
            yaml_format = "{" not in text
        if yaml_format:
            import yaml

            data = yaml.safe_load(text) or {}
            if not isinstance(data, Mapping):
                raise ValueError("the YAML request must be a mapping of field: value")
        else:
            data = parse_text_proto(text)
        return cls.from_dict(data)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["inference_options"] = self.inference_options.as_dict()
        return d


def parse_bounding_box(text: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``--bounding_box``: ``start { x:0 y:0 z:0 } size { x:512 y:512 z:100 }`` (the original's
    text proto) or ``x,y,z:x,y,z`` (start:size) -> ``(start_zyx, size_zyx)``."""
    text = text.strip()
    if "{" in text:
        data = parse_text_proto(text)
        if set(data) != {"start", "size"}:
            raise ValueError(f"the bounding box needs start {{...}} and size {{...}}, got {sorted(data)}")
        start, size = _xyz_to_zyx(data["start"], "start"), _xyz_to_zyx(data["size"], "size")
    else:
        parts = text.split(":")
        try:
            start, size = (tuple(int(v) for v in p.split(",")) for p in parts)
        except ValueError:
            raise ValueError(f"{text!r}: write the bounding box as x,y,z:x,y,z (start:size)") from None
        if len(start) != 3 or len(size) != 3:
            raise ValueError(f"{text!r}: write the bounding box as x,y,z:x,y,z (start:size)")
        start, size = start[::-1], size[::-1]
    if any(s < 0 for s in start) or any(s <= 0 for s in size):
        raise ValueError(f"bounding box start must be >= 0 and size > 0, got start {start} size {size} (z, y, x)")
    return start, size  # type: ignore[return-value]


def _load_network(path: str, model_args: Mapping, device):
    """(model, TrainConfig) of a neurotut ``.pt`` checkpoint or a google/ffn TensorFlow
    checkpoint prefix (whose fov_size / deltas come from ``model_args``)."""
    from neurotut.ffn.tf_checkpoint import is_tf_checkpoint
    from neurotut.ffn.train import TrainConfig, model_from_checkpoint

    if is_tf_checkpoint(path):
        from neurotut.ffn.tf_model import ffn_from_tf_checkpoint

        model, config, _ = ffn_from_tf_checkpoint(path, model_args)
        return model.to(device), TrainConfig(model=config)  # the original's training defaults
    if not Path(path).exists():
        raise FileNotFoundError(
            f"no such checkpoint: {path} (neither a neurotut .pt file nor a TensorFlow "
            f"checkpoint {path}.index)"
        )
    return model_from_checkpoint(path, device)


def load_predictor(request: InferenceRequest, device=None):
    """The network of a request: (TorchPredictor, model config). ``model_checkpoint_path`` is a
    neurotut checkpoint or a google/ffn TensorFlow checkpoint prefix. Checks ``model_args`` and
    warns when pad_value / move_threshold differ from training's seed_pad / threshold."""
    from neurotut.ffn.model import model_args_to_zyx

    model, train_config = _load_network(request.model_checkpoint_path, request.model_args, device or "cpu")
    if request.model_args:
        asked = model_args_to_zyx(request.model_args)
        have = model.config
        for key in request.model_args:
            if getattr(asked, key) != getattr(have, key):
                raise ValueError(
                    f"model_args {key} = {getattr(asked, key)} (z, y, x) but the checkpoint's model "
                    f"has {getattr(have, key)}"
                )
    opts = request.inference_options
    for ours, theirs, name in ((opts.pad_value, train_config.seed_pad, "pad_value/seed_pad"),
                               (opts.move_threshold, train_config.threshold, "move_threshold/threshold")):
        if abs(ours - theirs) > 1e-9:
            print(f"note: inference {name.split('/')[0]} {ours} differs from training's "
                  f"{name.split('/')[1]} {theirs}; the manual recommends matching them", file=sys.stderr)
    return TorchPredictor(model, device, request.mixed_precision), model.config


def run_request(
    request: InferenceRequest,
    bounding_box: tuple[Sequence[int], Sequence[int]] | None = None,
    overwrite: bool = False,
    device=None,
    predictor: Predictor | None = None,
    model_config=None,
    progress: bool = True,
) -> Path:
    """Run an inference request on one subvolume, as ``run_inference.py``; returns the ``.npz``.

    Args:
        bounding_box: ``(start, size)`` in (z, y, x); None = the whole image. The box is one
            canvas: the whole subvolume is held in memory, as in the original.
        overwrite: replace an existing result. Without it an existing result raises
            :class:`~neurotut.io.OutputExistsError` before any work (the original silently skips).
        predictor, model_config: use this network instead of loading the request's checkpoint.

    An inference checkpoint (``.cpoint``) of an interrupted run with the same settings is
    resumed and removed at the end.
    """
    spec = parse_volume_spec(request.image)
    with open_h5(spec.path) as f:
        dset = get_dataset(f, spec.dataset)
        check_dataset(dset, spec, ndim=3)
        shape = dset.shape
        start, size = bounding_box if bounding_box is not None else ((0, 0, 0), shape)
        start = as_zyx(start, "bounding box start")
        size = as_zyx(size, "bounding box size", 1)
        end = tuple(min(s + n, full) for s, n, full in zip(start, size, shape))
        if any(s >= e for s, e in zip(start, end)):
            raise ValueError(f"the bounding box start {start} (z, y, x) lies outside the image {shape}")
        out_dir = Path(request.segmentation_output_dir)
        npz_path = storage.segmentation_path(out_dir, start)
        check_can_write(npz_path, overwrite)
        check_can_write(storage.probability_path(out_dir, start), overwrite)
        raw = dset[tuple(slice(s, e) for s, e in zip(start, end))]
    if predictor is None:
        predictor, model_config = load_predictor(request, device)
    elif model_config is None:
        raise ValueError("give model_config (fov_size, deltas) together with a predictor")
    image = normalize_image(raw, request.image_mean, request.image_stddev)
    cpoint = storage.checkpoint_path(out_dir, start)
    canvas = Canvas(
        image, predictor, model_config.fov_size, model_config.deltas, request.inference_options,
        checkpoint_path=cpoint,
        checkpoint_interval=request.checkpoint_interval if request.checkpoint_interval > 0 else None,
        batch_size=request.batch_size,
    )
    if cpoint.exists():
        canvas.restore_checkpoint(cpoint)
        print(f"resuming from the inference checkpoint {cpoint}", file=sys.stderr)
    canvas.segment_all(request.seed_policy, request.seed_policy_args, progress=progress)
    saved = storage.save_subvolume(
        out_dir, start, canvas.segmentation, canvas.origins, canvas.overlaps,
        counters=dict(canvas.counters), request=request.as_dict(), seg_prob=canvas.seg_prob,
        overwrite=overwrite,
    )
    storage.write_counters(out_dir, canvas.counters)
    if cpoint.exists():
        cpoint.unlink()
    return saved


def _cli_run(args: argparse.Namespace) -> int:
    request = InferenceRequest.load(args.inference_request)
    if args.output_dir:
        request = replace(request, segmentation_output_dir=args.output_dir)
    if args.batch_size is not None:
        request = replace(request, batch_size=args.batch_size)
    if args.mixed_precision:
        request = replace(request, mixed_precision=True)
    box = parse_bounding_box(args.bounding_box) if args.bounding_box else None
    path = run_request(request, box, overwrite=args.overwrite, device=args.device,
                       progress=not args.quiet)
    counters = storage.load_json_field(path, "counters")
    print(f"wrote {path} ({int(counters.get('segments-created', 0))} segments; "
          f"{int(counters.get('voxels-segmented', 0))} voxels segmented)")
    return 0


def register_cli(steps: argparse._SubParsersAction) -> None:
    """Add ``neurotut ffn inference`` (mirrors google/ffn ``run_inference.py``)."""
    p = steps.add_parser(
        "inference",
        help="segment a subvolume with a trained FFN (run_inference.py)",
        description=(
            "Flood-fill a subvolume with a trained FFN, as google/ffn's run_inference.py: the "
            "request (YAML, or the original's text proto fields image, image_mean, image_stddev, "
            "model_checkpoint_path, model_args, segmentation_output_dir, seed_policy, "
            "inference_options, checkpoint_interval) and the bounding box. The checkpoint may "
            "be a neurotut .pt file or a google/ffn TensorFlow checkpoint prefix. Writes "
            "<out>/<x>/<y>/seg-<x>_<y>_<z>.npz and .prob; refuses to replace them without "
            "--overwrite; resumes from a .cpoint checkpoint of an interrupted run."
        ),
    )
    p.add_argument("--inference_request", required=True,
                   help="request file: .yml/.yaml, or text proto (.pbtxt) with the original's fields")
    p.add_argument("--bounding_box", default=None,
                   help="subvolume as the original's text proto 'start { x: 0 y: 0 z: 0 } size "
                        "{ x: 512 y: 512 z: 100 }' or x,y,z:x,y,z (start:size, x, y, z order); "
                        "default: the whole image")
    p.add_argument("--output_dir", default=None, help="overrides segmentation_output_dir")
    p.add_argument("--batch_size", type=int, default=None,
                   help="most FOV positions per network call (the segmentation does not change)")
    p.add_argument("--mixed_precision", action="store_true",
                   help="autocast the network (float16 on CUDA, bfloat16 on CPU); slightly different results")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: CUDA if present)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result for this corner")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_run)
