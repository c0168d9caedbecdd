"""Tests for neurotut.affinity: labels to affinities, masks, erosion, degradations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neurotut import affinity


def brute_force_affinities(labels: np.ndarray, offsets) -> np.ndarray:
    """The definition, one voxel at a time."""
    out = np.zeros((len(offsets),) + labels.shape, dtype=np.float32)
    for c, d in enumerate(offsets):
        for v in itertools.product(*(range(n) for n in labels.shape)):
            u = tuple(vi - di for vi, di in zip(v, d))
            if all(0 <= ui < n for ui, n in zip(u, labels.shape)):
                out[(c,) + v] = float(labels[v] != 0 and labels[v] == labels[u])
    return out


def small_labels(seed: int = 0, shape=(5, 7, 8)) -> np.ndarray:
    """Blocks of 3 x 3 pixels with labels 0..3 (touching and separated objects)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(shape[0], 3, 3))
    return np.kron(coarse, np.ones((1, 3, 3), dtype=np.int64))[:, : shape[1], : shape[2]]


def test_superhuman_offsets_order():
    assert affinity.SUPERHUMAN_OFFSETS == (
        (0, 0, 1), (0, 1, 0), (1, 0, 0),
        (0, 0, 3), (0, 3, 0), (2, 0, 0),
        (0, 0, 9), (0, 9, 0), (3, 0, 0),
        (0, 0, 27), (0, 27, 0), (4, 0, 0),
    )  # fmt: skip
    assert affinity.nearest_neighbour_channels() == [2, 1, 0]  # z, y, x for waterz


def test_shapes_and_dtype():
    labels = np.ones((4, 6, 7), dtype=np.uint16)
    affs = affinity.affinities(labels)
    assert affs.shape == (12, 4, 6, 7) and affs.dtype == np.float32
    assert affinity.affinities(labels, [(1, 0, 0)], dtype=np.uint8).dtype == np.uint8


@pytest.mark.parametrize("seed", range(3))
def test_equals_brute_force_definition(seed):
    labels = small_labels(seed)
    offsets = [(0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 0, 0), (0, 3, 0), (0, 0, 9), (1, -2, 1), (0, 0, -1)]
    np.testing.assert_array_equal(affinity.affinities(labels, offsets), brute_force_affinities(labels, offsets))


def test_symmetry_of_the_definition():
    """The edge (v - d, v) stored for offset d at v is the edge stored for -d at v - d."""
    labels = small_labels(1)
    for d in [(0, 0, 1), (0, 2, 0), (1, 0, 0), (1, 1, -2)]:
        neg = tuple(-x for x in d)
        fwd, bwd = affinity.affinities(labels, [d, neg])
        z, y, x = labels.shape
        later = tuple(slice(max(di, 0), n + min(di, 0)) for di, n in zip(d, (z, y, x)))
        earlier = tuple(slice(max(-di, 0), n + min(-di, 0)) for di, n in zip(d, (z, y, x)))
        np.testing.assert_array_equal(fwd[later], bwd[earlier])
        assert fwd.sum() == bwd.sum()


def test_zero_label_has_no_affinity():
    labels = np.zeros((3, 4, 4), dtype=np.uint32)
    assert not affinity.affinities(labels).any()  # 0-0 pairs are not affine
    labels[:, :2] = 5
    affs = affinity.affinities(labels, [(0, 1, 0)])
    assert affs[0, :, 1].all() and not affs[0, :, 2:].any() and not affs[0, :, 0].any()


def test_offsets_larger_than_the_volume_and_bad_offsets():
    labels = np.ones((3, 10, 10), dtype=np.uint8)
    affs = affinity.affinities(labels)  # 27-pixel and 4-section offsets do not fit
    assert not affs[9:].any() and affs[:3].any()
    with pytest.raises(ValueError, match="itself"):
        affinity.affinities(labels, [(0, 0, 0)])
    with pytest.raises(ValueError, match="distinct"):
        affinity.affinities(labels, [(1, 0, 0), (1, 0, 0)])
    with pytest.raises(ValueError, match="three integers"):
        affinity.affinities(labels, [(1, 0)])
    with pytest.raises(ValueError, match="Z, Y, X"):
        affinity.affinities(labels[0])
    with pytest.raises(TypeError, match="integer"):
        affinity.affinities(labels.astype(np.float32))


