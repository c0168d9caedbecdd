"""The synthetic SNEMI3D-like volume."""

import numpy as np
import pytest
from scipy import ndimage

from neurotut.data import make_synthetic


def _touching_pairs(labels: np.ndarray) -> int:
    """Face-adjacent voxel pairs carrying two different non-zero ids."""
    count = 0
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)[:-1]
        b = np.moveaxis(labels, axis, 0)[1:]
        count += int(((a != b) & (a > 0) & (b > 0)).sum())
    return count


@pytest.fixture(scope="module")
def synth():
    return make_synthetic((16, 96, 96), seed=3)


def test_shapes_dtypes_and_determinism(synth):
    raw, labels, voxel_size = synth
    assert raw.shape == labels.shape == (16, 96, 96)
    assert raw.dtype == np.uint8 and labels.dtype == np.uint32
    assert voxel_size == (30.0, 6.0, 6.0)
    raw2, labels2, _ = make_synthetic((16, 96, 96), seed=3)
    assert np.array_equal(raw, raw2) and np.array_equal(labels, labels2)
    raw3, labels3, _ = make_synthetic((16, 96, 96), seed=4)
    assert not np.array_equal(labels, labels3)


def test_snemi_like_statistics(synth):
    raw, labels, _ = synth
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(len(ids)))  # consecutive ids
    assert len(ids) - 1 >= 3  # objects survive membrane carving
    assert 0.1 < (labels == 0).mean() < 0.5
    # membranes (label 0) are darker than cytoplasm, like EM
    assert raw[labels == 0].mean() < raw[labels > 0].mean() - 30
    # neurites run through sections: most objects span several slices
    spans = [np.ptp(np.nonzero(labels == i)[0]) + 1 for i in ids[1:]]
    assert np.median(spans) >= 4


def test_objects_never_touch_without_a_zero_boundary_unless_asked(synth):
    _, labels, _ = synth
    assert _touching_pairs(labels) == 0
    _, touching, _ = make_synthetic((16, 96, 96), seed=3, touching=True)
    assert _touching_pairs(touching) > 0
    assert (touching == 0).mean() < (labels == 0).mean()


def test_missing_and_shifted_sections(synth):
    raw, labels, _ = synth
    raw2, labels2, _ = make_synthetic((16, 96, 96), seed=3, missing_sections=(5,), shifted_sections={9: (3, -2)})
    assert raw2[5].std() == 0 and raw[5].std() > 10
    assert np.array_equal(labels2[:9], labels[:9])
    assert np.array_equal(labels2[9:], np.roll(labels[9:], (3, -2), axis=(1, 2)))
    assert np.array_equal(raw2[9:], np.roll(raw[9:], (3, -2), axis=(1, 2)))


def test_bad_shape_is_refused():
    with pytest.raises(ValueError):
        make_synthetic((0, 10, 10))
    with pytest.raises(ValueError):
        make_synthetic((10, 10))


def test_label_statistics_on_a_hand_built_volume():
    from neurotut.data.stats import object_sizes, objects_per_slice, z_extent, zero_fraction_per_slice

    labels = np.zeros((3, 4, 4), np.uint32)
    labels[0, :2] = 5
    labels[1, :2] = 5
    labels[1, 2:] = 9
    labels[2, 0, 0] = 9
    ids, sizes = object_sizes(labels)
    assert ids.tolist() == [5, 9] and sizes.tolist() == [16, 9]
    assert objects_per_slice(labels).tolist() == [1, 2, 1]
    assert zero_fraction_per_slice(labels).tolist() == [0.5, 0.0, 15 / 16]
    ids, first, last = z_extent(labels)
    assert ids.tolist() == [5, 9] and first.tolist() == [0, 1] and last.tolist() == [1, 2]
