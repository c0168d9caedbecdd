"""Tests for neurotut.ffn.partitions: exact values on hand-built volumes, equality with a direct
window count, and clear errors."""

import itertools

import numpy as np
import pytest

from neurotut.ffn.partitions import (
    BACKGROUND,
    DEFAULT_THRESHOLDS,
    EXCLUDED,
    active_fraction,
    compute_partitions,
    local_object_mask,
    partition_counts,
    partition_lut,
    quantize,
    remove_dust,
    valid_slices,
    window_sums,
)


def quantize_reference(fraction: float, thresholds) -> int:
    """The original's rule written out: the first threshold in list order the fraction is below."""
    for i, th in enumerate(thresholds):
        if fraction < th:
            return i + 1
    return len(thresholds) + 1


def direct_partitions(labels, thresholds, radius, min_size=0, whitelist=None):
    """Slow reference: count same-label voxels in every window with a Python loop."""
    ids, counts = np.unique(labels, return_counts=True)
    keep = {int(i) for i, c in zip(ids, counts) if c >= min_size and i != 0}
    if whitelist is not None:
        keep &= set(whitelist)
    out = np.full(labels.shape, EXCLUDED, dtype=np.uint8)
    rz, ry, rx = radius
    volume = (2 * rz + 1) * (2 * ry + 1) * (2 * rx + 1)
    Z, Y, X = labels.shape
    for z, y, x in itertools.product(range(rz, Z - rz), range(ry, Y - ry), range(rx, X - rx)):
        value = int(labels[z, y, x])
        if value not in keep:
            out[z, y, x] = 0
            continue
        window = labels[z - rz : z + rz + 1, y - ry : y + ry + 1, x - rx : x + rx + 1]
        out[z, y, x] = quantize_reference(np.count_nonzero(window == value) / volume, thresholds)
    return out


# --- exact values on hand-built volumes -------------------------------------------------------


def test_cube_exact_values():
    labels = np.zeros((9, 9, 9), dtype=np.uint16)
    labels[2:7, 2:7, 2:7] = 5  # a 5^3 cube
    out = compute_partitions(labels, DEFAULT_THRESHOLDS, (1, 1, 1), min_size=0)

    expected = np.full(labels.shape, EXCLUDED, dtype=np.uint8)
    expected[1:8, 1:8, 1:8] = BACKGROUND
    for z, y, x in itertools.product(range(2, 7), repeat=3):
        # per axis the 3-voxel window sees 2 cube voxels on the cube's surface, 3 inside
        count = np.prod([2 if c in (2, 6) else 3 for c in (z, y, x)])
        expected[z, y, x] = quantize_reference(count / 27, DEFAULT_THRESHOLDS)
    np.testing.assert_array_equal(out, expected)
    # corner 8/27 = 0.296 -> below 0.3 (threshold 6) -> 6; centre 27/27 -> 13
    assert out[2, 2, 2] == 6 and out[4, 4, 4] == 13 and out[2, 4, 4] == 10
    assert out.dtype == np.uint8 and out.shape == labels.shape


def test_two_touching_objects_do_not_count_each_other():
    labels = np.ones((5, 6, 8), dtype=np.uint32)
    labels[..., 4:] = 2  # object 2 touches object 1 along x = 3 | 4
    out = compute_partitions(labels, DEFAULT_THRESHOLDS, (1, 1, 1), min_size=0)
    inner = out[1:4, 1:5, 1:7]
    # x = 1, 2 and 5, 6: the whole window is the voxel's own object -> fraction 1 -> 13
    # x = 3 and 4: 2 of 3 columns are the own object -> 2/3 -> below 0.7 -> 10
    np.testing.assert_array_equal(inner[0, 0], [13, 13, 10, 10, 13, 13])
    assert np.all(inner == inner[:1, :1])  # the same along z and y


def test_thin_neurite():
    labels = np.zeros((7, 9, 9), dtype=np.int64)
    labels[:, 4, 4] = 3  # a 1-voxel-wide neurite along z
    out = compute_partitions(labels, DEFAULT_THRESHOLDS, (1, 2, 2), min_size=0)
    # window 3 x 5 x 5 = 75 voxels, 3 of them neurite: 0.04 < 0.05 -> partition 2
    np.testing.assert_array_equal(out[1:6, 4, 4], 2)
    assert np.count_nonzero((out > 0) & (out < EXCLUDED)) == 5


