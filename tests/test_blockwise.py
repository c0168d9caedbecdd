"""Blockwise prediction and segmentation on zarr with daisy: equality with the in-memory route,
resuming, unique ids, the graph store, and bad input and faults."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from neurotut import agglomerate as A
from neurotut import metrics
from neurotut.affinity import SUPERHUMAN_OFFSETS, WATERZ_OFFSETS, affinities
from neurotut.blockwise import schedule
from neurotut.blockwise.agglomerate import lookup_tables
from neurotut.blockwise.fragments import block_edges
from neurotut.blockwise.graph import open_graph_db, read_graph, write_edges, write_fragments
from neurotut.blockwise.predict import PredictBlocks, predict_block, predict_blockwise
from neurotut.blockwise.relabel import read_block_lut, relabel, segment_blockwise
from neurotut.data import make_synthetic
from neurotut.inference import predict_volume
from neurotut.io import OutputExistsError
from neurotut.models.rsunet import RSUNet, RSUNetConfig
from neurotut.volumes import (MissingChunkError, check_same_grid, create_volume, h5_to_zarr,
                              open_volume)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WINDOW = (4, 16, 16)


@pytest.fixture(scope="module")
def tiny():
    """A tiny untrained RSUNet (deterministic weights) and a synthetic (12, 40, 48) volume."""
    torch.manual_seed(0)
    raw, labels, _ = make_synthetic((12, 40, 48), seed=1)
    return RSUNet(RSUNetConfig(widths=(4, 6, 8))), raw


def _raw_zarr(tmp_path, raw, chunks=(5, 16, 24)):
    arr = create_volume(tmp_path / "in.zarr", "raw", raw.shape, "uint8", chunks, (30, 6, 6))
    arr[...] = raw
    return f"{tmp_path / 'in.zarr'}:raw"


def test_block_prediction_is_bit_identical_to_the_whole_volume(tiny):
    model, raw = tiny
    for overlap, batch in ((0.5, 2), (0.25, 3)):
        ref = predict_volume(model, raw, WINDOW, overlap=overlap, batch_size=batch, progress=False)
        out = np.zeros_like(ref)
        for block in schedule.all_blocks(raw.shape, (5, 16, 20)):  # blocks not aligned to windows
            out[(slice(None),) + block] = predict_block(model, raw, block, WINDOW, overlap=overlap,
                                                        batch_size=batch)
        assert np.array_equal(out, ref)  # exact: same windows, batches and summation order


def test_blockwise_predict_to_zarr_equals_in_memory_and_refuses_existing(tiny, tmp_path):
    model, raw = tiny
    spec = _raw_zarr(tmp_path, raw)
    ref = predict_volume(model, raw, WINDOW, batch_size=2, progress=False)
    out = f"{tmp_path / 'out.zarr'}:affinities"
    arr = predict_blockwise(model, spec, out, WINDOW, (5, 16, 24), n_channels=12,
                            offsets=SUPERHUMAN_OFFSETS, workers=0, progress=False)
    assert np.array_equal(arr[...], ref)
    assert arr.attrs["voxel_size"] == [30, 6, 6] and len(arr.attrs["offsets"]) == 12
    with pytest.raises(OutputExistsError, match="--resume"):
        predict_blockwise(model, spec, out, WINDOW, (5, 16, 24), n_channels=12,
                          offsets=SUPERHUMAN_OFFSETS, workers=0, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        predict_blockwise(model, spec, out, WINDOW, (6, 16, 24), n_channels=12,
                          offsets=SUPERHUMAN_OFFSETS, workers=0, progress=False, resume=True)


@dataclass
class DyingPredict(PredictBlocks):
    """Writes half of one block, then dies (os._exit in a worker, an exception in-process) the
    first time; logs every block it starts."""

    in_process: bool = False

    def __call__(self, block):
        log = Path(self.output[0]) / "started.log"
        with open(log, "a") as f:
            f.write(f"{block.write_roi.begin}\n")
        flag = Path(self.output[0]) / "died"
        if tuple(block.write_roi.begin) == (5, 16, 24) and not flag.exists():
            from neurotut.volumes import open_volume as ov

            region = schedule.roi_slices(block.write_roi)
            half = (region[0], region[1], slice(region[2].start, region[2].start + 8))
            ov(*self.output, mode="r+")[(slice(None),) + half] = 0.5  # a partial write
            flag.touch()
            if self.in_process:
                raise RuntimeError("worker dies mid-block")
            os._exit(1)
        super().__call__(block)


def _dying_task(model, spec, out_dir, workers, retries):
    from neurotut.blockwise.predict import input_grid

    shape, vs, off = input_grid(spec, None)
    params = {"test": 1}
    schedule.prepare_output(out_dir, "affs", shape=(12,) + shape, dtype="float32", chunks=(5, 16, 24),
                            voxel_size=vs, offset=off, params=params, resume=True, overwrite=False,
                            steps=["predict"])
    fn = DyingPredict(model, spec, (str(out_dir), "affs"), WINDOW, 0.5, 2, None, None, True, 1,
                      in_process=workers == 0)
    return schedule.make_task("predict-test", shape, (5, 16, 24), fn, workers=workers, max_retries=retries,
                              tracking=schedule.tracking_dir(out_dir, "affs", "predict"))


def _started(out_dir):
    return (Path(out_dir) / "started.log").read_text().splitlines()


def test_interrupted_run_resumes_redoing_only_the_unfinished_block(tiny, tmp_path):
    model, raw = tiny
    spec = _raw_zarr(tmp_path, raw)
    ref = predict_volume(model, raw, WINDOW, batch_size=2, progress=False)
    out = tmp_path / "out.zarr"
    n_blocks = int(np.prod(schedule.grid_shape(raw.shape, (5, 16, 24))))
    task = _dying_task(model, spec, out, workers=0, retries=0)
    with pytest.raises(schedule.BlocksFailedError, match="dies mid-block.*--resume"):
        schedule.run(task, workers=0, progress=False, log_dir=tmp_path / "logs")
    first = _started(out)
    assert first[-1] == "(5, 16, 24)" and len(first) < n_blocks
    assert schedule.done_blocks(out, "affs", "predict").sum() == len(first) - 1  # not the dead one
    (out / "started.log").unlink()
    task = _dying_task(model, spec, out, workers=0, retries=0)
    schedule.run(task, workers=0, progress=False, log_dir=tmp_path / "logs")
    second = _started(out)
    # the rerun does the block that died (not marked done though half-written) and the ones never
    # started, and none of the finished ones
    assert "(5, 16, 24)" in second and not set(second) & set(first[:-1])
    assert len(second) == n_blocks - len(first) + 1
    assert np.array_equal(open_volume(out, "affs")[...], ref)


def test_killed_worker_block_is_redone_by_daisy_with_two_workers(tiny, tmp_path):
    model, raw = tiny
    spec = _raw_zarr(tmp_path, raw)
    ref = predict_volume(model, raw, WINDOW, batch_size=2, progress=False)
    out = tmp_path / "out.zarr"
    task = _dying_task(model, spec, out, workers=2, retries=2)
    states = schedule.run(task, workers=2, progress=False, log_dir=tmp_path / "logs")
    state = next(iter(states.values()))
    assert state.completed_count == state.total_block_count == 18
    started = _started(out)
    assert started.count("(5, 16, 24)") == 2 and len(started) == 19  # redone once, the rest once
    assert np.array_equal(open_volume(out, "affs")[...], ref)


@pytest.fixture(scope="module")
def noisy_affinities():
    """Blurred, noisy ground-truth affinities (3, 16, 64, 64) of a synthetic volume, and labels."""
    _, labels, _ = make_synthetic((16, 64, 64), seed=2)
    affs = affinities(labels, WATERZ_OFFSETS)
    affs = np.stack([ndimage.gaussian_filter(a, (0.5, 1.5, 1.5)) for a in affs])
    rng = np.random.default_rng(0)
    return np.clip(affs + rng.normal(0, 0.08, affs.shape), 0, 1).astype(np.float32), labels


def _affs_zarr(path, affs, block=(8, 32, 32), voxel=(30, 6, 6)):
    arr = create_volume(path, "affinities", affs.shape, "float32", block, voxel, overwrite=True)
    arr[...] = affs
    arr.attrs["offsets"] = [list(o) for o in WATERZ_OFFSETS]
    return f"{path}:affinities"


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings are the same partition (ids aside)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_blockwise_segmentation_against_waterz_in_memory(noisy_affinities, tmp_path):
    affs, labels = noisy_affinities
    block = (8, 32, 32)
    spec = _affs_zarr(tmp_path / "a.zarr", affs, block)
    out = tmp_path / "seg.zarr"
    names = segment_blockwise(spec, f"{out}:seg", [0.0, 0.3, 0.5], block, workers=0, progress=False)
    frags = open_volume(out, "fragments")[...]
    # ids unique across blocks: block b holds only ids in (b V, (b + 1) V], and its relabel
    # worker reads exactly those entries of the lookup table
    volume = int(np.prod(block))
    for b, sl in enumerate(schedule.all_blocks(frags.shape, block)):
        ids = np.unique(frags[sl])
        ids = ids[ids != 0]
        assert ids.size and ids.min() > b * volume and ids.max() <= (b + 1) * volume
        assert np.array_equal(read_block_lut(out, names[0.3], b)[0], ids)
    # the stored graph is exactly the adjacency of the whole fragment volume
    ids, pairs, sums, counts, joins = read_graph(open_graph_db(out / "graph.db", "r"))
    p_all, s_all, c_all, _ = block_edges(frags, affs, (0, 0, 0))
    assert np.array_equal(ids, np.unique(frags[frags != 0]))
    assert np.array_equal(pairs, p_all) and np.array_equal(counts, c_all)
    np.testing.assert_allclose(sums, s_all, rtol=1e-12)
    # threshold 0 merges only the joined pieces: exactly the in-memory watershed fragments
    assert (joins > 0).any()
    assert _same_partition(open_volume(out, names[0.0])[...], A.watershed(affs, WATERZ_OFFSETS))
    in_memory = A.agglomerate(affs, [0.3, 0.5], WATERZ_OFFSETS)
    for t, mem in zip((0.3, 0.5), in_memory):
        seg = open_volume(out, names[t])[...]
        assert metrics.adapted_rand_error(mem, seg).error < 1e-3  # seams closed by the context
        gt_mem, gt_blk = (metrics.adapted_rand_error(labels, s).error for s in (mem, seg))
        assert abs(gt_mem - gt_blk) < 1e-3


def test_without_context_the_block_faces_cut_fragments(noisy_affinities, tmp_path):
    affs, _ = noisy_affinities
    spec = _affs_zarr(tmp_path / "a.zarr", affs)
    names = segment_blockwise(spec, f"{tmp_path / 's.zarr'}:seg", [0.3], (8, 32, 32), workers=0,
                              progress=False, context=(0, 0, 0))
    seg = open_volume(tmp_path / "s.zarr", names[0.3])[...]
    mem = A.agglomerate(affs, 0.3, WATERZ_OFFSETS)
    assert metrics.adapted_rand_error(mem, seg).error > 0.01  # what the context is for
    with pytest.raises(ValueError, match="--context"):
        segment_blockwise(spec, f"{tmp_path / 't.zarr'}:seg", [0.3], (8, 32, 32), workers=0,
                          progress=False, context=(0, -1, 0))


def test_graph_store_round_trip_and_idempotent_writes(tmp_path):
    db = open_graph_db(tmp_path / "g.db", "w")
    write_fragments(db, np.array([3, 9, 12], np.uint64), np.arange(9.0).reshape(3, 3), np.array([4, 5, 6]), 0)
    write_edges(db, np.array([[3, 9], [9, 12]], np.uint64), np.array([0.25, 1.5]), np.array([1, 2]))
    write_edges(db, np.array([[3, 9]], np.uint64), np.array([0.25]), np.array([1]))  # a redone block
    db.close()
    ids, pairs, sums, counts, joins = read_graph(open_graph_db(tmp_path / "g.db", "r"))
    assert ids.tolist() == [3, 9, 12] and pairs.tolist() == [[3, 9], [9, 12]] and joins.tolist() == [0, 0]
    assert sums.tolist() == [0.25, 1.5] and counts.tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="no graph database"):
        open_graph_db(tmp_path / "missing.db", "r")


def test_agglomeration_merges_by_mean_affinity_of_the_combined_boundary():
    # scores 1 - mean: 1-2 0.1, 2-3 0.4, 1-3 0.8 (sum 0.6 over 3 pairs). Once 1 and 2 merge,
    # {1,2}-3 is one boundary of mean (0.6 + 0.6) / 4 = 0.3, score 0.7: not merged at 0.45
    # (where 2-3 alone would be), merged at 0.75
    ids = np.array([1, 2, 3], np.uint64)
    pairs = np.array([[1, 2], [2, 3], [1, 3]], np.uint64)
    luts = lookup_tables(ids, pairs, np.array([0.9, 0.6, 0.6]), np.array([1, 1, 3]), [0.05, 0.35, 0.45, 0.75])
    assert luts[0.05][1].tolist() == [1, 2, 3]
    assert luts[0.35][1].tolist() == [1, 1, 2]
    assert luts[0.45][1].tolist() == [1, 1, 2]
    assert luts[0.75][1].tolist() == [1, 1, 1]
    assert relabel(np.array([[[0, 3, 2]]], np.uint64), luts[0.35]).tolist() == [[[0, 2, 1]]]
    with pytest.raises(ValueError, match="not in the lookup table"):
        relabel(np.array([[[7]]], np.uint64), luts[0.35])
    # a joined edge (two pieces of one basin) merges first, whatever its score, and its
    # boundary to 3 is then the combined one
    joined = lookup_tables(ids, pairs, np.array([0.0, 0.6, 0.6]), np.array([1, 1, 3]), [0.0, 0.75],
                           joins=np.array([1, 0, 0]))
    assert joined[0.0][1].tolist() == [1, 1, 2] and joined[0.75][1].tolist() == [1, 1, 1]


def test_missing_chunk_fails_the_block_with_a_clear_error(noisy_affinities, tmp_path):
    affs, _ = noisy_affinities
    spec = _affs_zarr(tmp_path / "a.zarr", affs)
    (tmp_path / "a.zarr" / "affinities" / "c" / "0" / "1" / "0" / "1").unlink()
    with pytest.raises(schedule.BlocksFailedError, match="MissingChunkError.*chunk.*missing.*--resume"):
        segment_blockwise(spec, f"{tmp_path / 's.zarr'}:seg", [0.5], (8, 32, 32), workers=0, progress=False)
    with pytest.raises(MissingChunkError, match="never written"):
        from neurotut.volumes import read_region

        read_region(open_volume(tmp_path / "a.zarr", "affinities"), (slice(0, 16), slice(0, 64), slice(0, 64)))


def test_full_disk_is_one_clear_error(noisy_affinities, tmp_path, monkeypatch):
    import zarr.storage._local as local

    affs, _ = noisy_affinities
    spec = _affs_zarr(tmp_path / "a.zarr", affs)
    real_put = local._put

    def full(path, value, exclusive=False):
        if "fragments" in str(path) and "/c/" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", full)
    with pytest.raises(schedule.BlocksFailedError, match="no space left on the device.*--resume"):
        segment_blockwise(spec, f"{tmp_path / 's.zarr'}:seg", [0.5], (8, 32, 32), workers=0, progress=False)


def test_mismatched_voxel_sizes_and_existing_outputs_are_refused(noisy_affinities, tmp_path):
    affs, _ = noisy_affinities
    a = open_volume(*_affs_zarr(tmp_path / "a.zarr", affs).rsplit(":", 1))
    b = open_volume(*_affs_zarr(tmp_path / "b.zarr", affs, voxel=(40, 4, 4)).rsplit(":", 1))
    with pytest.raises(ValueError, match="voxel sizes differ"):
        check_same_grid(a, b, "affinities", "labels")
    raw = np.zeros((12, 40, 48), np.uint8)
    spec = _raw_zarr(tmp_path, raw)
    with pytest.raises(ValueError, match=r"voxel size \(30, 6, 6\).*--voxel-size"):
        predict_blockwise(None, spec, f"{tmp_path / 'o.zarr'}:affs", WINDOW, (6, 16, 16), n_channels=3,
                          offsets=SUPERHUMAN_OFFSETS, voxel_size=(40, 4, 4), workers=0)
    with pytest.raises(OutputExistsError):
        create_volume(tmp_path / "a.zarr", "affinities", (4, 4, 4), "uint8", (4, 4, 4), (1, 1, 1))


def test_h5_to_zarr_converts_with_voxel_size_and_the_command_line(tmp_path):
    import h5py

    from neurotut.cli import main

    data = np.arange(6 * 20 * 24, dtype=np.uint32).reshape(6, 20, 24)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["labels"] = data
    with pytest.raises(ValueError, match="voxel_size"):
        h5_to_zarr(f"{tmp_path / 'v.h5'}:labels", tmp_path / "v.zarr")
    assert main(["data", "h5-to-zarr", f"{tmp_path / 'v.h5'}:labels", f"{tmp_path / 'v.zarr'}",
                 "--voxel-size", "30", "6", "6", "--chunks", "4", "8", "8"]) == 0
    arr = open_volume(tmp_path / "v.zarr", "labels")
    assert np.array_equal(arr[...], data) and arr.attrs["voxel_size"] == [30, 6, 6]
    from funlib.persistence import open_ds  # daisy's array layer reads the same attributes

    assert tuple(open_ds(str(tmp_path / "v.zarr" / "labels")).voxel_size) == (30, 6, 6)
    assert main(["data", "h5-to-zarr", f"{tmp_path / 'v.h5'}:labels", f"{tmp_path / 'v.zarr'}",
                 "--voxel-size", "30", "6", "6"]) == 2  # exists: one-line error
