"""Reproducing a published google/ffn result with neurotut's inference (chapter 11).

google/ffn publishes its FIB-25 network with its own segmentation of FlyEM's training_sample2
and the origin of every segment: the seed point, the number of network steps and the time
(``{id: OriginInfo(start_zyx, iters, walltime_sec)}``; ids are given in creation order). That
is enough to check neurotut's inference piece by piece:

* **Seed points** (:func:`compare_seed_points`): every origin must be one of neurotut's
  PolicyPeaks points, and the origins must come in the order ``segment_all`` visits the points.
  :func:`seeds_tried` then says, from the published segmentation alone, which points the original
  must have grown an object from (the others were already segmented or too close to a segment).
* **One object at a time** (:func:`reproduce_objects`): the state of the original's canvas
  just before it created segment ``k`` is the published segmentation cut down to the ids below
  ``k`` (segments never lose voxels, the seed is reset for every object, and rejected seed points,
  marked -1, change nothing later). neurotut grows the object from the same seed point through
  :meth:`~neurotut.ffn.inference.Canvas.try_seed`, the code path of ``segment_all``, and the
  steps, voxels and overlap are compared (:class:`ObjectComparison`).
* **Rejected seed points** (:func:`rejected_tries`, :func:`reproduce_rejections`): the points the
  original grew from without keeping a segment, tried again on the state of their time.
* **The whole volume** (:func:`score_segmentations`, :func:`origin_agreement`): a complete
  ``segment_all`` run scored against the published segmentation and both against the ground truth.

Arrays are (Z, Y, X); points (z, y, x).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from neurotut import metrics
from neurotut.ffn.inference import Canvas
from neurotut.ffn.storage import OriginInfo


def origin_table(origins: Mapping[int, OriginInfo]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``origins`` in id order: ids ``(M,) int64``, seed points ``(M, 3) int64`` (z, y, x) and
    network steps ``(M,) int64``."""
    ids = np.asarray(sorted(int(i) for i in origins), dtype=np.int64)
    starts = np.asarray([origins[int(i)].start_zyx for i in ids], dtype=np.int64).reshape(-1, 3)
    iters = np.asarray([origins[int(i)].iters for i in ids], dtype=np.int64)
    return ids, starts, iters


@dataclass(frozen=True)
class SeedAgreement:
    """Published seed points among neurotut's (see :func:`compare_seed_points`)."""

    #: neurotut's seed points, in the order they are tried
    n_points: int
    #: ``(M,) int64``: index of each published origin among neurotut's points; -1 = not one of them
    ranks: np.ndarray
    #: ``(K, 3) int64`` published origins that are not among neurotut's points
    missing: np.ndarray

    @property
    def n_origins(self) -> int:
        return int(len(self.ranks))

    @property
    def found(self) -> int:
        return int(np.count_nonzero(self.ranks >= 0))

    @property
    def same_order(self) -> bool:
        """The origins that were found come in neurotut's order (strictly increasing indices)."""
        found = self.ranks[self.ranks >= 0]
        return bool(np.all(np.diff(found) > 0))


def compare_seed_points(points: np.ndarray, origins_zyx: np.ndarray) -> SeedAgreement:
    """Where the published origins are among neurotut's seed points.

    Args:
        points: ``(N, 3)`` int neurotut's seed points in the order ``segment_all`` tries them
            (``PolicyPeaks(...).valid_coords()``).
        origins_zyx: ``(M, 3)`` int published seed points in creation (id) order.
    """
    points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    origins_zyx = np.asarray(origins_zyx, dtype=np.int64).reshape(-1, 3)
    index = {tuple(p): k for k, p in enumerate(points.tolist())}
    ranks = np.asarray([index.get(tuple(o), -1) for o in origins_zyx.tolist()], dtype=np.int64)
    return SeedAgreement(len(points), ranks, origins_zyx[ranks < 0])


def seeds_tried(
    points: np.ndarray,
    segmentation: np.ndarray,
    ids: np.ndarray,
    ranks: np.ndarray,
    min_boundary_dist: Sequence[int],
) -> np.ndarray:
    """Which seed points the original grew an object from, read off its result.

    Point ``j`` is skipped by ``segment_all`` when a voxel within ``min_boundary_dist`` of it
    (itself included) belonged to a segment by then, i.e. to a segment created from a point
    before ``j``. Every other point was grown from (and its object kept or rejected).

    Args:
        points: ``(N, 3)`` int seed points in the order they are tried.
        segmentation: ``(Z, Y, X)`` published ids (0 = none).
        ids, ranks: ``(M,)`` each segment's id and the index of its origin in ``points``; every
            segment of ``segmentation`` must be listed, and found (rank >= 0).
        min_boundary_dist: ``(z, y, x)`` half-size of the box around a seed point.

    Returns:
        ``(N,) bool``.
    """
    ids, ranks = np.asarray(ids, np.int64), np.asarray(ranks, np.int64)
    if np.any(ranks < 0):
        raise ValueError("every origin must be one of the seed points (some ranks are -1)")
    points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    segmentation = np.asarray(segmentation)
    never = len(points)
    lut = np.full(int(max(int(segmentation.max(initial=0)), int(ids.max(initial=0)))) + 1, never, np.int32)
    lut[ids] = ranks
    if np.any(lut[np.unique(segmentation[segmentation > 0])] == never):
        raise ValueError("the segmentation holds ids that have no origin")
    lut[0] = never
    created = lut[segmentation]  # the index of the point whose object took each voxel
    size = 2 * np.asarray(min_boundary_dist, dtype=np.int64) + 1
    first = ndimage.minimum_filter(created, size=tuple(int(s) for s in size), mode="constant", cval=never)
    return first[tuple(points.T)] >= np.arange(len(points))


