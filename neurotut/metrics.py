"""Segmentation scores exactly as SNEMI3D computes them, from a sparse contingency table.

* **Adapted Rand error** (ARAND) of the SNEMI3D challenge (Fiji ``RandError``, the MATLAB script,
  cremi/PyTC ``adapted_rand``): voxels with ground-truth label 0 are ignored; voxels the
  prediction labels 0 count as unassigned singletons (no merge penalty, full split penalty). With
  ``n_ij`` the overlap of ground-truth object ``i`` and predicted object ``j``, ``N`` all voxels,
  ``a_i = sum_j n_ij`` (i >= 1), ``b_j = sum_{i>=1} n_ij`` (j >= 1) and ``c = sum_{i>=1} n_i0``::

      sumA  = sum_i a_i^2
      sumB  = sum_j b_j^2 + c / N
      sumAB = sum_{i,j>=1} n_ij^2 + c / N
      precision = sumAB / sumB   (drops with false merges)
      recall    = sumAB / sumA   (drops with false splits)
      ARAND = 1 - 2 * precision * recall / (precision + recall)

* **Variation of information** in bits over ground-truth-foreground voxels: ``split = H(pred |
  gt)``, ``merge = H(gt | pred)``. Predicted 0 follows the convention of ARAND: every unassigned
  voxel is a singleton (a split, never a merge), so the two scores tell one story about an empty or
  sparse result. ``variation_of_information(..., zero="label")`` gives the convention of waterz,
  cremi and scikit-image instead, where predicted 0 is one more object.
* **Boundary accuracy** per z-slice, with precision/recall/F1 of the boundary class and the score
  of the trivial "no boundary anywhere" prediction beside it.

The contingency table is built without a dense ``n_gt x n_pred`` matrix: runs of equal
``(gt, pred)`` pairs along the flattened volume are collapsed first (objects are large, so a
100 x 1024 x 1024 volume has far fewer runs than voxels), then the run keys are sorted.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Contingency:
    """Sparse contingency table: ``counts[k]`` voxels have gt ``gt_ids[k]`` and pred ``pred_ids[k]``.

    ``gt_ids``, ``pred_ids``: ``(K,)`` of the input dtypes; ``counts``: ``(K,)`` int64; pairs are
    unique. ``n_voxels`` is the total number of voxels (the ``N`` of the SNEMI formula).
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    counts: np.ndarray
    n_voxels: int


@dataclass(frozen=True)
class RandScores:
    """SNEMI3D adapted Rand error with its precision (merge) and recall (split) parts."""

    error: float
    precision: float
    recall: float


@dataclass(frozen=True)
class VOIScores:
    """Variation of information in bits: ``split = H(pred|gt)``, ``merge = H(gt|pred)``."""

    split: float
    merge: float

    @property
    def total(self) -> float:
        return self.split + self.merge


