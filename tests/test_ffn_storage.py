"""FFN result files: layout, quantisation, safe saving/loading, component splitting, conversions."""

import numpy as np
import pytest

from neurotut.ffn import storage
from neurotut.ffn.storage import OriginInfo
from neurotut.io import OutputExistsError


def test_paths_follow_the_original_layout(tmp_path):
    corner = (3, 20, 100)  # z, y, x
    path = storage.segmentation_path(tmp_path, corner)
    assert path == tmp_path / "100" / "20" / "seg-100_20_3.npz"
    assert storage.probability_path(tmp_path, corner).name == "seg-100_20_3.prob"
    assert storage.checkpoint_path(tmp_path, corner).name == "seg-100_20_3.cpoint"
    assert storage.corner_from_path(path) == corner
    with pytest.raises(ValueError):
        storage.corner_from_path("seg.npz")


def test_quantization_by_hand():
    p = np.array([0.0, 1.0 / 254, 0.5, 1.0, np.nan])
    q = storage.quantize_probability(p)
    assert q.dtype == np.uint8
    assert q.tolist() == [1, 2, 128, 255, 0]
    back = storage.dequantize_probability(q)
    assert np.isnan(back[-1])
    np.testing.assert_allclose(back[:4], (q[:4] - 0.5) / 255.0, rtol=1e-6)
    dense = np.linspace(0, 1, 1001)
    # the original's bins (width 1/254) and its dequantisation ((q - 0.5) / 255) differ slightly
    assert np.max(np.abs(storage.dequantize_probability(storage.quantize_probability(dense)) - dense)) < 2 / 255


def test_reduce_id_bits():
    assert storage.reduce_id_bits(np.array([0, 255])).dtype == np.uint8
    assert storage.reduce_id_bits(np.array([0, 256])).dtype == np.uint16
    assert storage.reduce_id_bits(np.array([70000])).dtype == np.uint32
    with pytest.raises(ValueError, match="-1"):
        storage.reduce_id_bits(np.array([-1, 3]))


def _result():
    seg = np.zeros((4, 6, 8), np.int32)
    seg[:, :3] = 1
    seg[:, 3:, 4:] = 2
    seg[0, 5, 0] = -1  # a rejected seed marker
    origins = {1: OriginInfo((1, 1, 1), 12, 0.5), 2: OriginInfo((2, 4, 6), 3, 0.25)}
    overlaps = {1: np.zeros((2, 0), np.int64), 2: np.array([[1], [17]])}
    prob = storage.quantize_probability(np.where(seg > 0, 0.97, np.nan))
    return seg, origins, overlaps, prob


def test_save_and_load_round_trip_without_pickles(tmp_path):
    seg, origins, overlaps, prob = _result()
    path = storage.save_subvolume(
        tmp_path, (0, 0, 0), seg, origins, overlaps, counters={"segments-created": 2},
        request={"seed_policy": "PolicyPeaks"}, seg_prob=prob,
    )
    assert path == tmp_path / "0" / "0" / "seg-0_0_0.npz"
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"segmentation", "origins", "overlaps", "counters", "request"}
        assert data["segmentation"].dtype == np.uint8
        np.testing.assert_array_equal(data["segmentation"], np.maximum(seg, 0))
    loaded = storage.load_segmentation(tmp_path, (0, 0, 0), split_cc=False)
    assert loaded.dtype == np.uint64
    np.testing.assert_array_equal(loaded, np.maximum(seg, 0))
    assert storage.load_origins(tmp_path, (0, 0, 0)) == origins
    got = storage.load_overlaps(tmp_path)
    assert list(got) == [1, 2] and got[2].tolist() == [[1], [17]] and got[1].shape == (2, 0)
    assert storage.load_json_field(path, "counters") == {"segments-created": 2}
    assert storage.load_json_field(path, "request")["seed_policy"] == "PolicyPeaks"
    np.testing.assert_array_equal(
        storage.load_probability(tmp_path), storage.dequantize_probability(prob)
    )


def test_existing_result_is_refused_not_skipped(tmp_path):
    seg, origins, overlaps, prob = _result()
    path = storage.save_subvolume(tmp_path, (0, 0, 0), seg, origins, seg_prob=prob)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        storage.save_subvolume(tmp_path, (0, 0, 0), np.zeros_like(seg), {}, seg_prob=prob)
    assert path.read_bytes() == before
    # a stale .prob alone also blocks a new result, before anything is written
    other = (0, 0, 8)
    storage.probability_path(tmp_path, other).parent.mkdir(parents=True, exist_ok=True)
    storage.probability_path(tmp_path, other).write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        storage.save_subvolume(tmp_path, other, seg, origins, seg_prob=prob)
    assert not storage.segmentation_path(tmp_path, other).exists()
    storage.save_subvolume(tmp_path, (0, 0, 0), np.zeros_like(seg), {}, seg_prob=prob, overwrite=True)
    assert storage.load_segmentation(tmp_path, (0, 0, 0)).max() == 0