def select_objects(origins: Mapping[int, OriginInfo], step_budget: int | None) -> list[int]:
    """Segment ids in creation order whose published steps fit a budget: each one is taken when
    its ``iters`` fit in what is left of ``step_budget`` (None: all of them)."""
    ids, _, iters = origin_table(origins)
    if step_budget is None:
        return [int(i) for i in ids]
    chosen, left = [], int(step_budget)
    for sid, n in zip(ids, iters):
        if n <= left:
            chosen.append(int(sid))
            left -= int(n)
    return chosen


@dataclass(frozen=True)
class ObjectComparison:
    """One published segment against the object neurotut grows from the same seed and state."""

    segment_id: int
    start_zyx: tuple[int, int, int]
    #: network steps: the published ``iters`` and neurotut's
    google_steps: int
    neurotut_steps: int
    google_voxels: int
    #: voxels of neurotut's segment (0 when neurotut rejected the object)
    neurotut_voxels: int
    #: voxels in both
    shared_voxels: int
    #: neurotut created a segment (and gave it the published id)
    created: bool
    #: wall time of neurotut's try (the published walltime_sec is on a P100)
    seconds: float

    @property
    def iou(self) -> float:
        union = self.google_voxels + self.neurotut_voxels - self.shared_voxels
        return self.shared_voxels / union if union else 1.0


@dataclass
class Reproduction:
    """What :func:`reproduce_objects` returns."""

    records: list[ObjectComparison]
    #: ``(Z, Y, X) uint32`` neurotut's objects under the published ids (a voxel two of them
    #: claim goes to the lower id, the first to be created)
    segmentation: np.ndarray


def _grow_at(canvas: Canvas, published: np.ndarray, origins: Mapping[int, OriginInfo],
             start: tuple[int, int, int], sid: int) -> tuple[int, int, float]:
    """Set the canvas to the published state before segment ``sid`` and try ``start``;
    returns (id created or 0, network steps, seconds)."""
    earlier = {i: o for i, o in origins.items() if i < sid}
    canvas.set_state(np.where(published < sid, published, 0), earlier)
    t0 = time.perf_counter()
    new = canvas.try_seed(start)
    seconds = time.perf_counter() - t0
    if new not in (0, sid):
        raise RuntimeError(f"the canvas gave the new segment id {new}, expected {sid}")
    return new, len(canvas.history), seconds


def _grow_one(canvas: Canvas, published: np.ndarray, origins: Mapping[int, OriginInfo], sid: int):
    """Grow published segment ``sid`` again; (record, neurotut's mask)."""
    start = tuple(int(v) for v in origins[sid].start_zyx)
    new, steps, seconds = _grow_at(canvas, published, origins, start, sid)  # type: ignore[arg-type]
    ours = canvas.segmentation == sid if new else np.zeros(published.shape, bool)
    theirs = published == sid
    record = ObjectComparison(
        sid, start, int(origins[sid].iters), steps, int(theirs.sum()),  # type: ignore[arg-type]
        int(ours.sum()), int(np.count_nonzero(ours & theirs)), bool(new), seconds,
    )
    return record, ours


def reproduce_objects(
    canvas: Canvas,
    published: np.ndarray,
    origins: Mapping[int, OriginInfo],
    segment_ids: Sequence[int],
    progress: bool = False,
) -> Reproduction:
    """Grow each published segment again, each on the published state just before it.

    Args:
        canvas: a :class:`~neurotut.ffn.inference.Canvas` over the normalised image with the
            request's network, FOV, deltas and options (its state is replaced).
        published: ``(Z, Y, X)`` the published segmentation (ids >= 0, 0 = none).
        origins: the published origins; ids must be consecutive from 1 in creation order.
        segment_ids: which segments to grow (e.g. from :func:`select_objects`).
    """
    published = np.asarray(published).astype(np.int64, copy=False)
    if published.shape != canvas.shape:
        raise ValueError(f"the segmentation {published.shape} differs from the canvas {canvas.shape}")
    unknown = [int(s) for s in segment_ids if int(s) not in origins]
    if unknown:
        raise ValueError(f"segments {unknown[:5]} have no origin")
    out = np.zeros(published.shape, np.uint32)
    records = []
    for k, sid in enumerate(segment_ids):
        record, ours = _grow_one(canvas, published, origins, int(sid))
        out[ours & (out == 0)] = record.segment_id
        records.append(record)
        if progress:
            print(f"[{k + 1}/{len(segment_ids)}] segment {record.segment_id}: {record.neurotut_steps} "
                  f"steps (published {record.google_steps}), IoU {record.iou:.4f}", flush=True)
    return Reproduction(records, out)