@dataclass(frozen=True)
class SegmentationScores:
    """All region scores of one segmentation (see the module docstring for definitions).

    ``n_gt`` and ``n_pred`` count the distinct non-zero ids of the ground truth and of the
    prediction.
    """

    arand: float
    rand_precision: float
    rand_recall: float
    voi_split: float
    voi_merge: float
    n_gt: int
    n_pred: int

    @property
    def voi(self) -> float:
        return self.voi_split + self.voi_merge

    def __str__(self) -> str:
        return (
            f"ARAND {self.arand:.4f} (precision {self.rand_precision:.4f}, recall "
            f"{self.rand_recall:.4f}) | VOI split {self.voi_split:.3f} merge {self.voi_merge:.3f} "
            f"bits | {self.n_pred} predicted vs {self.n_gt} true objects"
        )


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred differ in shape: {gt.shape} vs {pred.shape}")
    for name, arr in (("gt", gt), ("pred", pred)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if gt.size == 0:
        raise ValueError("cannot score empty volumes")
    return gt, pred


def _as_key_part(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as uint64 below 2**32, plus the lookup table to undo a compaction (or None)."""
    if values.dtype == bool or (
        values.size and int(values.min()) >= 0 and int(values.max()) < 2**32
    ):
        return values.astype(np.uint64), None
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.uint64).reshape(-1), uniq


def contingency_table(gt: np.ndarray, pred: np.ndarray) -> Contingency:
    """Sparse contingency table of two label volumes of the same shape (any integer dtypes)."""
    gt, pred = _check_pair(gt, pred)
    g = np.ascontiguousarray(gt).reshape(-1)
    p = np.ascontiguousarray(pred).reshape(-1)
    n = g.size
    # 1. collapse runs of equal (g, p) along the flattened volume
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(g[1:], g[:-1], out=change[1:])
    change[1:] |= p[1:] != p[:-1]
    starts = np.flatnonzero(change)
    del change
    lengths = np.diff(starts, append=n)
    run_g, run_p = g[starts], p[starts]
    del starts
    # 2. one uint64 key per run (gt in the high 32 bits), sort, sum the lengths of equal keys
    kg, g_lut = _as_key_part(run_g)
    kp, p_lut = _as_key_part(run_p)
    keys = (kg << np.uint64(32)) | kp
    del kg, kp
    order = np.argsort(keys)
    keys = keys[order]
    first = np.flatnonzero(np.diff(keys, prepend=keys[0] ^ np.uint64(1)))
    counts = np.add.reduceat(lengths[order], first).astype(np.int64)
    keys = keys[first]
    gk = (keys >> np.uint64(32)).astype(np.int64)
    pk = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    gt_ids = g_lut[gk] if g_lut is not None else gk.astype(gt.dtype)
    pred_ids = p_lut[pk] if p_lut is not None else pk.astype(pred.dtype)
    return Contingency(gt_ids=gt_ids, pred_ids=pred_ids, counts=counts, n_voxels=n)


def _group_sums(ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct id: ``(sum of weights, index of each entry's group)``."""
    _, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=weights.astype(np.float64))
    return sums, inverse


def _table(gt: np.ndarray | None, pred: np.ndarray | None, table: Contingency | None) -> Contingency:
    if table is not None:
        return table
    if gt is None or pred is None:
        raise ValueError("give gt and pred, or a contingency table")
    return contingency_table(gt, pred)


def _rand_from_table(t: Contingency) -> RandScores:
    fg = t.gt_ids != 0
    n = t.counts[fg].astype(np.float64)
    if n.size == 0:
        raise ValueError("the ground truth has no non-zero voxels; the adapted Rand error is undefined")
    gi, pj = t.gt_ids[fg], t.pred_ids[fg]
    big_n = float(t.n_voxels)
    a, _ = _group_sums(gi, n)
    assigned = pj != 0
    c = float(n[~assigned].sum())
    b, _ = _group_sums(pj[assigned], n[assigned]) if assigned.any() else (np.zeros(0), None)
    sum_a = float(np.dot(a, a))
    sum_b = float(np.dot(b, b)) + c / big_n
    n_ab = n[assigned]
    sum_ab = float(np.dot(n_ab, n_ab)) + c / big_n
    precision = sum_ab / sum_b
    recall = sum_ab / sum_a
    error = 1.0 - 2.0 * precision * recall / (precision + recall)
    return RandScores(error=error, precision=precision, recall=recall)


def _voi_from_table(t: Contingency, zero: str = "singletons") -> VOIScores:
    if zero not in ("singletons", "label"):
        raise ValueError(f"zero must be 'singletons' or 'label', got {zero!r}")
    fg = t.gt_ids != 0
    n = t.counts[fg].astype(np.float64)
    if n.size == 0:
        raise ValueError("the ground truth has no non-zero voxels; VOI is undefined")
    total = n.sum()
    a, ia = _group_sums(t.gt_ids[fg], n)
    b, ib = _group_sums(t.pred_ids[fg], n)
    p = n / total
    split_terms = -p * np.log2(n / a[ia])
    merge_terms = -p * np.log2(n / b[ib])
    if zero == "singletons":
        # each predicted-0 voxel is an object of its own: n_i0 pieces of one voxel, no merge
        unassigned = t.pred_ids[fg] == 0
        split_terms[unassigned] = p[unassigned] * np.log2(a[ia][unassigned])
        merge_terms[unassigned] = 0.0
    split, merge = float(np.sum(split_terms)), float(np.sum(merge_terms))
    # exact zeros print as 0, not -0
    return VOIScores(split=max(split, 0.0) + 0.0, merge=max(merge, 0.0) + 0.0)


def adapted_rand_error(
    gt: np.ndarray | None = None, pred: np.ndarray | None = None, *, table: Contingency | None = None
) -> RandScores:
    """SNEMI3D adapted Rand error of ``pred`` against ``gt`` (both integer volumes, same shape).

    Ground-truth 0 is ignored, predicted 0 counts as singletons. ``precision`` drops with false
    merges, ``recall`` with false splits. Note the argument order (truth first, like scikit-image;
    cremi and waterz take the prediction first).
    """
    return _rand_from_table(_table(gt, pred, table))


def variation_of_information(
    gt: np.ndarray | None = None, pred: np.ndarray | None = None, *, table: Contingency | None = None,
    zero: str = "singletons",
) -> VOIScores:
    """VOI split ``H(pred|gt)`` and merge ``H(gt|pred)`` in bits over voxels with ``gt != 0``.

    ``zero="singletons"`` (default, the convention of :func:`adapted_rand_error`): every voxel
    predicted 0 is an object of one voxel, so unassigned voxels cost splits and never merges.
    ``zero="label"``: predicted 0 is one more object (waterz, cremi, scikit-image).
    """
    return _voi_from_table(_table(gt, pred, table), zero)


def evaluate(gt: np.ndarray, pred: np.ndarray) -> SegmentationScores:
    """ARAND (with precision and recall) and VOI split/merge from one contingency table.

    Args:
        gt: ``(Z, Y, X)`` integer ground truth; 0 = unlabelled, ignored.
        pred: ``(Z, Y, X)`` integer segmentation; 0 = unassigned voxels.
    """
    t = contingency_table(gt, pred)
    r = _rand_from_table(t)
    v = _voi_from_table(t)
    return SegmentationScores(
        arand=r.error,
        rand_precision=r.precision,
        rand_recall=r.recall,
        voi_split=v.split,
        voi_merge=v.merge,
        n_gt=int(np.unique(t.gt_ids[t.gt_ids != 0]).size),
        n_pred=int(np.unique(t.pred_ids[t.pred_ids != 0]).size),
    )


# ------------------------------------------------------------------------------------------------
# boundaries


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """In-plane boundaries of a label volume, slice by slice.

    A voxel is boundary when its label is 0 or differs from one of its 4 neighbours in the same
    z-slice (both sides of a contact are marked, like ``skimage.segmentation.find_boundaries``
    with ``mode="thick"``).

    Args:
        labels: ``(Z, Y, X)`` (or one ``(Y, X)`` slice) integer labels.

    Returns:
        bool array of the same shape.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be (Z, Y, X) or (Y, X), got shape {labels.shape}")
    out = labels == 0
    for axis in (-2, -1):
        n = labels.shape[axis]
        if n < 2:
            continue
        hi = [slice(None)] * labels.ndim
        lo = [slice(None)] * labels.ndim
        hi[axis], lo[axis] = slice(1, n), slice(0, n - 1)
        diff = labels[tuple(hi)] != labels[tuple(lo)]
        out[tuple(hi)] |= diff
        out[tuple(lo)] |= diff
    return out


@dataclass(frozen=True, eq=False)
class BoundaryScores:
    """Pixel scores of a boundary map against the true one, with the trivial baseline.

    ``accuracy`` is exact pixel agreement; ``precision``/``recall``/``f1`` are for the boundary
    class, matching within ``tolerance`` pixels in-plane. ``baseline_accuracy`` is what predicting
    "no boundary anywhere" scores (``1 - boundary_fraction``); its boundary recall and F1 are 0.
    ``per_slice_accuracy`` is ``(Z,)``.
    """

    accuracy: float
    precision: float
    recall: float
    f1: float
    boundary_fraction: float
    baseline_accuracy: float
    tolerance: int
    per_slice_accuracy: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        return (
            f"boundary accuracy {self.accuracy:.2%} (no-boundary baseline "
            f"{self.baseline_accuracy:.2%}; true boundaries cover {self.boundary_fraction:.1%}) | "
            f"boundary precision {self.precision:.3f} recall {self.recall:.3f} F1 {self.f1:.3f} "
            f"(tolerance {self.tolerance} px)"
        )


def boundary_scores(
    gt_boundary: np.ndarray, pred_boundary: np.ndarray, tolerance: int = 0
) -> BoundaryScores:
    """Compare two boundary maps (e.g. from :func:`boundary_map`).

    Args:
        gt_boundary, pred_boundary: ``(Z, Y, X)`` bool maps (True = boundary).
        tolerance: a predicted boundary pixel counts as correct when a true one lies within this
            many pixels in-plane (square window), and vice versa for recall.

    Precision (recall) is 0 when nothing is predicted (nothing is true); F1 is 0 when both are.
    """
    gt_b = np.asarray(gt_boundary)
    pr_b = np.asarray(pred_boundary)
    if gt_b.shape != pr_b.shape:
        raise ValueError(f"boundary maps differ in shape: {gt_b.shape} vs {pr_b.shape}")
    if gt_b.dtype != bool or pr_b.dtype != bool:
        raise TypeError("boundary maps must be bool arrays; use boundary_map(labels) to make one")
    if gt_b.ndim == 2:
        gt_b, pr_b = gt_b[None], pr_b[None]
    if gt_b.ndim != 3:
        raise ValueError(f"boundary maps must be (Z, Y, X), got shape {gt_b.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    agree = gt_b == pr_b
    per_slice = agree.mean(axis=(1, 2))
    accuracy = float(agree.mean())
    if tolerance:
        window = np.ones((1, 2 * tolerance + 1, 2 * tolerance + 1), dtype=bool)
        gt_near = ndimage.binary_dilation(gt_b, structure=window)
        pr_near = ndimage.binary_dilation(pr_b, structure=window)
    else:
        gt_near, pr_near = gt_b, pr_b
    n_pred, n_true = int(pr_b.sum()), int(gt_b.sum())
    precision = float((pr_b & gt_near).sum()) / n_pred if n_pred else 0.0
    recall = float((gt_b & pr_near).sum()) / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fraction = n_true / gt_b.size
    return BoundaryScores(
        accuracy=accuracy,
        precision=precision,
        recall=recall,
        f1=f1,
        boundary_fraction=fraction,
        baseline_accuracy=1.0 - fraction,
        tolerance=int(tolerance),
        per_slice_accuracy=per_slice,
    )


# ------------------------------------------------------------------------------------------------
# command line: neurotut evaluate

EVALUATE_EPILOG = """\
What the numbers mean (0 in the labels = unlabelled voxels, ignored by every region score; 0 in
the segmentation = unassigned voxels, which ARAND and VOI both count as single-voxel objects:
splits, never merges):

  ARAND        adapted Rand error of the SNEMI3D challenge, in [0, 1]. 0: on the labelled
               voxels the segmentation equals the labels up to renaming the ids; 1: the worst.
               Rand precision drops with merges, Rand recall with splits (1 = perfect).
  VOI split    H(segmentation | labels) in bits. 0: no true object is split over several
               predicted objects. Larger: more or worse splits.
  VOI merge    H(labels | segmentation) in bits. 0: no predicted object covers parts of
               several true objects. Larger: more or worse merges.
  boundary     per-slice boundary maps (label 0 or a 4-neighbour with another id) compared
  accuracy     pixel by pixel; 1 = identical maps, 0 = every pixel differs. Compare it with the
               no-boundary baseline printed beside it: what predicting "no boundary anywhere"
               scores (1 - the boundary fraction of the labels); only accuracy above it
               shows skill.
  objects      distinct non-zero ids, predicted vs true. 0 predicted: every voxel is 0
               (unassigned); 0 true: the labels are empty and nothing can be scored.

--json writes the same numbers with the keys arand, rand_precision, rand_recall, voi_split,
voi_merge, voi, boundary_accuracy, boundary_baseline_accuracy, boundary_fraction,
boundary_precision, boundary_recall, boundary_f1, boundary_tolerance, n_predicted, n_true,
segmentation, labels, shape.
"""


def evaluation_report(labels: np.ndarray, seg: np.ndarray, tolerance: int = 0) -> dict:
    """Every score of ``seg`` against ``labels`` (both ``(Z, Y, X)`` integers) as a flat dict of
    plain numbers (the keys of ``neurotut evaluate --json``)."""
    scores = evaluate(labels, seg)
    b = boundary_scores(boundary_map(labels), boundary_map(seg), tolerance)
    return {
        "arand": scores.arand,
        "rand_precision": scores.rand_precision,
        "rand_recall": scores.rand_recall,
        "voi_split": scores.voi_split,
        "voi_merge": scores.voi_merge,
        "voi": scores.voi,
        "boundary_accuracy": b.accuracy,
        "boundary_baseline_accuracy": b.baseline_accuracy,
        "boundary_fraction": b.boundary_fraction,
        "boundary_precision": b.precision,
        "boundary_recall": b.recall,
        "boundary_f1": b.f1,
        "boundary_tolerance": b.tolerance,
        "n_predicted": scores.n_pred,
        "n_true": scores.n_gt,
    }


def format_report(report: dict) -> str:
    """The terminal table of :func:`evaluation_report` (with its ``segmentation``/``labels``)."""
    r = report
    rows = [
        ("segmentation", f"{r['segmentation']}  (Z, Y, X) = {tuple(r['shape'])}", ""),
        ("labels", str(r["labels"]), ""),
        ("", "", ""),
        ("metric", "value", "perfect"),
        ("ARAND (SNEMI3D)", f"{r['arand']:.4f}", "0"),
        ("  Rand precision (merges)", f"{r['rand_precision']:.4f}", "1"),
        ("  Rand recall (splits)", f"{r['rand_recall']:.4f}", "1"),
        ("VOI split (bits)", f"{r['voi_split']:.4f}", "0"),
        ("VOI merge (bits)", f"{r['voi_merge']:.4f}", "0"),
        ("boundary accuracy", f"{r['boundary_accuracy']:.2%}", "100%"),
        ("  no-boundary baseline", f"{r['boundary_baseline_accuracy']:.2%}", ""),
        (f"  boundary F1 (tolerance {r['boundary_tolerance']} px)", f"{r['boundary_f1']:.4f}", "1"),
        ("objects predicted / true", f"{r['n_predicted']} / {r['n_true']}", "equal"),
    ]
    heads, table = rows[:2], rows[2:]
    width = max(len(a) for a, _, _ in rows) + 2
    value_width = max(len(b) for _, b, _ in table) + 3
    lines = [f"{a:<{width}}{b}" for a, b, _ in heads]
    lines += [f"{a:<{width}}{b:<{value_width}}{c}".rstrip() for a, b, c in table]
    return "\n".join(lines)


def _evaluate_command(args: argparse.Namespace) -> int:
    import json

    from neurotut.io import atomic_path, check_can_write, check_dataset, get_dataset, open_h5
    from neurotut.io import parse_volume_spec, read_volume

    seg_spec = parse_volume_spec(args.segmentation, default_dataset="segmentation")
    lab_spec = parse_volume_spec(args.labels, default_dataset="labels")
    if args.json:
        check_can_write(args.json, args.overwrite)  # refuse before the work
    shapes = []
    for spec in (seg_spec, lab_spec):  # shapes and dtypes from the metadata, before reading
        with open_h5(spec.path) as f:
            dset = get_dataset(f, spec.dataset)
            check_dataset(dset, spec, ndim=3, kind="integer")
            shapes.append(dset.shape)
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"the segmentation {seg_spec} has shape {shapes[0]} but the labels {lab_spec} have "
            f"{shapes[1]}; both must cover the same (Z, Y, X) voxels"
        )
    seg, labels = read_volume(seg_spec), read_volume(lab_spec)
    if not labels.any():
        raise ValueError(f"the labels {lab_spec} are all 0 (unlabelled): there is nothing to score")
    report = evaluation_report(labels, seg, args.tolerance)
    report.update(segmentation=str(seg_spec), labels=str(lab_spec), shape=list(seg.shape))
    print(format_report(report))
    if args.json:
        with atomic_path(args.json, args.overwrite) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut evaluate``."""
    p = subparsers.add_parser(
        "evaluate",
        help="score a segmentation against labels (ARAND, VOI, boundary accuracy, object counts)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score a segmentation against ground-truth labels as the SNEMI3D challenge "
        "did (adapted Rand error), with VOI split/merge, boundary accuracy beside its "
        "no-boundary baseline, and object counts. Prints a table; --json writes the numbers.",
        epilog=EVALUATE_EPILOG,
    )
    p.add_argument("segmentation", help="SEG.h5:dataset, (Z, Y, X) integer ids (default dataset "
                   "'segmentation')")
    p.add_argument("labels", help="LABELS.h5:dataset, (Z, Y, X) integer ids, same shape "
                   "(default dataset 'labels')")
    p.add_argument("--json", metavar="FILE", help="also write the scores to this JSON file")
    p.add_argument("--tolerance", type=int, default=0,
                   help="boundary precision/recall: pixels a boundary may be off in-plane (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=_evaluate_command)
