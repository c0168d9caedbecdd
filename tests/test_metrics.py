"""Tests for neurotut.metrics: SNEMI3D ARAND, VOI, boundary scores."""

from __future__ import annotations

import numpy as np
import pytest
import waterz
from skimage.metrics import variation_of_information as sk_voi
from skimage.segmentation import find_boundaries

from neurotut import metrics
from neurotut.agglomerate import native_output_suppressed


# ------------------------------------------------------------------------------------------------
# independent references


def snemi_reference(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """The challenge formula, written out on a dense contingency matrix (small volumes only)."""
    gt_ids, g = np.unique(gt.ravel(), return_inverse=True)
    pr_ids, p = np.unique(pred.ravel(), return_inverse=True)
    table = np.zeros((gt_ids.size, pr_ids.size), dtype=np.float64)
    for i, j in zip(g.ravel(), p.ravel()):  # one voxel at a time
        table[i, j] += 1
    n_total = gt.size
    rows = gt_ids != 0
    cols = pr_ids != 0
    a = table[rows, :].sum(axis=1)
    b = table[rows][:, cols].sum(axis=0)
    c = table[rows][:, ~cols].sum()
    sum_a = (a**2).sum()
    sum_b = (b**2).sum() + c / n_total
    sum_ab = (table[rows][:, cols] ** 2).sum() + c / n_total
    precision = sum_ab / sum_b
    recall = sum_ab / sum_a
    return 1 - 2 * precision * recall / (precision + recall), precision, recall


def waterz_scores(gt: np.ndarray, pred: np.ndarray) -> dict:
    with native_output_suppressed():
        return waterz.evaluate(
            np.ascontiguousarray(pred, dtype=np.uint64), np.ascontiguousarray(gt, dtype=np.uint64)
        )


def cubes(n_side: int = 2, size: int = 5) -> np.ndarray:
    """n_side**3 cubic objects of size**3 voxels, ids 1..n, no background."""
    idx = np.arange(n_side * size) // size
    z, y, x = np.meshgrid(idx, idx, idx, indexing="ij")
    return (z * n_side * n_side + y * n_side + x + 1).astype(np.uint32)


def random_case(rng: np.random.Generator, shape=(6, 9, 11), n_gt=5, n_pred=7, zeros=True):
    gt = rng.integers(0 if zeros else 1, n_gt, size=shape).astype(np.uint32)
    pred = rng.integers(0 if zeros else 1, n_pred, size=shape).astype(np.uint64)
    return gt, pred


def structured_case(rng: np.random.Generator):
    """Blocky ground truth with a 0 membrane; prediction with merges, splits and zeros."""
    gt = np.kron(rng.integers(1, 20, size=(3, 4, 4)), np.ones((3, 5, 5), dtype=np.int64))
    gt[:, ::5, :] = 0
    pred = gt.copy()
    pred[pred == 3] = 4  # merge
    pred[:4][pred[:4] == 7] = 100  # split
    pred[:, :, ::7] = 0  # unassigned columns
    pred[gt == 0] = rng.integers(0, 3, size=int((gt == 0).sum()))
    return gt.astype(np.uint32), pred.astype(np.uint32)


# ------------------------------------------------------------------------------------------------
# contingency table


def test_contingency_table_matches_pair_counts():
    rng = np.random.default_rng(0)
    gt, pred = random_case(rng)
    t = metrics.contingency_table(gt, pred)
    pairs, counts = np.unique(np.stack([gt.ravel(), pred.ravel()]).astype(np.int64), axis=1, return_counts=True)
    got = sorted(zip(t.gt_ids.tolist(), t.pred_ids.tolist(), t.counts.tolist()))
    want = sorted(zip(pairs[0].tolist(), pairs[1].tolist(), counts.tolist()))
    assert got == want
    assert t.n_voxels == gt.size == t.counts.sum()


def test_contingency_handles_large_negative_ids_and_views():
    rng = np.random.default_rng(1)
    gt, pred = random_case(rng, zeros=True)
    big = pred.astype(np.uint64) * np.uint64(2**40) + np.uint64(7)  # beyond 32 bits
    neg = gt.astype(np.int64) - 2  # negative ids
    t = metrics.contingency_table(neg.T, big.T)  # non-contiguous views
    ref = metrics.contingency_table(gt.T.copy(), pred.T.copy())
    assert sorted(zip((t.gt_ids + 2).tolist(), ((t.pred_ids - 7) // 2**40).tolist(), t.counts.tolist())) == sorted(
        zip(ref.gt_ids.tolist(), ref.pred_ids.tolist(), ref.counts.tolist())
    )


# ------------------------------------------------------------------------------------------------
# adapted Rand error


@pytest.mark.parametrize("seed", range(6))
def test_arand_equals_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, n_gt=3 + seed, n_pred=2 + 2 * seed, zeros=True)
    assert (pred == 0).any() and (gt == 0).any()
    got = metrics.adapted_rand_error(gt, pred)
    want = snemi_reference(gt, pred)
    np.testing.assert_allclose((got.error, got.precision, got.recall), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_arand_equals_reference_on_structured_cases(seed):
    gt, pred = structured_case(np.random.default_rng(seed))
    got = metrics.adapted_rand_error(gt, pred)
    want = snemi_reference(gt, pred)
    np.testing.assert_allclose((got.error, got.precision, got.recall), want, rtol=1e-12, atol=1e-14)
    assert 0.0 < got.error < 1.0


@pytest.mark.parametrize("seed", range(4))
def test_arand_equals_waterz_without_predicted_zeros(seed):
    rng = np.random.default_rng(10 + seed)
    gt, pred = random_case(rng, n_gt=4, n_pred=6, zeros=False)
    gt[rng.random(gt.shape) < 0.2] = 0  # ground-truth zeros are fine
    if seed % 2:
        gt, pred = structured_case(rng)
        pred[pred == 0] = 999
    assert not (pred == 0).any()
    got = metrics.adapted_rand_error(gt, pred)
    w = waterz_scores(gt, pred)
    assert got.recall == pytest.approx(w["rand_split"], rel=1e-12)
    assert got.precision == pytest.approx(w["rand_merge"], rel=1e-12)
    s, m = w["rand_split"], w["rand_merge"]
    assert got.error == pytest.approx(1 - 2 * s * m / (s + m), rel=1e-10, abs=1e-14)


def test_predicted_zero_differs_from_waterz_and_costs_a_split():
    """Predicted 0 voxels are singletons in SNEMI: a full split penalty, no merge penalty."""
    gt = cubes()
    pred = gt.copy()
    pred[0] = 0
    got = metrics.adapted_rand_error(gt, pred)
    assert got.error == pytest.approx(snemi_reference(gt, pred)[0], rel=1e-12)
    assert got.precision == 1.0
    # 4 objects lose 25 of their 125 voxels to singletons: recall = (4*100^2 + 4*125^2 + 100/N) / (8*125^2)
    assert got.recall == pytest.approx((4 * 100**2 + 4 * 125**2 + 100 / 1000) / (8 * 125**2), rel=1e-12)
    w = waterz_scores(gt, pred)  # waterz treats 0 as one more object: a merge of the slice
    assert w["rand_merge"] < 1.0
    assert got.error != pytest.approx(1 - 2 * w["rand_split"] * w["rand_merge"] / (w["rand_split"] + w["rand_merge"]))


def test_known_cases_merge_split_permutation():
    gt = cubes()  # 8 objects of 125 voxels
    merged = gt.copy()
    merged[merged == 2] = 1
    r = metrics.adapted_rand_error(gt, merged)
    assert r.error == pytest.approx(1 / 9, rel=1e-12)  # P = 0.8, R = 1
    assert (r.precision, r.recall) == (pytest.approx(0.8), 1.0)

    split = gt.copy()
    split[:2][split[:2] == 1] = 99  # 50 of object 1's voxels become a new object
    r = metrics.adapted_rand_error(gt, split)
    assert r.precision == 1.0
    assert r.recall == pytest.approx((7 * 125**2 + 50**2 + 75**2) / (8 * 125**2), rel=1e-12)
    assert r.error == pytest.approx(0.030927835051546393, rel=1e-12)

    perm = np.random.default_rng(0).permutation(np.arange(1000, 1009))
    relabelled = perm[gt]
    s = metrics.evaluate(gt, relabelled)
    assert s.arand == 0.0 and s.voi_split == 0.0 and s.voi_merge == 0.0
    assert s.n_gt == s.n_pred == 8


def test_ground_truth_zero_is_ignored():
    gt = cubes()
    gt[:, :, 0] = 0
    pred = gt.copy()
    pred[gt == 0] = np.arange(int((gt == 0).sum())) % 3 + 1  # anything in the ignored region
    assert metrics.adapted_rand_error(gt, pred).error == pytest.approx(0.0, abs=1e-15)
    assert metrics.variation_of_information(gt, pred).total == 0.0


def test_errors_are_clear():
    gt = cubes()
    with pytest.raises(ValueError, match="shape"):
        metrics.evaluate(gt, gt[:-1])
    with pytest.raises(TypeError, match="integer"):
        metrics.evaluate(gt, gt.astype(np.float32))
    with pytest.raises(ValueError, match="no non-zero"):
        metrics.adapted_rand_error(np.zeros_like(gt), gt)


# ------------------------------------------------------------------------------------------------
# variation of information


@pytest.mark.parametrize("seed", range(4))
def test_voi_equals_skimage_and_waterz(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, n_gt=4 + seed, n_pred=3 + seed, zeros=True) if seed < 2 else structured_case(rng)
    got = metrics.variation_of_information(gt, pred, zero="label")
    split, merge = sk_voi(gt.astype(np.int64), pred.astype(np.int64), ignore_labels=[0])
    assert got.split == pytest.approx(split, rel=1e-10, abs=1e-12)
    assert got.merge == pytest.approx(merge, rel=1e-10, abs=1e-12)
    w = waterz_scores(gt, pred)
    assert got.split == pytest.approx(w["voi_split"], rel=1e-9, abs=1e-12)
    assert got.merge == pytest.approx(w["voi_merge"], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_voi_singletons_equal_voi_of_the_relabelled_prediction(seed):
    """zero="singletons" is the ordinary VOI of the prediction in which every 0 voxel got an id of
    its own; an all-zero prediction is pure split (no merge), like ARAND's 1."""
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, n_gt=4 + seed, n_pred=3 + seed, zeros=True)
    relabelled = pred.astype(np.int64).copy()
    zeros = relabelled == 0
    relabelled[zeros] = relabelled.max() + 1 + np.arange(zeros.sum())
    assert zeros.any()
    got = metrics.variation_of_information(gt, pred)
    want = metrics.variation_of_information(gt, relabelled, zero="label")
    assert got.split == pytest.approx(want.split, rel=1e-10) and got.merge == pytest.approx(want.merge, abs=1e-12)
    assert got.split > metrics.variation_of_information(gt, pred, zero="label").split
    empty = metrics.evaluate(gt, np.zeros_like(pred))
    assert empty.arand == pytest.approx(1.0, abs=1e-3) and empty.voi_merge == 0.0 and empty.voi_split > 0
    with pytest.raises(ValueError, match="zero"):
        metrics.variation_of_information(gt, pred, zero="ignore")


def test_voi_known_values():
    gt = cubes()
    merged = gt.copy()
    merged[merged == 2] = 1
    v = metrics.variation_of_information(gt, merged)
    assert v.split == 0.0
    assert v.merge == pytest.approx(2 / 8)  # 1 bit of uncertainty on a quarter of the voxels
    halves = gt.copy()
    halves[:, :, 5:] += 100  # renames whole objects (those at x >= 5): still the same partition
    assert metrics.variation_of_information(gt, halves).total == 0.0
    split = gt * 10
    split[:, :, 2::5] += 1  # each object cut in a 1/5 and 4/5 part
    v = metrics.variation_of_information(gt, split)
    h = -(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8))
    assert v.split == pytest.approx(h) and v.merge == 0.0


def test_evaluate_combines_all_scores():
    gt, pred = structured_case(np.random.default_rng(3))
    s = metrics.evaluate(gt, pred)
    r = metrics.adapted_rand_error(gt, pred)
    v = metrics.variation_of_information(gt, pred)
    assert (s.arand, s.rand_precision, s.rand_recall) == (r.error, r.precision, r.recall)
    assert (s.voi_split, s.voi_merge) == (v.split, v.merge)
    assert s.voi == pytest.approx(v.total)
    assert s.n_gt == np.unique(gt[gt > 0]).size and s.n_pred == np.unique(pred[pred > 0]).size
    assert "ARAND" in str(s)


# ------------------------------------------------------------------------------------------------
# boundaries


def test_boundary_map_equals_skimage_thick_boundaries_plus_zero():
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 5, size=(3, 6, 6)), np.ones((1, 4, 4), dtype=np.int64))
    got = metrics.boundary_map(labels)
    for z in range(labels.shape[0]):
        want = find_boundaries(labels[z], connectivity=1, mode="thick") | (labels[z] == 0)
        np.testing.assert_array_equal(got[z], want)
    # boundaries are per slice: a change along z alone is not a boundary
    two_slices = np.stack([np.full((4, 5), 1), np.full((4, 5), 2)])
    assert not metrics.boundary_map(two_slices).any()