def rejected_tries(tried: np.ndarray, ranks: np.ndarray, ids: np.ndarray) -> list[tuple[int, int]]:
    """The seed points the original grew an object from but rejected (seed went weak, or too
    small): ``[(point index, id the next segment got), ...]`` in the order they were tried.

    Args:
        tried: ``(N,) bool`` of :func:`seeds_tried`.
        ranks, ids: ``(M,)`` the index of each origin among the points, and its segment id.
    """
    ranks, ids = np.asarray(ranks, np.int64), np.asarray(ids, np.int64)
    order = np.argsort(ranks)
    ranks, ids = ranks[order], ids[order]
    is_origin = np.zeros(len(tried), bool)
    is_origin[ranks] = True
    out = []
    for j in np.flatnonzero(np.asarray(tried) & ~is_origin):
        k = int(np.searchsorted(ranks, j))  # origins created before point j
        out.append((int(j), int(ids[k]) if k < len(ids) else int(ids.max(initial=0)) + 1))
    return out


@dataclass(frozen=True)
class RejectedTry:
    """A seed point the original rejected, tried again by neurotut on the same state."""

    start_zyx: tuple[int, int, int]
    #: the id a segment created here would have got
    next_id: int
    neurotut_steps: int
    #: neurotut created a segment here (the original did not)
    created: bool


def reproduce_rejections(
    canvas: Canvas,
    published: np.ndarray,
    origins: Mapping[int, OriginInfo],
    points: np.ndarray,
    tries: Sequence[tuple[int, int]],
) -> list[RejectedTry]:
    """Try the original's rejected seed points again (``tries`` from :func:`rejected_tries`,
    indices into ``points``), each on the published state of its time."""
    published = np.asarray(published).astype(np.int64, copy=False)
    points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    out = []
    for j, next_id in tries:
        start = tuple(int(v) for v in points[j])
        new, steps, _ = _grow_at(canvas, published, origins, start, next_id)  # type: ignore[arg-type]
        out.append(RejectedTry(start, next_id, steps, bool(new)))  # type: ignore[arg-type]
    return out


def summarize_objects(records: Sequence[ObjectComparison], iou_threshold: float = 0.99) -> dict:
    """Counts for the text: objects, same step count, same voxel count, IoU >= threshold,
    rejected by neurotut, and the steps of both. All zero for no records."""
    return {
        "objects": len(records),
        "same_steps": sum(r.neurotut_steps == r.google_steps for r in records),
        "same_voxels": sum(r.neurotut_voxels == r.google_voxels for r in records),
        "identical": sum(r.shared_voxels == r.google_voxels == r.neurotut_voxels for r in records),
        "iou_at_least": sum(r.iou >= iou_threshold for r in records),
        "rejected": sum(not r.created for r in records),
        "google_steps": sum(r.google_steps for r in records),
        "neurotut_steps": sum(r.neurotut_steps for r in records),
        "min_iou": min((r.iou for r in records), default=float("nan")),
    }


def score_segmentations(neurotut: np.ndarray, google: np.ndarray, truth: np.ndarray) -> dict[str, metrics.SegmentationScores]:
    """ARAND and VOI of neurotut's segmentation against google's (google's unsegmented voxels,
    0, are ignored as a ground truth's 0 is) and of both against the ground truth."""
    return {
        "neurotut vs google": metrics.evaluate(google, neurotut),
        "google vs ground truth": metrics.evaluate(truth, google),
        "neurotut vs ground truth": metrics.evaluate(truth, neurotut),
    }


def origin_agreement(ours: Mapping[int, OriginInfo], google: Mapping[int, OriginInfo]) -> dict:
    """How two runs' segments started: segments, shared seed points, and among these the ones
    with the same id and the same step count."""
    ours_by_start = {tuple(o.start_zyx): (i, o.iters) for i, o in ours.items()}
    shared = same_id = same_steps = 0
    for i, o in google.items():
        hit = ours_by_start.get(tuple(o.start_zyx))
        if hit is None:
            continue
        shared += 1
        same_id += hit[0] == i
        same_steps += hit[1] == o.iters
    return {"neurotut": len(ours), "google": len(google), "shared_starts": shared,
            "same_id": same_id, "same_steps": same_steps}
