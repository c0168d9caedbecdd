"""Tests for neurotut.experiments: variants, measurements (memory flat in depth only for the
reversible network), the raw-image baseline, scoring, the table's files and the goal ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurotut.affinity import affinities
from neurotut.augment import AugmentConfig
from neurotut.data import make_synthetic
from neurotut.experiments import (
    KOYAMA_TABLE1,
    Table1Row,
    Variant,
    baseline_affinities,
    goal_ratios,
    measure_variant,
    read_csv,
    run_table1,
    score_affinities,
    score_at_tuned_threshold,
    tune_and_score,
    koyama_table_markdown,
    table1_variants,
    to_markdown,
    tuning_box,
    write_csv,
)
from neurotut.models.rsunet import RSUNet, RSUNetConfig
from neurotut.train_config import TrainConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def volume():
    raw, labels, _ = make_synthetic((12, 48, 48), seed=1)
    return raw, labels


def tiny_config(**kw) -> TrainConfig:
    base = dict(model=RSUNetConfig(widths=(4, 6, 8)), patch=(4, 16, 16), batch_size=1, steps=2,
                augment=AugmentConfig.none(), val_patches=1)
    base.update(kw)
    return TrainConfig(**base)


def test_variants_and_labels():
    vs = table1_variants((1, 2))
    assert [v.label for v in vs] == [
        "base n=1", "RevNet n=1", "base+checkpointing n=1",
        "base n=2", "RevNet n=2", "base+checkpointing n=2",
    ]
    assert len(table1_variants(checkpointing=False)) == 8
    with pytest.raises(ValueError):
        Variant("revnet", 1)
    with pytest.raises(ValueError):
        Variant("base", 0)


def test_measurements_memory_flat_only_for_reversible(volume):
    raw, labels = volume
    cfg = tiny_config()
    rows = {(v.kind, v.depth): measure_variant(v, cfg, raw, labels, repeats=1)
            for v in table1_variants((1, 3))}
    for (kind, depth), r in rows.items():
        model = RSUNet(cfg.model, depth=depth, reversible=kind == "reversible")
        assert r.params == sum(p.numel() for p in model.parameters())
        assert r.memory_method == "saved_tensors" and r.memory_bytes == r.saved_bytes > 0
        assert r.time_per_100_s > 0 and r.patch == "4x16x16"
    assert rows["reversible", 3].memory_bytes == rows["reversible", 1].memory_bytes
    assert rows["base", 3].memory_bytes > 1.5 * rows["base", 1].memory_bytes
    assert rows["checkpointing", 3].memory_bytes < rows["base", 3].memory_bytes
    assert rows["checkpointing", 1].params == rows["base", 1].params


def test_baseline_affinities_are_the_darker_end_of_each_edge():
    raw = np.array([[[0, 255], [100, 50]], [[255, 255], [10, 200]]], dtype=np.uint8)
    affs = baseline_affinities(raw)
    r = raw / np.float32(255)
    assert affs.shape == (3, 2, 2, 2)
    assert affs[0, 0, 0, 1] == pytest.approx(min(r[0, 0, 1], r[0, 0, 0]))  # x edge
    assert affs[1, 1, 1, 0] == pytest.approx(min(r[1, 1, 0], r[1, 0, 0]))  # y edge
    assert affs[2, 1, 1, 1] == pytest.approx(min(r[1, 1, 1], r[0, 1, 1]))  # z edge
    assert affs[0, :, :, 0].max() == 0 and affs[2, 0].max() == 0  # no edge leaves the volume


def test_perfect_affinities_score_perfectly(volume):
    _, labels = volume
    s = score_affinities(affinities(labels[:6]), labels[:6], (0.3, 0.5))
    assert s["arand"] == pytest.approx(0.0, abs=1e-12)
    assert s["voi_split"] == pytest.approx(0.0, abs=1e-12) and s["voi_merge"] == pytest.approx(0.0, abs=1e-12)
    assert set(s["curve"]) == {0.3, 0.5}
    # the trivial baseline does worse on the same volume
    raw = ((labels[:6] > 0) * 200 + 20).astype(np.uint8)
    noisy = np.clip(raw + np.random.default_rng(0).normal(0, 60, raw.shape), 0, 255).astype(np.uint8)
    b = score_affinities(baseline_affinities(noisy), labels[:6], (0.3, 0.5, 0.7))
    assert b["arand"] > s["arand"]


def test_run_table1_trains_each_function_once_and_writes_files(volume, tmp_path):
    raw, labels = volume
    cfg = tiny_config(steps=2)
    rows = run_table1(cfg, raw[:9], labels[:9], raw[9:], labels[9:], variants=table1_variants((1,)),
                      repeats=1, progress=False)
    assert [r.network for r in rows] == ["base n=1", "RevNet n=1", "base+checkpointing n=1"]
    assert all(r.arand is not None and 0 <= r.arand <= 1 and r.steps == 2 for r in rows)
    assert rows[2].arand == rows[0].arand and rows[2].train_s == rows[0].train_s  # reused
    assert 0 <= rows[0].boundary_baseline <= 1
    path = write_csv(rows, tmp_path / "t.csv")
    assert read_csv(path) == rows
    with pytest.raises(FileExistsError):
        write_csv(rows, path)
    md = to_markdown(rows)
    assert md.count("\n") == len(rows) + 1 and "saved for backward (MiB)" in md
    assert "RevNet n=4" in koyama_table_markdown() and len(KOYAMA_TABLE1) == 5


def _row(kind, depth, mem, t):
    return Table1Row(network=f"{kind} {depth}", kind=kind, depth=depth, params=1, time_per_100_s=t,
                     memory_bytes=mem, memory_method="saved_tensors", saved_bytes=mem, device="cpu",
                     patch="1x1x1", batch=1)


def test_goal_ratios():
    rows = [_row("base", 1, 100, 10), _row("reversible", 1, 50, 12),
            _row("base", 4, 400, 40), _row("reversible", 4, 52, 30)]
    g = goal_ratios(rows)
    assert g["rev_memory_n4_over_n1"] == pytest.approx(52 / 50)
    assert g["rev_over_base_memory_at_max_n"] == pytest.approx(52 / 400)
    assert g["rev_over_base_time_at_n"] == pytest.approx(1.2)
    assert all(math.isnan(v) for v in goal_ratios([]).values())



def test_threshold_is_chosen_on_the_tuning_block_and_applied_to_the_test_block(volume):
    _, labels = volume
    tune_gt, test_gt = labels[:6], labels[6:]
    rng = np.random.default_rng(0)
    noisy = lambda gt: np.clip(affinities(gt) * 0.8 + rng.normal(0, 0.15, (12,) + gt.shape), 0, 1).astype(np.float32)  # noqa: E731
    tune, test = (noisy(tune_gt), tune_gt), (noisy(test_gt), test_gt)
    thresholds = (0.1, 0.3, 0.5, 0.7, 0.9)
    out = score_at_tuned_threshold(tune, test, thresholds, voxel_size=(30, 6, 6))
    assert out["threshold"] == score_affinities(*tune, thresholds)["threshold"]
    assert out["tune_arand"] == pytest.approx(score_affinities(*tune, thresholds)["arand"])
    assert set(out["curve"]) == set(thresholds)
    assert out["segmentation"].shape == test_gt.shape and (out["segmentation"] > 0).all()  # filled
    # the reported score is the test block's at the tuned threshold (filled), whatever is best there
    from neurotut import agglomerate, metrics

    seg = agglomerate.agglomerate(test[0], out["threshold"])
    expected = metrics.evaluate(test_gt, agglomerate.fill_unassigned(seg, (30, 6, 6)))
    assert out["scores"].arand == pytest.approx(expected.arand)
    assert out["scores"].voi_split == pytest.approx(expected.voi_split)
    assert 0 <= out["scores"].arand <= 1 and 0 <= out["boundary"].accuracy <= 1


def test_tuning_box_is_disjoint_from_the_test_block():
    shape = (20, 512, 512)
    test = (slice(0, 20), slice(128, 384), slice(128, 384))
    box = tuning_box(shape, test)
    assert box == (slice(0, 20), slice(0, 128), slice(0, 512))  # ties: the rows before
    assert tuning_box(shape, (slice(0, 20), slice(32, 256), slice(32, 256)))[1] == slice(256, 512)
    tune = np.zeros(shape, bool)
    tune[box] = True
    test_mask = np.zeros(shape, bool)
    test_mask[test] = True
    assert not (tune & test_mask).any() and tune.sum() == 20 * 128 * 512
    # along x when the test block spans all rows; an error when it spans everything
    assert tuning_box(shape, (slice(0, 20), slice(0, 512), slice(0, 400)))[2] == slice(400, 512)
    with pytest.raises(ValueError, match="no disjoint tuning block"):
        tuning_box(shape, (slice(0, 20), slice(0, 512), slice(0, 512)))


def test_run_table1_with_a_tuning_block_reports_the_test_block_at_the_tuned_threshold(volume):
    raw, labels = volume
    cfg = tiny_config(steps=2, val_thresholds=(0.3, 0.6))
    rows = run_table1(cfg, raw[:6], labels[:6], raw[6:9], labels[6:9], tune_raw=raw[9:],
                      tune_labels=labels[9:], variants=[Variant("base", 1)], repeats=1,
                      progress=False, eval_window=(4, 16, 16))
    r = rows[0]
    assert r.threshold in (0.3, 0.6) and 0 <= r.arand <= 1


def test_tune_and_score_chooses_the_scoring_function_on_the_tuning_block(volume):
    raw, labels = volume
    rng = np.random.default_rng(0)
    make = lambda lab: np.clip(affinities(lab)[:3] + rng.normal(0, 0.3, (3,) + lab.shape), 0, 1).astype(np.float32)
    tune, test = (make(labels[:6]), labels[:6]), (make(labels[6:]), labels[6:])
    out = tune_and_score(tune, test, (0.3, 0.5, 0.7), scorings=("mean", "quantile50"))
    singles = {s: score_at_tuned_threshold(tune, test, (0.3, 0.5, 0.7), scoring=s) for s in ("mean", "quantile50")}
    assert out["tuning"] == {s: r["tune_arand"] for s, r in singles.items()}
    assert out["scoring"] == min(singles, key=lambda s: singles[s]["tune_arand"])
    assert out["scores"].arand == singles[out["scoring"]]["scores"].arand
    with pytest.raises(ValueError, match="at least one"):
        tune_and_score(tune, test, (0.5,), scorings=())
