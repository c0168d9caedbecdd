"""Tests for neurotut.augment: the 16 flip/transpose variants on labels and on affinities,
misalignment, missing sections, blur and greyscale."""

from __future__ import annotations

import numpy as np
import pytest

from neurotut.affinity import SUPERHUMAN_OFFSETS, affinities, affinity_mask
from neurotut.augment import (
    AugmentConfig,
    augment_image,
    blur_sections,
    flip_affinities,
    flip_volume,
    greyscale,
    inverse_variant,
    misalign,
    missing_sections,
    variant_axes,
)


def blobs(shape=(6, 30, 30), seed=0, n=5) -> np.ndarray:
    """Labels with objects bigger than a voxel, zeros between some of them."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, size=(shape[0], shape[1] // 3 + 1, shape[2] // 3 + 1))
    labels = np.repeat(np.repeat(coarse, 3, axis=1), 3, axis=2)[:, : shape[1], : shape[2]]
    return labels.astype(np.uint32)


def test_variants_cover_all_16_distinct_transforms():
    vol = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    seen = {flip_volume(vol, k).tobytes() for k in range(16)}
    assert len(seen) == 16
    assert variant_axes(0) == (False, False, False, False)
    assert variant_axes(15) == (True, True, True, True)
    with pytest.raises(ValueError):
        variant_axes(16)


@pytest.mark.parametrize("variant", range(16))
def test_affinities_of_augmented_labels_equal_augmented_affinities(variant):
    labels = blobs()
    offs = SUPERHUMAN_OFFSETS
    augmented_first = affinities(np.ascontiguousarray(flip_volume(labels, variant)), offs)
    augmented_after = flip_affinities(affinities(labels, offs), variant, offs)
    np.testing.assert_array_equal(augmented_after, augmented_first)
    # the valid-edge mask transforms the same way
    mask_first = affinity_mask(labels.shape, offs)
    mask_after = flip_affinities(affinity_mask(labels.shape, offs), variant, offs)
    np.testing.assert_array_equal(mask_after, mask_first)


@pytest.mark.parametrize("variant", [3, 9, 14])
def test_non_square_volumes_and_negative_offsets(variant):
    labels = blobs((5, 12, 21), seed=3)
    offs = [(0, 0, 1), (0, 1, 0), (1, 0, 0), (0, -2, 0), (0, 0, -2), (-1, 0, 0)]
    first = affinities(np.ascontiguousarray(flip_volume(labels, variant)), offs)
    after = flip_affinities(affinities(labels, offs), variant, offs)
    assert first.shape == after.shape
    np.testing.assert_array_equal(after, first)
    # a reflected diagonal offset has no channel to go to: refused, not silently wrong
    with pytest.raises(ValueError, match="diagonal"):
        flip_affinities(affinities(labels, [(1, 1, 0)]), variant, [(1, 1, 0)])


def test_a_plain_flip_of_affinities_is_wrong():
    # the pitfall the spec warns about: flipping the affinity channels like an image is off by
    # the offset along the flipped axis
    labels = blobs()
    offs = SUPERHUMAN_OFFSETS
    naive = np.flip(affinities(labels, offs), axis=3)  # flip x
    correct = affinities(np.ascontiguousarray(flip_volume(labels, 4)), offs)
    assert not np.array_equal(naive, correct)


@pytest.mark.parametrize("variant", range(16))
def test_inverse_variant_undoes_the_variant(variant):
    labels = blobs(seed=1)
    inv = inverse_variant(variant)
    np.testing.assert_array_equal(flip_volume(flip_volume(labels, variant), inv), labels)
    affs = affinities(labels)
    back = flip_affinities(flip_affinities(affs, variant, SUPERHUMAN_OFFSETS), inv, SUPERHUMAN_OFFSETS)
    np.testing.assert_array_equal(back, affs)


def test_transpose_needs_swapped_offsets():
    affs = affinities(blobs(), [(0, 0, 1), (1, 0, 0)])
    flip_affinities(affs, 7, [(0, 0, 1), (1, 0, 0)])  # no transpose: fine
    with pytest.raises(ValueError, match="swapped offset"):
        flip_affinities(affs, 8, [(0, 0, 1), (1, 0, 0)])


@pytest.mark.parametrize("slip_prob", [0.0, 1.0])
def test_misalign_crops_consistently(slip_prob):
    rng = np.random.default_rng(5)
    t = 3
    z, y, x = 6, 8, 9
    a = np.arange(z * (y + 2 * t) * (x + 2 * t)).reshape(z, y + 2 * t, x + 2 * t)
    b = a * 2
    for _ in range(10):
        (ca, cb), info = misalign([a, b], t, rng, slip_prob)
        assert ca.shape == (z, y, x)
        np.testing.assert_array_equal(cb, ca * 2)
        sy, sx = info["shift"]
        assert abs(sy) <= t and abs(sx) <= t
        affected = info["z"]
        if slip_prob == 1.0:
            assert len(affected) == 1
        else:
            assert affected == list(range(affected[0], z)) and affected[0] >= 1
        for s in range(z):
            dy, dx = (sy, sx) if s in affected else (0, 0)
            np.testing.assert_array_equal(ca[s], a[s, t + dy : t + dy + y, t + dx : t + dx + x])


def test_missing_sections_blank_only_chosen_sections():
    rng = np.random.default_rng(0)
    raw = rng.random((8, 16, 16)).astype(np.float32)
    for _ in range(10):
        out, sections = missing_sections(raw, rng, max_sections=3)
        assert 1 <= len(sections) <= 3
        for s in range(8):
            if s in sections:
                changed = out[s] != raw[s]
                assert changed.any()
                assert np.unique(out[s][changed]).size == 1  # one fill value
            else:
                np.testing.assert_array_equal(out[s], raw[s])


def test_blur_changes_only_chosen_sections_and_keeps_the_mean_roughly():
    rng = np.random.default_rng(1)
    raw = rng.random((6, 32, 32)).astype(np.float32)
    out, sections = blur_sections(raw, rng, max_sections=2, sigma_max=3.0, partial_prob=0.0)
    for s in range(6):
        if s in sections:
            assert out[s].std() <= raw[s].std() + 1e-6
            assert abs(out[s].mean() - raw[s].mean()) < 0.05
        else:
            np.testing.assert_array_equal(out[s], raw[s])


def test_greyscale_is_monotone_and_stays_in_range():
    rng = np.random.default_rng(2)
    raw = rng.random((4, 10, 10)).astype(np.float32)
    for per_section in (True, False):
        out = greyscale(raw, rng, per_section=per_section)
        assert out.min() >= 0 and out.max() <= 1
        for s in range(4):
            order = np.argsort(raw[s].ravel())
            assert np.all(np.diff(out[s].ravel()[order]) >= -1e-7)


def test_augment_config_checks_and_none():
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(blur_prob=1.5)
    none = AugmentConfig.none()
    assert none.shift_margin == 0 and not none.flips
    raw = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(augment_image(raw, none, np.random.default_rng(0)), raw)