def test_affinity_mask():
    shape = (4, 6, 30)
    mask = affinity.affinity_mask(shape)
    assert mask.shape == (12,) + shape and mask.dtype == bool
    for c, d in enumerate(affinity.SUPERHUMAN_OFFSETS):
        expected = max(0, 4 - d[0]) * max(0, 6 - d[1]) * max(0, 30 - d[2])
        assert mask[c].sum() == expected
    assert not mask[0, :, :, 0].any() and mask[0, :, :, 1:].all()
    valid = np.ones(shape, dtype=bool)
    valid[:, :, 10] = False
    m2 = affinity.affinity_mask(shape, [(0, 0, 1)], valid=valid)
    assert not m2[0, :, :, 10].any() and not m2[0, :, :, 11].any() and m2[0, :, :, 12].all()
    # a label-derived affinity is 1 only on valid edges
    labels = np.ones(shape, dtype=np.uint8)
    assert not (affinity.affinities(labels) > affinity.affinity_mask(shape)).any()


def test_erode_borders_touching_objects():
    labels = np.zeros((2, 6, 8), dtype=np.uint32)
    labels[:, :, :4] = 1
    labels[:, :, 4:] = 2  # touching at x = 3 | 4
    eroded = affinity.erode_borders(labels, width=1)
    assert (eroded[:, :, 3:5] == 0).all()
    assert (eroded[:, :, :3] == 1).all() and (eroded[:, :, 5:] == 2).all()
    wide = affinity.erode_borders(labels, width=2)
    assert (wide[:, :, 2:6] == 0).all() and (wide[:, :, :2] == 1).all()
    # after erosion, no affinity crosses between the two objects in x
    affs = affinity.affinities(eroded, [(0, 0, 1)])
    assert affs[0, :, :, 4:6].sum() == 0
    assert labels[0, 0, 3] == 1  # input untouched


def test_erode_borders_leaves_separated_objects_and_z_alone():
    labels = np.zeros((2, 6, 9), dtype=np.uint32)
    labels[:, :, :4] = 1
    labels[:, :, 5:] = 2  # already separated by a 0 column
    labels[1, :, :4] = 3  # different id above object 1: touches only across z
    np.testing.assert_array_equal(affinity.erode_borders(labels), labels)
    assert affinity.erode_borders(labels, width=0) is not labels


def test_erode_borders_equals_window_rule():
    labels = small_labels(4).astype(np.uint32)
    eroded = affinity.erode_borders(labels)
    z, y, x = labels.shape
    for k, j, i in itertools.product(range(z), range(y), range(x)):
        window = labels[k, max(j - 1, 0) : j + 2, max(i - 1, 0) : i + 2]
        several = np.unique(window[window > 0]).size > 1
        assert eroded[k, j, i] == (0 if several else labels[k, j, i])


def test_nearest_neighbour_channels_requires_all_three():
    assert affinity.nearest_neighbour_channels([(0, 0, 1), (1, 0, 0), (0, 1, 0)]) == [1, 2, 0]
    with pytest.raises(ValueError, match="nearest-neighbour"):
        affinity.nearest_neighbour_channels([(0, 0, 1), (0, 1, 0), (2, 0, 0)])


def test_add_noise_is_clipped_and_seeded():
    affs = affinity.affinities(small_labels(2))
    a = affinity.add_noise(affs, 0.3, np.random.default_rng(0))
    b = affinity.add_noise(affs, 0.3, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert 0.1 < np.abs(a - affs).mean() < 0.3
    np.testing.assert_array_equal(affinity.add_noise(affs, 0.0, np.random.default_rng(1)), affs)
    # smooth noise keeps its strength but is correlated between neighbouring voxels
    zeros = np.full((1, 6, 40, 40), 0.5, dtype=np.float32)
    rough = affinity.add_noise(zeros, 0.1, np.random.default_rng(2))[0] - 0.5
    smooth = affinity.add_noise(zeros, 0.1, np.random.default_rng(2), smooth=(0, 3, 3))[0] - 0.5
    assert smooth.std() == pytest.approx(0.1, rel=0.05)
    corr = lambda n: np.corrcoef(n[:, :, 1:].ravel(), n[:, :, :-1].ravel())[0, 1]  # noqa: E731
    assert corr(smooth) > 0.8 and abs(corr(rough)) < 0.1


def test_blank_sections_touches_exactly_the_edges_of_the_section():
    labels = np.ones((8, 5, 5), dtype=np.uint8)
    offsets = [(0, 0, 1), (1, 0, 0), (3, 0, 0)]
    affs = affinity.affinities(labels, offsets)
    out = affinity.blank_sections(affs, [2], offsets, value=0.5)
    changed = out != affs
    assert changed[0, 2, :, 1:].all() and changed[0].sum() == 5 * 4  # in-plane edges of section 2
    assert changed[1, 2].all() and changed[1, 3].all() and changed[1].sum() == 2 * 25  # z: into/out of 2
    assert changed[2, 5].all() and changed[2].sum() == 25  # (3,0,0): no edge from z=-1 into z=2
    assert affs.max() == 1  # input untouched
    with pytest.raises(ValueError, match="outside"):
        affinity.blank_sections(affs, [8], offsets)
