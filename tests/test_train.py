"""Tests for neurotut.train: patches and their targets, the rebalanced loss, exact resumption from
checkpoints, learning, safety of outputs, and the train/predict command lines."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from neurotut import cli
from neurotut.affinity import SUPERHUMAN_OFFSETS, affinities, affinity_mask
from neurotut.augment import AugmentConfig, flip_affinities
from neurotut.data import make_synthetic
from neurotut.inference import predict_volume
from neurotut.io import OutputExistsError
from neurotut.models.rsunet import RSUNetConfig
from neurotut.batchnorm import recalibrate_batchnorm
from neurotut.checkpoints import load_checkpoint, load_model
from neurotut.loss import affinity_loss, class_balance_weights
from neurotut.patches import PatchSampler
from neurotut.train import train
from neurotut.train_config import TrainConfig, train_config_for_profile

TINY_MODEL = RSUNetConfig(widths=(4, 6, 8))  # three scales: y, x multiples of 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def labels_volume(shape=(10, 48, 48), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 6, size=(shape[0], shape[1] // 4, shape[2] // 4))
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.uint32)


@pytest.fixture(scope="module")
def synthetic():
    raw, labels, _ = make_synthetic((16, 64, 64), seed=0)
    return raw[:12], labels[:12], raw[12:], labels[12:]


# ------------------------------------------------------------------------------------------------
# patches


def test_plain_patches_match_affinities_of_the_whole_volume():
    labels = labels_volume()
    raw = (labels * 37 % 256).astype(np.uint8)
    sampler = PatchSampler(raw, labels, (4, 16, 16), SUPERHUMAN_OFFSETS, None)
    full = affinities(labels)
    full_mask = affinity_mask(labels.shape)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = sampler.sample(rng)
        z, y, x = s.info["start"]
        crop = (slice(None), slice(z, z + 4), slice(y, y + 16), slice(x, x + 16))
        np.testing.assert_array_equal(s.target, full[crop])
        np.testing.assert_array_equal(s.mask, full_mask[crop])  # edges leaving the volume: invalid
        np.testing.assert_array_equal(s.raw[0], raw[crop[1:]] / np.float32(255))
        assert s.raw.dtype == np.float32 and s.raw.shape == (1, 4, 16, 16)


def test_flipped_patches_have_the_flipped_affinities():
    labels = labels_volume()
    raw = labels.astype(np.uint8)
    aug = replace(AugmentConfig.none(), flips=True)
    sampler = PatchSampler(raw, labels, (4, 16, 16), SUPERHUMAN_OFFSETS, aug)
    m = sampler.margin
    rng = np.random.default_rng(1)
    variants = set()
    for _ in range(40):
        s = sampler.sample(rng)
        variants.add(s.variant)
        z, y, x = s.info["start"]
        block = np.zeros((4 + 2 * m[0], 16 + 2 * m[1], 16 + 2 * m[2]), labels.dtype)
        # the block around the patch, zero outside the volume (as the sampler pads)
        zz = np.arange(z - m[0], z + 4 + m[0])
        yy = np.arange(y - m[1], y + 16 + m[1])
        xx = np.arange(x - m[2], x + 16 + m[2])
        inside = (zz[:, None, None] >= 0) & (zz[:, None, None] < 10) & (yy[None, :, None] >= 0) & (
            yy[None, :, None] < 48) & (xx[None, None, :] >= 0) & (xx[None, None, :] < 48)
        block[inside] = labels[np.ix_(np.clip(zz, 0, 9), np.clip(yy, 0, 47), np.clip(xx, 0, 47))][inside]
        expected = flip_affinities(affinities(block), s.variant, SUPERHUMAN_OFFSETS)
        core = (slice(None), slice(m[0], m[0] + 4), slice(m[1], m[1] + 16), slice(m[2], m[2] + 16))
        np.testing.assert_array_equal(s.target, expected[core])
    assert len(variants) > 8  # transposes happen for square patches


def test_misaligned_and_flipped_patches_keep_image_and_labels_consistent():
    # raw == labels (as uint8), so the image must still be the label patch after augmentation
    labels = labels_volume((12, 64, 64), seed=2)
    raw = labels.astype(np.uint8)
    aug = replace(AugmentConfig.none(), flips=True, misalign_prob=1.0, max_shift=5)
    sampler = PatchSampler(raw, labels, (6, 16, 16), SUPERHUMAN_OFFSETS, aug)
    rng = np.random.default_rng(3)
    shifted = 0
    for _ in range(20):
        s = sampler.sample(rng)
        lab = np.rint(s.raw[0] * 255).astype(np.uint32)
        own = affinities(lab, SUPERHUMAN_OFFSETS[:3])
        inner = (slice(None), slice(1, None), slice(1, None), slice(1, None))
        np.testing.assert_array_equal(s.target[:3][inner], own[inner])
        shifted += s.info["misalign"]["shift"] != (0, 0)
    assert shifted > 10


def test_sampler_refuses_bad_inputs():
    labels = labels_volume()
    with pytest.raises(ValueError, match="too small"):
        PatchSampler(labels.astype(np.uint8), labels, (12, 16, 16))
    with pytest.raises(ValueError, match="one"):
        PatchSampler(labels[:5].astype(np.uint8), labels, (2, 16, 16))
    with pytest.raises(TypeError, match="integers"):
        PatchSampler(labels.astype(np.uint8), labels.astype(np.float32), (2, 16, 16))
    with pytest.raises(TypeError, match="uint8"):
        PatchSampler(labels.astype(np.int32), labels, (2, 16, 16))


# ------------------------------------------------------------------------------------------------
# loss


def test_class_balance_weights_by_hand():
    target = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0]).reshape(1, 1, 1, 1, 6)
    mask = torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool).reshape(1, 1, 1, 1, 6)
    w = class_balance_weights(target, mask).flatten().tolist()
    # 3 positives and 1 negative among the valid edges: w+ = 1/4, w- = 3/4; invalid get 0
    assert w == [0.25, 0.25, 0.25, 0.75, 0.0, 0.0]
    # each class carries half of the weight
    assert sum(w[:3]) == pytest.approx(w[3])
    only_pos = torch.ones(1, 1, 1, 1, 4)
    assert class_balance_weights(only_pos, torch.ones_like(only_pos, dtype=torch.bool), 0.5).flatten().tolist() == [0.5] * 4


def test_weights_are_per_patch_and_per_channel():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 3, 2, 4, 4, generator=g) > 0.3).float()
    mask = torch.rand(2, 3, 2, 4, 4, generator=g) > 0.2
    w = class_balance_weights(target, mask)
    for n in range(2):
        for c in range(3):
            t, m = target[n, c][mask[n, c]], w[n, c][mask[n, c]]
            assert float(m[t > 0.5].sum()) == pytest.approx(float(m[t < 0.5].sum()), rel=1e-5)


def test_affinity_loss_equals_manual_computation():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 2, 3, 3, generator=g)
    target = (torch.rand(1, 2, 2, 3, 3, generator=g) > 0.5).float()
    mask = torch.rand(1, 2, 2, 3, 3, generator=g) > 0.3
    w = class_balance_weights(target, mask)
    p = torch.sigmoid(logits)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    expected = (w * bce).sum() / mask.sum()
    assert float(affinity_loss(logits, target, mask)) == pytest.approx(float(expected), rel=1e-5)
    # nothing valid: zero, not NaN
    assert float(affinity_loss(logits, target, torch.zeros_like(mask))) == 0.0


# ------------------------------------------------------------------------------------------------
# the loop


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        model=TINY_MODEL, patch=(4, 16, 16), batch_size=2, steps=6, lr=3e-3, val_every=3,
        val_patches=2, val_crop=(4, 16, 16), checkpoint_every=3, log_every=1,
        augment=AugmentConfig(max_shift=4, max_missing=2, max_blur=2),
    )
    base.update(kw)
    return TrainConfig(**base)


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_resume_from_checkpoint_is_bitwise_identical(synthetic, tmp_path):
    tr_raw, tr_lab, va_raw, va_lab = synthetic
    cfg = tiny_config()
    straight = train(cfg, tr_raw, tr_lab, va_raw, va_lab, out_dir=tmp_path / "a", progress=False)
    half = train(replace(cfg, steps=3), tr_raw, tr_lab, va_raw, va_lab, out_dir=tmp_path / "b",
                 progress=False)
    assert half.step == 3
    torch.manual_seed(12345)  # whatever the caller did in between must not matter
    np.random.default_rng(7).random(5)
    resumed = train(cfg, tr_raw, tr_lab, va_raw, va_lab, out_dir=tmp_path / "b", resume=True,
                    progress=False)
    assert resumed.step == straight.step == 6
    assert resumed.losses == straight.losses
    assert _strip(resumed.history) == _strip(straight.history)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in a["optimizer"]["state"].items():
        for key in v:
            assert torch.equal(v[key], b["optimizer"]["state"][k][key])
    assert a["rng"]["numpy"] == b["rng"]["numpy"]
    assert (tmp_path / "a" / "step_0000003.pt").is_file()
    assert (tmp_path / "a" / "tensorboard").is_dir()
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    assert len(hist["losses"]) == 6


def test_a_short_run_lowers_the_validation_loss(synthetic):
    tr_raw, tr_lab, va_raw, va_lab = synthetic
    cfg = tiny_config(
        model=RSUNetConfig(widths=(8, 12, 16)), steps=40, val_every=40, checkpoint_every=0,
        augment=AugmentConfig.none(), lr=1e-2, val_patches=4, batch_size=2,
        val_crop=(0, 0, 0),
    )
    result = train(cfg, tr_raw, tr_lab, va_raw, va_lab, progress=False)
    first, last = result.history[0], result.history[-1]
    assert first["step"] == 0 and last["step"] == 40
    assert last["val_loss"] < 0.8 * first["val_loss"]
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])


def test_existing_runs_are_not_overwritten_and_configs_must_match(synthetic, tmp_path):
    tr_raw, tr_lab, _, _ = synthetic
    cfg = tiny_config(steps=1, checkpoint_every=0, val_every=0)
    train(cfg, tr_raw, tr_lab, out_dir=tmp_path, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(OutputExistsError):
        train(cfg, tr_raw, tr_lab, out_dir=tmp_path, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before
    with pytest.raises(ValueError, match="lr"):
        train(replace(cfg, lr=0.5, steps=2), tr_raw, tr_lab, out_dir=tmp_path, resume=True, progress=False)
    train(cfg, tr_raw, tr_lab, out_dir=tmp_path, overwrite=True, progress=False)


def test_checkpoint_loads_with_weights_only_and_predicts_the_same(synthetic, tmp_path):
    tr_raw, tr_lab, va_raw, _ = synthetic
    cfg = tiny_config(steps=2, checkpoint_every=0, val_every=0)
    result = train(cfg, tr_raw, tr_lab, out_dir=tmp_path, progress=False)
    model, loaded_cfg = load_model(tmp_path / "last.pt")
    assert loaded_cfg == cfg
    assert not result.eval_model.training and result.model.training
    a = predict_volume(result.eval_model, va_raw, (4, 16, 16), progress=False)
    b = predict_volume(model, va_raw, (4, 16, 16), progress=False)
    np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_batchnorm_recalibration_gives_exact_averages_on_a_copy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 1), torch.nn.BatchNorm3d(3, momentum=0.1))
    batches = [torch.randn(2, 1, 2, 3, 3) * (k + 1) + k for k in range(3)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calibrated = recalibrate_batchnorm(model, batches)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    with torch.no_grad():
        feats = [model[0](x) for x in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3, 4), unbiased=True) for f in feats]).mean(0)
    bn = calibrated[1]
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert not calibrated.training and bn.momentum == 0.1


def test_config_round_trip_and_checks():
    cfg = tiny_config()
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="multiples of 4"):
        tiny_config(patch=(4, 18, 16))
    with pytest.raises(ValueError, match="channels"):
        tiny_config(offsets=SUPERHUMAN_OFFSETS[:3])


def test_train_and_predict_command_lines(tmp_path, synthetic):
    tr_raw, tr_lab, _, _ = synthetic
    h5 = tmp_path / "vol.h5"
    with h5py.File(h5, "w") as f:
        f["raw"], f["labels"] = tr_raw, tr_lab
    out = tmp_path / "run"
    data = ["--raw", f"{h5}:raw", "--labels", f"{h5}@labels", "--out", str(out),
            "--val-fraction", "0.25", "--device", "cpu", "--quiet"]
    args = ["train", *data, "--widths", "4", "6", "8", "--patch", "3", "16", "16", "--steps", "2",
            "--batch-size", "1", "--val-every", "0", "--checkpoint-every", "0", "--nearest-only"]
    assert cli.main(args) == 0
    assert (out / "last.pt").is_file()
    assert cli.main(args) == 2  # refuses to start over an existing run
    assert cli.main(["train", *data, "--resume", "--steps", "3"]) == 0  # the run's own config
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"].model.widths == (4, 6, 8)
    tuned = tmp_path / "tuned"
    t_args = [a if a != str(out) else str(tuned) for a in args] + ["--init-weights", str(out / "last.pt")]
    assert cli.main(t_args) == 0
    assert load_checkpoint(tuned / "last.pt")["config"].init_weights == str(out / "last.pt")
    assert cli.main([*t_args[:-1], str(tmp_path / "missing.pt"), "--overwrite"]) == 2
    pred = tmp_path / "affs.h5"
    p_args = ["predict", "--checkpoint", str(out / "last.pt"), "--raw", f"{h5}:raw",
              "--output", f"{pred}:affs", "--quiet", "--device", "cpu"]
    assert cli.main(p_args) == 0
    with h5py.File(pred, "r") as f:
        affs = f["affs"][...]
    assert affs.shape == (3,) + tr_raw.shape and affs.dtype == np.float32
    assert 0 <= affs.min() and affs.max() <= 1
    assert cli.main(p_args) == 2  # no silent overwrite


@pytest.mark.parametrize("name", ["quick", "full"])
def test_profiles_give_valid_configs(name):
    from neurotut import config

    p = config.get_profile(name)
    cfg = train_config_for_profile(p)
    assert cfg.patch == tuple(p.unet_patch) and cfg.model.widths == tuple(p.unet_widths)
    assert cfg.augment.misalign_prob == p.unet_defect_prob
    over = train_config_for_profile(p, steps=3, model={"depth": 2, "reversible": True})
    assert over.steps == 3 and over.model.depth == 2 and over.model.reversible
    d = cfg.model.divisor
    assert p.unet_predict_window[1] % d == 0 and p.unet_predict_window[2] % d == 0
    assert p.table1_patch[1] % d == 0 and p.table1_patch[2] % d == 0


def test_live_curves_print_outside_notebooks_and_draw(capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurotut.train import LiveCurves

    curves = LiveCurves(10, baseline_arand=0.4)
    curves({"step": 0, "train_loss": None, "val_loss": 0.5, "val_arand": 0.9, "val_threshold": 0.5})
    curves({"step": 10, "train_loss": 0.3, "val_loss": 0.25, "val_arand": 0.3, "val_threshold": 0.5})
    out = capsys.readouterr().out
    assert out.count("'step'") == 2 and "0.25" in out
    fig, axes = plt.subplots(1, 2)
    curves.draw(axes)
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 2  # network + baseline
    plt.close(fig)


def test_staircase_learning_rate():
    cfg = TrainConfig(model=TINY_MODEL, patch=(2, 8, 8), lr=0.4, lr_decay_factor=0.5,
                      lr_decay_steps=3)
    assert [cfg.lr_at(s) for s in (0, 2, 3, 5, 6, 9)] == [0.4, 0.4, 0.2, 0.2, 0.1, 0.05]
    assert TrainConfig(lr=0.3).lr_at(10_000) == 0.3
    with pytest.raises(ValueError, match="lr_decay_factor"):
        TrainConfig(lr_decay_factor=1.5)


def test_exported_weights_load_like_the_checkpoint_and_refuse_resume(synthetic, tmp_path):
    from neurotut.checkpoints import export_weights

    tr_raw, tr_lab, va_raw, va_lab = synthetic
    cfg = replace(tiny_config(), steps=2)
    train(cfg, tr_raw, tr_lab, va_raw, va_lab, out_dir=tmp_path / "run", progress=False)
    out = export_weights(tmp_path / "run" / "last.pt", tmp_path / "weights.pt")
    assert out.stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size
    with pytest.raises(OutputExistsError):
        export_weights(tmp_path / "run" / "last.pt", tmp_path / "weights.pt")
    full, _ = load_model(tmp_path / "run" / "last.pt")
    small, small_cfg = load_model(out)
    assert small_cfg == cfg
    x = torch.rand(1, 1, *cfg.patch)
    with torch.no_grad():
        assert torch.equal(full(x), small(x))
    assert load_checkpoint(out)["history"] == load_checkpoint(tmp_path / "run" / "last.pt")["history"]
    with pytest.raises(ValueError, match="exported weights only"):
        train(replace(cfg, steps=4), tr_raw, tr_lab, out_dir=tmp_path / "run2", resume=out, progress=False)


def test_fine_tuning_starts_from_the_given_weights_and_checks_the_network(synthetic, tmp_path):
    from neurotut.checkpoints import export_weights

    tr_raw, tr_lab, va_raw, va_lab = synthetic
    cfg = replace(tiny_config(), steps=3)
    train(cfg, tr_raw, tr_lab, out_dir=tmp_path / "run", progress=False)
    weights = export_weights(tmp_path / "run" / "last.pt", tmp_path / "weights.pt")
    start = load_checkpoint(weights)["model"]
    tuned_cfg = replace(cfg, steps=0, seed=5, lr=1e-3, init_weights=str(weights))
    at_zero = train(tuned_cfg, tr_raw, tr_lab, progress=False).model.state_dict()
    fresh = train(replace(tuned_cfg, init_weights=None), tr_raw, tr_lab, progress=False).model.state_dict()
    for name, value in start.items():
        assert torch.equal(at_zero[name], value), name
    assert any(not torch.equal(fresh[k], v) for k, v in start.items() if v.is_floating_point())
    # training from there continues from those weights and records where it started
    tuned = train(replace(tuned_cfg, steps=2), tr_raw, tr_lab, out_dir=tmp_path / "tuned",
                  progress=False)
    assert tuned.step == 2
    assert load_checkpoint(tmp_path / "tuned" / "last.pt")["config"].init_weights == str(weights)
    with pytest.raises(ValueError, match="different network"):
        train(replace(tuned_cfg, model=RSUNetConfig(widths=(4, 8, 8))), tr_raw, tr_lab, progress=False)
