"""Tests for neurotut.ffn.coordinates: the index, balanced sampling, the original's records."""

import numpy as np
import pytest

from neurotut.ffn.coordinates import (
    IGNORE_PARTITION,
    BalancedSampler,
    balanced_records,
    index_partitions,
    load_coordinates,
    save_coordinates,
)
from neurotut.io import OutputExistsError


def make_volumes():
    rng = np.random.default_rng(0)
    a = rng.choice([0, 1, 2, 3, 255], p=[0.5, 0.3, 0.1, 0.05, 0.05], size=(6, 10, 12)).astype(
        np.uint8
    )
    b = rng.choice([0, 1, 4], p=[0.6, 0.39, 0.01], size=(8, 9, 7)).astype(np.uint8)
    b[4, 4, 3] = 4  # at least one voxel of partition 4 inside the margin
    return {"vol_a": a, "vol_b": b}


def test_index_holds_every_voxel_inside_the_margin_once():
    volumes = make_volumes()
    margin = (1, 2, 1)
    index = index_partitions(volumes, margin)
    assert index.volume_names == ("vol_a", "vol_b")
    expected = {}
    for vi, (name, vol) in enumerate(volumes.items()):
        crop = vol[1:-1, 2:-2, 1:-1]
        for v in np.unique(crop):
            if v != IGNORE_PARTITION:
                expected[int(v)] = expected.get(int(v), 0) + int(np.count_nonzero(crop == v))
    assert index.summary() == expected
    assert 255 not in index.summary()

    vol_idx, centers = index.centers(np.arange(index.offsets[-1]))
    seen = set()
    for k, value in enumerate(index.values):
        for row in range(index.offsets[k], index.offsets[k + 1]):
            vol = list(volumes.values())[vol_idx[row]]
            z, y, x = centers[row]
            assert vol[z, y, x] == value  # the centre really has the group's partition
            assert 1 <= z < vol.shape[0] - 1 and 2 <= y < vol.shape[1] - 2 and 1 <= x < vol.shape[2] - 1
            seen.add((int(vol_idx[row]), int(z), int(y), int(x)))
    assert len(seen) == index.offsets[-1]  # no duplicates


def test_sampler_is_balanced():
    vol = np.zeros((5, 40, 40), dtype=np.uint8)  # partition 0: almost everything
    vol[2, 10, 10:14] = 3  # partition 3: four voxels
    vol[2, 20, 20] = 7  # partition 7: one voxel
    index = index_partitions({"v": vol}, 1)
    n = 60_000
    _, centers = BalancedSampler(index, seed=1).sample(n)
    got = vol[centers[:, 0], centers[:, 1], centers[:, 2]]
    p = 1 / 3
    sigma = np.sqrt(n * p * (1 - p))
    for value in (0, 3, 7):
        assert abs(np.count_nonzero(got == value) - n * p) < 5 * sigma
    # inside partition 3, each of its four voxels equally often
    xs = centers[got == 3, 2]
    counts = np.bincount(xs - 10, minlength=4)
    m = counts.sum()
    assert np.all(np.abs(counts - m / 4) < 5 * np.sqrt(m * 0.25 * 0.75))


def test_sampler_is_deterministic_and_resumes():
    index = index_partitions(make_volumes(), 1)
    a = BalancedSampler(index, seed=5).sample(100)
    b = BalancedSampler(index, seed=5).sample(100)
    c = BalancedSampler(index, seed=6).sample(100)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])

    sampler = BalancedSampler(index, seed=9)
    sampler.sample(10)
    state = sampler.get_state()
    first = sampler.sample(20)
    resumed = BalancedSampler(index, seed=0)
    resumed.set_state(state)
    np.testing.assert_array_equal(resumed.sample(20)[1], first[1])

    name, center = next(iter(BalancedSampler(index, seed=1)))
    assert name in index.volume_names and len(center) == 3


def test_records_are_the_original_resampling():
    volumes = make_volumes()
    index = index_partitions(volumes, 1)
    vol_idx, centers = balanced_records(index, seed=3)
    k, m = index.n_partitions, index.max_count
    assert vol_idx.shape == (k * m,) and centers.shape == (k * m, 3)
    vols = list(volumes.values())
    values = np.array([vols[v][tuple(c)] for v, c in zip(vol_idx, centers)])
    for value, count in index.summary().items():
        picked = values == value
        assert np.count_nonzero(picked) == m  # every partition exactly max_count times
        keys = [tuple(row) for row in np.column_stack([vol_idx[picked], centers[picked]])]
        _, reps = np.unique(np.array(keys), axis=0, return_counts=True)
        assert len(reps) == min(count, m)
        assert set(reps.tolist()) <= {m // count, -(-m // count)}  # tiled permutation
    again = balanced_records(index, seed=3)
    np.testing.assert_array_equal(again[1], centers)
    assert not np.array_equal(balanced_records(index, seed=4)[1], centers)


def test_save_and_load_round_trip(tmp_path):
    index = index_partitions(make_volumes(), (1, 2, 1))
    path = tmp_path / "coords.h5"
    records = balanced_records(index, 0)
    save_coordinates(path, index, records=records)
    loaded = load_coordinates(path)
    assert loaded.volume_names == index.volume_names
    assert loaded.volume_shapes == index.volume_shapes
    assert loaded.margin == index.margin
    for field in ("values", "offsets", "volume_index", "flat_index"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(index, field))
    np.testing.assert_array_equal(
        BalancedSampler(loaded, 2).sample(50)[1], BalancedSampler(index, 2).sample(50)[1]
    )
    with pytest.raises(OutputExistsError):
        save_coordinates(path, index)


def test_margin_zero_keeps_everything():
    vol = np.full((3, 4, 5), 2, dtype=np.uint8)
    index = index_partitions([("v", vol)], 0)
    assert index.summary() == {2: 60}


@pytest.mark.parametrize(
    "volumes, margin, error, message",
    [
        ({"v": np.zeros((4, 4, 4), np.uint8)}, 2, ValueError, "leaves nothing"),
        ({"v": np.full((6, 6, 6), 255, np.uint8)}, 1, ValueError, "no voxel to sample"),
        ({"v": np.zeros((6, 6, 6), np.float32)}, 1, TypeError, "integer"),
        ({"v": np.zeros((6, 6), np.uint8)}, 1, ValueError, "3-D"),
        ([("a", np.zeros((6, 6, 6), np.uint8))] * 2, 1, ValueError, "unique"),
        ({"v": np.zeros((6, 6, 6), np.uint8)}, (1, 1), ValueError, "margin"),
    ],
)
def test_bad_input(volumes, margin, error, message):
    with pytest.raises(error, match=message):
        index_partitions(volumes, margin)


def test_load_rejects_other_files(tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a neurotut coordinate file"):
        load_coordinates(other)
    with pytest.raises(FileNotFoundError):
        load_coordinates(tmp_path / "missing.h5")