def test_split_disconnected_components_and_dust():
    seg = np.zeros((1, 5, 9), np.uint32)
    seg[0, :, 0:2] = 7  # two pieces of id 7 ...
    seg[0, :, 6:8] = 7
    seg[0, 2, 4] = 3  # ... and a single voxel of id 3
    split = storage.split_disconnected_components(seg)
    assert split.dtype == np.uint64
    assert len(np.unique(split[split > 0])) == 3
    assert split[0, 0, 0] != split[0, 0, 6] and (split > 0).sum() == (seg > 0).sum()
    cleaned, mapping = storage.clean_up(seg, split_cc=True, min_size=2)
    assert (cleaned[0, 2, 4] == 0) and set(mapping.values()) == {7}
    # diagonal contact is not 6-connectivity
    diag = np.zeros((2, 2, 2), np.uint8)
    diag[0, 0, 0] = diag[1, 1, 1] = 5
    assert len(np.unique(storage.split_disconnected_components(diag))) == 3


def test_load_splits_components_by_default_and_thresholds(tmp_path):
    seg = np.zeros((2, 4, 10), np.int32)
    seg[:, :, :3] = 1
    seg[:, :, 7:] = 1  # one FFN id in two pieces
    prob = np.full(seg.shape, np.nan)
    prob[seg > 0] = 0.7
    prob[:, :, 7:] = 0.95
    storage.save_subvolume(tmp_path, (0, 0, 0), seg, {}, seg_prob=storage.quantize_probability(prob))
    default = storage.load_segmentation(tmp_path)
    assert len(np.unique(default[default > 0])) == 2
    assert len(np.unique(storage.load_segmentation(tmp_path, split_cc=False))) == 2  # 0 and 1
    high = storage.load_segmentation(tmp_path, threshold=0.9, split_cc=False)
    assert high[:, :, :3].max() == 0 and high[:, :, 7:].min() == 1
    assert storage.load_segmentation(tmp_path, min_size=1000).max() == 0


def test_png_stack_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    seg = rng.integers(0, 40000, size=(3, 16, 16)).astype(np.uint32)
    paths = storage.to_png_stack(seg, tmp_path / "png", split_cc=False)
    assert [p.name for p in paths] == ["0000.png", "0001.png", "0002.png"]
    back = storage.from_png_stack(tmp_path / "png")
    np.testing.assert_array_equal(back, seg)
    with pytest.raises(OutputExistsError):
        storage.to_png_stack(seg, tmp_path / "png", split_cc=False)


def test_png_stack_renumbers_large_ids_and_refuses_too_many(tmp_path):
    seg = np.zeros((1, 4, 4), np.uint64)
    seg[0, 0, :2] = 10**6
    seg[0, 3, 3] = 70000
    storage.to_png_stack(seg, tmp_path / "a", split_cc=False)
    back = storage.from_png_stack(tmp_path / "a")
    assert back[0, 0, 0] == back[0, 0, 1] == 2 and back[0, 3, 3] == 1 and (back > 0).sum() == 3
    many = np.arange(1, 65537, dtype=np.uint64).reshape(1, 256, 256)
    with pytest.raises(ValueError, match="65535"):
        storage.to_png_stack(many, tmp_path / "b", split_cc=False)


def test_h5_round_trip_from_a_result(tmp_path):
    seg, origins, overlaps, prob = _result()
    storage.save_subvolume(tmp_path / "out", (0, 0, 0), seg, origins)
    out = tmp_path / "seg.h5"
    storage.to_h5(tmp_path / "out", out, split_cc=False)
    np.testing.assert_array_equal(storage.from_h5(f"{out}:segmentation"), np.maximum(seg, 0))
    with pytest.raises(OutputExistsError):
        storage.to_h5(tmp_path / "out", out)
    storage.to_h5(tmp_path / "out", out, overwrite=True)  # split_cc=True: same ids here, relabelled
    assert len(np.unique(storage.from_h5(f"{out}:segmentation"))) == 3


def test_files_written_by_google_ffn_load_their_segmentation(tmp_path):
    """The original pickles ``origins``; its segmentation still loads, the pickle is not read."""
    path = tmp_path / "0" / "0" / "seg-0_0_0.npz"
    path.parent.mkdir(parents=True)
    seg = np.zeros((2, 3, 4), np.uint8)
    seg[1] = 4
    np.savez_compressed(path, segmentation=seg, origins={4: ((1, 1, 1), 5, 0.1)})
    np.testing.assert_array_equal(storage.load_segmentation(tmp_path, split_cc=False), seg)
    with pytest.raises(ValueError, match="pickled"):
        storage.load_origins(tmp_path)


def test_missing_result_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="corner"):
        storage.load_segmentation(tmp_path, (0, 0, 0))
    with pytest.raises(ValueError, match="0 results"):
        storage.load_segmentation(tmp_path)