def test_border_is_excluded_and_zero_radius_keeps_axis():
    labels = np.ones((4, 8, 10), dtype=np.uint8)
    out = compute_partitions(labels, [0.5], (0, 2, 3), min_size=0)
    assert out.shape == labels.shape and out.dtype == np.uint8
    inside = np.zeros(labels.shape, bool)
    inside[valid_slices(labels.shape, (0, 2, 3))] = True
    assert inside[:, 2:6, 3:7].all() and inside.sum() == 4 * 4 * 4
    assert np.all(out[~inside] == EXCLUDED)
    assert np.all(out[inside] == 2)  # fraction 1 >= 0.5


def test_mask_excludes_every_window_that_touches_it():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=(7, 9, 11)).astype(np.uint32)
    mask = np.zeros(labels.shape, bool)
    mask[3, 2, 8] = True
    radius = (1, 2, 2)
    plain = compute_partitions(labels, DEFAULT_THRESHOLDS, radius, min_size=0)
    masked = compute_partitions(labels, DEFAULT_THRESHOLDS, radius, min_size=0, mask=mask)
    near = np.zeros(labels.shape, bool)
    near[2:5, 0:5, 6:11] = True  # within the window radius of the masked voxel
    np.testing.assert_array_equal(masked[near], EXCLUDED)
    np.testing.assert_array_equal(masked[~near], plain[~near])


def test_exclusion_sphere():
    labels = np.ones((9, 9, 9), dtype=np.uint32)
    out = compute_partitions(labels, [0.5], (1, 1, 1), min_size=0, exclusion_regions=[(4, 4, 3, 1.5)])
    zz, yy, xx = np.indices(labels.shape)
    sphere = (zz - 4) ** 2 + (yy - 4) ** 2 + (xx - 3) ** 2 <= 1.5**2
    inside = np.zeros(labels.shape, bool)
    inside[1:8, 1:8, 1:8] = True
    np.testing.assert_array_equal(out[sphere], EXCLUDED)
    np.testing.assert_array_equal(out[inside & ~sphere], 2)
    assert sphere.sum() == 19  # centre, 6 faces and 12 edges of the unit cube neighbourhood


def test_dust_is_removed_by_id_not_by_component():
    labels = np.zeros((6, 6, 12), dtype=np.uint32)
    labels[1:5, 1:5, 1:3] = 1  # 32 voxels
    labels[1:5, 1:5, 9:11] = 1  # 32 more, a separate piece of the same id: 64 in all
    labels[2:4, 2:4, 5:7] = 2  # 8 voxels: dust at min_size 40
    out = compute_partitions(labels, DEFAULT_THRESHOLDS, (1, 1, 1), min_size=40)
    assert np.all(out[labels == 2] == BACKGROUND)
    kept = (labels == 1) & (out != EXCLUDED)
    assert kept.any() and np.all(out[kept] >= 1)
    np.testing.assert_array_equal(remove_dust(labels, 40), np.where(labels == 2, 0, labels))


def test_whitelist():
    labels = np.zeros((5, 5, 10), dtype=np.uint32)
    labels[..., :5] = 7
    labels[..., 5:] = 9
    out = compute_partitions(labels, [0.5], (1, 1, 1), min_size=0, id_whitelist=[9])
    assert np.all(out[1:4, 1:4, 1:5] == BACKGROUND)
    assert np.all(out[1:4, 1:4, 5:9] == 2)


# --- equality with a direct window count --------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_direct_window_count(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(8, 11, 13)).astype(np.uint16)
    labels[:, :5] = np.where(labels[:, :5] > 0, 1, 0)  # a larger object too
    radius = tuple(int(r) for r in rng.integers(0, 4, size=3))
    thresholds = DEFAULT_THRESHOLDS if seed != 2 else (0.5, 0.2, 0.7)  # any order is allowed
    min_size = [0, 50, 200][seed]
    whitelist = None if seed != 1 else [1, 3]
    ours = compute_partitions(
        labels, thresholds, radius, min_size=min_size, id_whitelist=whitelist
    )
    ref = direct_partitions(labels, thresholds, radius, min_size, whitelist)
    np.testing.assert_array_equal(ours, ref)