def test_boundary_scores_known_case_and_baseline():
    gt_b = np.zeros((2, 10, 10), dtype=bool)
    gt_b[:, :, 4] = True  # 10% boundary
    perfect = metrics.boundary_scores(gt_b, gt_b)
    assert (perfect.accuracy, perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0, 1.0)
    nothing = metrics.boundary_scores(gt_b, np.zeros_like(gt_b))
    assert nothing.accuracy == pytest.approx(0.9) == nothing.baseline_accuracy
    assert nothing.boundary_fraction == pytest.approx(0.1)
    assert (nothing.precision, nothing.recall, nothing.f1) == (0.0, 0.0, 0.0)
    shifted = np.roll(gt_b, 1, axis=2)
    strict = metrics.boundary_scores(gt_b, shifted)
    assert strict.accuracy == pytest.approx(0.8) and strict.f1 == 0.0
    tolerant = metrics.boundary_scores(gt_b, shifted, tolerance=1)
    assert tolerant.accuracy == pytest.approx(0.8) and tolerant.f1 == 1.0
    np.testing.assert_allclose(strict.per_slice_accuracy, [0.8, 0.8])
    assert "baseline" in str(strict)
    with pytest.raises(TypeError, match="bool"):
        metrics.boundary_scores(gt_b.astype(np.uint8), gt_b)
