"""Tests for neurotut.agglomerate: waterz watershed + agglomeration behind a checked interface."""

from __future__ import annotations

import numpy as np
import pytest

from neurotut import affinity, agglomerate, metrics
from neurotut.data import make_synthetic


@pytest.fixture(scope="module")
def synthetic():
    _, labels, _ = make_synthetic((16, 128, 128), seed=3, n_objects=14)
    return labels


@pytest.fixture(scope="module")
def noisy(synthetic):
    affs = affinity.affinities(synthetic)
    return affinity.add_noise(affs, 0.25, np.random.default_rng(0))


def test_ground_truth_affinities_reproduce_the_labels(synthetic):
    assert np.unique(synthetic).size > 10 and (synthetic == 0).any()
    affs = affinity.affinities(synthetic)
    seg = agglomerate.agglomerate(affs, 0.5)
    assert seg.dtype == np.uint64 and seg.shape == synthetic.shape
    scores = metrics.evaluate(synthetic, seg)
    assert scores.arand < 0.01
    # no segment spans two objects, and membranes (affinity 0 everywhere) stay unassigned
    fg = seg > 0
    pairs = np.unique(np.stack([seg[fg], synthetic[fg].astype(np.uint64)]), axis=1)
    assert np.unique(pairs[0]).size == pairs.shape[1]
    assert (seg[synthetic == 0] == 0).all()


def test_thresholds_are_monotone(noisy):
    thresholds = [0.05, 0.2, 0.4, 0.6, 0.8]
    segs = agglomerate.agglomerate(noisy, thresholds)
    counts = [np.unique(s[s > 0]).size for s in segs]
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[0] > counts[-1]
    for fine, coarse in zip(segs, segs[1:]):  # each fine segment lies inside one coarse segment
        fg = fine > 0
        pairs = np.unique(np.stack([fine[fg], coarse[fg]]), axis=1)
        assert np.unique(pairs[0]).size == pairs.shape[1]
        assert (coarse[~fg] == 0).all()


def test_results_are_independent_copies_in_the_given_order(noisy):
    segs = agglomerate.agglomerate(noisy, [0.7, 0.1, 0.7])
    assert not np.shares_memory(segs[0], segs[1]) and not np.shares_memory(segs[0], segs[2])
    np.testing.assert_array_equal(segs[0], segs[2])
    assert np.unique(segs[1]).size > np.unique(segs[0]).size  # 0.1 merges less than 0.7
    again = dict(agglomerate.iter_agglomerate(noisy, [0.1, 0.7]))
    np.testing.assert_array_equal(again[0.1], segs[1])
    np.testing.assert_array_equal(again[0.7], segs[0])


def test_channel_order_follows_the_offsets():
    """Slabs: every z-section is its own object. Only a z-first mapping for waterz keeps them apart."""
    labels = np.repeat(np.arange(1, 5, dtype=np.uint32), 3)[:, None, None] * np.ones((1, 6, 6), np.uint32)
    sh = affinity.affinities(labels)  # Superhuman order: x, y, z, long range...
    seg = agglomerate.agglomerate(sh, 0.5)
    assert metrics.adapted_rand_error(labels, seg).error == 0.0
    zyx = affinity.affinities(labels, affinity.WATERZ_OFFSETS)
    np.testing.assert_array_equal(agglomerate.agglomerate(zyx, 0.5, affinity.WATERZ_OFFSETS), seg)
    np.testing.assert_array_equal(agglomerate.agglomerate(sh[:3], 0.5), seg)  # first 3 channels
    # the same channels read in the wrong order merge the slabs (what an unchecked call does)
    wrong = agglomerate.agglomerate(zyx, 0.5, affinity.SUPERHUMAN_OFFSETS[:3])
    assert metrics.adapted_rand_error(labels, wrong).error > 0.5