def test_large_and_negative_ids_use_the_general_path():
    rng = np.random.default_rng(5)
    small = rng.integers(0, 3, size=(6, 8, 9))
    for ids in (np.array([0, 2**40, 2**62], dtype=np.uint64), np.array([0, -5, 12], dtype=np.int64)):
        labels = ids[small]
        ref = direct_partitions(labels, DEFAULT_THRESHOLDS, (1, 2, 1))
        np.testing.assert_array_equal(
            compute_partitions(labels, DEFAULT_THRESHOLDS, (1, 2, 1), min_size=0), ref
        )


def test_window_sums_match_direct_sums():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 5, size=(6, 7, 8))
    radius = (2, 1, 3)
    got = window_sums(a, radius)
    for z, y, x in itertools.product(range(2), range(5), range(2)):
        assert got[z, y, x] == a[z : z + 5, y : y + 3, x : x + 7].sum()


def test_quantize_matches_the_rule_for_any_order():
    fractions = np.linspace(0, 1, 101)
    for thresholds in (DEFAULT_THRESHOLDS, (0.5, 0.2, 0.7), (0.3, 0.3, 0.1)):
        got = quantize(fractions, thresholds)
        assert got.dtype == np.uint8
        assert got.tolist() == [quantize_reference(f, thresholds) for f in fractions]
    assert quantize(0.05, DEFAULT_THRESHOLDS) == 3  # equal to a threshold: not below it


def test_partition_lut_is_count_over_volume():
    lut = partition_lut(DEFAULT_THRESHOLDS, 27)
    assert lut.tolist() == [quantize_reference(c / 27, DEFAULT_THRESHOLDS) for c in range(28)]


def test_active_fraction_and_local_object_mask_agree_with_partitions():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, size=(7, 9, 9)).astype(np.uint32)
    radius = (1, 2, 2)
    frac = active_fraction(labels, radius)
    parts = compute_partitions(labels, DEFAULT_THRESHOLDS, radius, min_size=0)
    known = np.isfinite(frac)
    np.testing.assert_array_equal(known, (parts > 0) & (parts < EXCLUDED))
    np.testing.assert_array_equal(quantize(frac[known], DEFAULT_THRESHOLDS), parts[known])
    z, y, x = np.argwhere(known)[0]
    window, value = local_object_mask(labels, (z, y, x), radius)
    assert window.shape == (3, 5, 5)
    assert value == pytest.approx(frac[z, y, x])


def test_partition_counts_excludes_the_border():
    labels = np.ones((5, 5, 5), dtype=np.uint32)
    parts = compute_partitions(labels, [0.5], 1, min_size=0)
    assert partition_counts(parts, 1) == {2: 27}
    assert partition_counts(parts) == {2: 27, 255: 125 - 27}


def test_input_is_not_modified():
    labels = np.arange(6 * 6 * 6, dtype=np.uint32).reshape(6, 6, 6) % 3
    before = labels.copy()
    compute_partitions(labels, DEFAULT_THRESHOLDS, 1, min_size=80)
    np.testing.assert_array_equal(labels, before)


# --- bad input -----------------------------------------------------------------------------------


def test_float_labels_are_rejected():
    with pytest.raises(TypeError, match="integer dtype"):
        compute_partitions(np.zeros((5, 5, 5), np.float32), DEFAULT_THRESHOLDS, 1)


def test_radius_larger_than_volume_is_rejected():
    with pytest.raises(ValueError, match="too large"):
        compute_partitions(np.zeros((5, 30, 30), np.uint32), DEFAULT_THRESHOLDS, (3, 1, 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": []}, "at least one"),
        ({"lom_radius": (1, 1)}, "3 values"),
        ({"lom_radius": (-1, 1, 1)}, "negative"),
        ({"mask": np.zeros((4, 4, 4), bool)}, "mask shape"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"thresholds": DEFAULT_THRESHOLDS, "lom_radius": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        compute_partitions(np.zeros((5, 5, 5), np.uint32), **args)


def test_two_dimensional_labels_are_rejected():
    with pytest.raises(ValueError, match="3-D"):
        compute_partitions(np.zeros((5, 5), np.uint32), DEFAULT_THRESHOLDS, 1)
