"""Seed policies: PolicyPeaks, PolicyGrid3d, PolicyMax and their resumable iteration."""

import numpy as np
import pytest
from scipy import ndimage

from neurotut.ffn.seeds import (
    PolicyGrid3d,
    PolicyMax,
    PolicyPeaks,
    make_seed_policy,
    peaks_maps,
)


def cells_image(shape=(20, 40, 40), walls=(20,), value=1.0):
    """Bright boxes separated by dark walls along x (at the given x positions, 2 voxels thick)."""
    image = np.full(shape, value, np.float32)
    for x in walls:
        image[:, :, x - 1 : x + 1] = 0.0
    image[:, :, :1] = 0.0
    image[:, :, -1:] = 0.0
    return image


def test_grid3d_points_by_hand():
    policy = PolicyGrid3d(np.zeros((20, 20, 20), np.float32), step=16, offsets=(0, 8))
    expected = [(z, y, x) for z in (0, 16) for y in (0, 16) for x in (0, 16)] + [(8, 8, 8)]
    assert [tuple(p) for p in policy.coords] == expected
    # iteration drops points whose field of view would leave the volume
    assert list(PolicyGrid3d(np.zeros((20, 20, 20)), margin=(4, 4, 4), step=16, offsets=(0, 8))) == [(8, 8, 8)]
    assert list(PolicyGrid3d(np.zeros((20, 20, 20)), margin=(3, 3, 3), step=16, offsets=(0, 8))) == [
        (16, 16, 16), (8, 8, 8)]
    assert list(PolicyGrid3d(np.zeros((20, 20, 20)), margin=0, step=16, offsets=(0, 8)))[0] == (0, 0, 0)


def test_grid3d_default_offsets_are_the_originals():
    policy = PolicyGrid3d(np.zeros((16, 16, 16)))
    assert [tuple(p) for p in policy.coords] == [(o, o, o) for o in (0, 8, 4, 12, 2, 10, 14)]


def test_policy_max_orders_by_decreasing_intensity_ties_in_raster_order():
    image = np.zeros((2, 2, 3), np.float32)
    image[1, 0, 2] = 5.0
    image[0, 1, 1] = 3.0
    image[1, 1, 0] = 3.0
    coords = [tuple(p) for p in PolicyMax(image).coords]
    assert coords[:3] == [(1, 0, 2), (0, 1, 1), (1, 1, 0)]
    zeros = [p for p in np.ndindex(image.shape) if image[p] == 0]
    assert coords[3:] == zeros


def test_peaks_maps_edges_follow_the_walls():
    image = cells_image()
    magnitude, edges, distance = peaks_maps(image)
    assert magnitude.dtype == np.float32 and edges.dtype == bool and distance.dtype == np.float32
    assert edges[:, :, 18:22].all(axis=2).all()  # the wall and its sides are edges
    assert not edges[:, :, 8].any()  # the middle of a cell is not
    assert np.all(distance[edges] == 0) and np.all(distance[~edges] > 0)


def test_policy_peaks_one_region_of_seeds_per_cell_in_raster_order():
    image = cells_image(shape=(24, 24, 48), walls=(24,))
    policy = PolicyPeaks(image, margin=(2, 2, 2))
    coords = policy.coords
    assert len(coords) > 0
    # sorted in raster order, as the original sorts (z, y, x) tuples
    assert [tuple(p) for p in coords] == sorted(tuple(p) for p in coords)
    # every seed is a local maximum of the distance transform (up to the 1e-4 tie noise)
    _, edges, distance = peaks_maps(image)
    local_max = ndimage.maximum_filter(distance, size=7, mode="constant")
    for p in coords:
        assert distance[tuple(p)] >= local_max[tuple(p)] - 1e-4
        assert not edges[tuple(p)]
    # both cells get seeds
    assert {int(x < 24) for x in coords[:, 2]} == {0, 1}


def test_policy_peaks_is_deterministic_and_leaves_the_global_rng_alone():
    image = cells_image()
    np.random.seed(123)
    before = np.random.random(3)
    np.random.seed(123)
    a = PolicyPeaks(image).coords
    after = np.random.random(3)
    assert np.array_equal(before, after)
    b = PolicyPeaks(image).coords
    assert np.array_equal(a, b)


def test_policy_peaks_treats_masked_voxels_as_edges():
    image = cells_image(shape=(24, 24, 48), walls=(24,))
    mask = np.zeros(image.shape, bool)
    mask[:, :, 24:] = True
    _, edges, distance = peaks_maps(image, mask=mask)
    assert edges[mask].all() and np.all(distance[mask] == 0)
    coords = PolicyPeaks(image, mask=mask).coords
    # seeds with a real distance from an edge are all in the unmasked cell; in the masked part
    # only the tie-breaking noise makes peaks (as in the original; the canvas skips masked seeds)
    inside = distance[tuple(coords.T)] > 0
    assert inside.any() and np.all(coords[inside, 2] < 24)


def test_policy_state_resumes_the_iteration():
    image = np.zeros((24, 24, 24), np.float32)
    full = list(PolicyGrid3d(image, margin=2, step=8))
    first = PolicyGrid3d(image, margin=2, step=8)
    head = [next(first) for _ in range(3)]
    state = first.get_state()
    resumed = PolicyGrid3d(image, margin=2, step=8)
    resumed.set_state(state)
    assert head + list(resumed) == full


def test_policy_state_from_another_image_is_refused():
    state = PolicyGrid3d(np.zeros((24, 24, 24)), step=8).get_state()
    with pytest.raises(ValueError, match="points"):
        PolicyGrid3d(np.zeros((32, 24, 24)), step=8).set_state(state)
    with pytest.raises(ValueError, match="PolicyGrid3d"):
        PolicyMax(np.zeros((24, 24, 24))).set_state(state)


def test_make_seed_policy_by_name_and_bad_input():
    assert isinstance(make_seed_policy("PolicyPeaks", np.zeros((8, 8, 8))), PolicyPeaks)
    with pytest.raises(ValueError, match="unknown seed policy"):
        make_seed_policy("PolicySpread", np.zeros((8, 8, 8)))
    with pytest.raises(ValueError, match="Z, Y, X"):
        PolicyMax(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="mask shape"):
        PolicyPeaks(np.zeros((8, 8, 8)), mask=np.zeros((8, 8, 7), bool))