def test_bad_inputs_get_clear_errors(synthetic):
    affs = affinity.affinities(synthetic[:4, :16, :16])
    with pytest.raises(TypeError, match="divide by 255"):
        agglomerate.agglomerate((affs * 255).astype(np.uint8), 0.5)
    with pytest.raises(TypeError, match="float"):
        agglomerate.agglomerate(affs.astype(np.int32), 0.5)
    with pytest.raises(ValueError, match="channels-last"):
        agglomerate.agglomerate(np.moveaxis(affs, 0, -1), 0.5)
    with pytest.raises(ValueError, match="channels-last"):
        agglomerate.agglomerate(np.moveaxis(affs[:3], 0, -1).copy(), 0.5, affinity.WATERZ_OFFSETS[:3])
    with pytest.raises(ValueError, match="C, Z, Y, X"):
        agglomerate.agglomerate(affs[0], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agglomerate.agglomerate(affs * 2, 0.5)
    nan = affs.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agglomerate.agglomerate(nan, 0.5)
    with pytest.raises(ValueError, match="nearest-neighbour"):
        agglomerate.agglomerate(affs[3:6], 0.5, affinity.SUPERHUMAN_OFFSETS[3:6])
    with pytest.raises(ValueError, match="threshold"):
        agglomerate.agglomerate(affs, [])
    with pytest.raises(ValueError, match="fragments"):
        agglomerate.agglomerate(affs, 0.5, fragments=np.zeros((2, 2, 2), np.uint64))


def test_float64_is_accepted_and_equal(noisy):
    a = agglomerate.agglomerate(noisy, 0.5)
    b = agglomerate.agglomerate(noisy.astype(np.float64), 0.5)
    np.testing.assert_array_equal(a, b)


def test_fragments_and_watershed(noisy):
    frags = agglomerate.watershed(noisy)
    assert frags.dtype == np.uint64
    assert np.unique(frags).size >= np.unique(agglomerate.agglomerate(noisy, 0.3)).size
    direct = agglomerate.agglomerate(noisy, 0.5)
    via = agglomerate.agglomerate(noisy, 0.5, fragments=frags.astype(np.int64))
    assert metrics.evaluate(direct.astype(np.int64), via).arand == 0.0


def test_scoring_function_names(noisy):
    assert agglomerate.scoring_function("mean") == agglomerate.MEAN_AFFINITY
    assert agglomerate.scoring_function("affmean") == agglomerate.MEAN_AFFINITY
    q = agglomerate.scoring_function("aff85_his256")
    assert q == agglomerate.scoring_function("quantile85") and "85" in q and "true" in q
    assert "false" in agglomerate.scoring_function("quantile50_all")
    with pytest.raises(ValueError, match="unknown scoring"):
        agglomerate.scoring_function("median")
    with pytest.raises(ValueError, match="precompiled"):
        agglomerate.scoring_function("quantile42")
    seg_mean = agglomerate.agglomerate(noisy, 0.5)
    seg_q = agglomerate.agglomerate(noisy, 0.5, scoring="quantile50")
    assert seg_q.shape == seg_mean.shape and not np.array_equal(seg_q, seg_mean)


def test_native_output_is_silenced_unless_verbose(noisy, capfd):
    agglomerate.agglomerate(noisy[:, :4, :32, :32], 0.5)
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""
    agglomerate.agglomerate(noisy[:, :4, :32, :32], 0.5, verbose=True)
    assert "watershed" in capfd.readouterr().out


def test_sweep_scores_each_threshold(synthetic, noisy):
    res = agglomerate.sweep(noisy, synthetic, [0.6, 0.2])
    assert list(res) == [0.2, 0.6]
    for t, s in res.items():
        seg = agglomerate.agglomerate(noisy, t)
        assert s == metrics.evaluate(synthetic, seg)
    assert res[0.2].voi_split > res[0.6].voi_split  # less merging: more splits


def test_fill_unassigned_uses_physical_distance():
    seg = np.zeros((3, 1, 7), dtype=np.uint64)
    seg[0, 0, 0] = 1  # one section below the centre: 30 nm away
    seg[1, 0, 6] = 2  # six pixels away in-plane: 36 nm
    filled = agglomerate.fill_unassigned(seg, voxel_size=(30, 6, 6))
    assert filled.dtype == seg.dtype and (filled > 0).all()
    assert filled[1, 0, 0] == 1 and filled[1, 0, 6] == 2 and filled[1, 0, 5] == 2
    assert filled[0, 0, 0] == 1 and seg[1, 0, 0] == 0  # input untouched
    isotropic = agglomerate.fill_unassigned(seg)
    assert isotropic[1, 0, 4] == 2
    np.testing.assert_array_equal(agglomerate.fill_unassigned(np.zeros((2, 2, 2), int)), 0)
