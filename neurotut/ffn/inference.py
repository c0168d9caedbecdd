"""FFN inference: the canvas that flood-fills one object after another (google/ffn ``inference.py``).

The :class:`Canvas` holds the state of one subvolume, all arrays (Z, Y, X):

* ``seed``: float32 object-mask logits of the object being grown; NaN = not visited yet.
* ``segmentation``: int32 ids; 0 = free, -1 = a rejected seed location, > 0 = a segment.
* ``seg_prob``: uint8 quantised probability of the segment that owns each voxel.

**One object** (:meth:`Canvas.segment_at`): the seed is reset to NaN and set to
``logit(init_activation)`` at the start point. The field of view (FOV) then moves as the
:class:`~neurotut.ffn.movement.FaceMaxMovementPolicy` says. At every position the network gets
the normalised image and the seed inside the FOV (NaN replaced by ``logit(pad_value)``) and
returns new logits, which **overwrite** the FOV in the canvas after the *disconnected-seed bias*:
when any of the new FOV is at or above the move threshold, voxels that were below logit 0.5 = 0
may not rise again. The run stops when the queue is empty or the value at the start point drops
below the move threshold.

**Movement** (:mod:`neurotut.ffn.movement`): face maxima of each prediction at or above
``logit(move_threshold)`` queue up, breadth first; a popped candidate is skipped when its cell of
the delta grid was visited or when the position is no longer valid (seed below the threshold,
FOV outside the volume, or already segmented).

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
(``batch_size``).

The request (``run_inference.py``) lives in :mod:`neurotut.ffn.request`, whole-volume
segmentation in :mod:`neurotut.ffn.segment`.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit
from tqdm.auto import tqdm

from neurotut.ffn import storage
from neurotut.ffn.model import logit
from neurotut.ffn.movement import FaceMaxMovementPolicy
from neurotut.ffn.seeds import SeedPolicy, make_seed_policy
from neurotut.ffn.storage import OriginInfo
from neurotut.geometry import Pos, as_zyx, boxes_overlap
from neurotut.io import atomic_path

#: the original's cap on self-consistency iterations per position
MAX_SELF_CONSISTENT_ITERS = 32

#: a network evaluated on a batch: images (B, Z, Y, X) float32 (normalised) and seed logits
#: (B, Z, Y, X) float32 -> updated logits (B, Z, Y, X) float32
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


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
# the canvas


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
            if any(boxes_overlap(cand, b, self.fov_size) for b in batch):
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
# the image the network sees


def normalize_image(raw: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(raw - mean) / std`` as ``(Z, Y, X) float32``, the image the network and seeds see."""
    if std <= 0:
        raise ValueError(f"image_stddev must be positive, got {std}")
    return ((np.asarray(raw, dtype=np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)
