"""FFN training: examples, soft labels, moves, write-back, clipping, resume, learning, command line."""

import copy
import math
import pickle

import h5py
import numpy as np
import pytest
import torch

from neurotut.cli import main
from neurotut.io import CorruptCheckpointError
from neurotut.data import make_synthetic
from neurotut.ffn.coordinates import BalancedSampler, index_partitions, save_coordinates
from neurotut.ffn.model import FFNModelConfig
from neurotut.ffn.partitions import compute_partitions
from neurotut.ffn.augmentation import Augmentation, draw_augmentation
from neurotut.ffn.checkpoints import latest_checkpoint, load_checkpoint, model_from_checkpoint
from neurotut.ffn.evaluation import EvalCounts, evaluate, evaluate_examples
from neurotut.ffn.examples import ExampleStream, run_example, run_examples
from neurotut.ffn.fov_policies import FixedMoves, MaxPredMoves, face_max_moves, fixed_move_order
from neurotut.ffn.inputs import (
    TrainVolume,
    load_example,
    make_sampler,
    make_seed_canvas,
    soft_labels,
)
from neurotut.ffn.model import logit
from neurotut.ffn.summaries import SummaryLogger
from neurotut.ffn.train_config import TrainConfig
from neurotut.ffn.trainer import Trainer, clip_gradient_entries
from neurotut.geometry import crop_centered

TINY = FFNModelConfig(depth=2, fov_size=(5, 9, 9), deltas=(1, 2, 2), features=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_volume():
    # coarse in-plane voxels make the objects small next to the FOV, so patches hold boundaries
    raw, labels, _ = make_synthetic((20, 80, 80), seed=1, voxel_size=(30.0, 24.0, 24.0))
    return TrainVolume("syn", raw, labels)


def _trainer(volume, seed=0, **kwargs):
    cfg = TrainConfig(model=kwargs.pop("model", TINY), seed=seed, **kwargs)
    sampler = make_sampler([volume], cfg, min_size=100, seed=seed)
    return Trainer(cfg, [volume], sampler, device="cpu")


# ---------------------------------------------------------------------------------------------
# examples


def test_logit_values():
    assert logit(0.95) == pytest.approx(2.944, abs=1e-3)
    assert logit(0.05) == pytest.approx(-2.944, abs=1e-3)
    assert logit(0.9) == pytest.approx(2.197, abs=1e-3)
    with pytest.raises(ValueError):
        logit(1.0)


def test_seed_canvas():
    canvas = make_seed_canvas((5, 7, 9))
    assert canvas.dtype == np.float32 and canvas.shape == (5, 7, 9)
    assert canvas[2, 3, 4] == np.float32(logit(0.95))
    canvas[2, 3, 4] = logit(0.05)
    assert np.all(canvas == np.float32(logit(0.05)))


def test_soft_labels_of_the_centre_object():
    labels = np.zeros((3, 5, 5), np.uint32)
    labels[:, :, :2] = 7  # another object
    labels[:, :, 3:] = 4  # the centre's object ... but not the centre voxel (x = 2 is membrane)
    labels[1, 2, 2] = 4  # centre voxel
    target = soft_labels(labels)
    assert target.dtype == np.float32
    assert np.all(target[labels == 4] == np.float32(0.95))
    assert np.all(target[labels != 4] == np.float32(0.05))


def test_background_centre_gives_an_all_negative_example():
    labels = np.zeros((3, 5, 5), np.int64)
    labels[0] = 3
    target = soft_labels(labels)  # centre (1, 2, 2) is 0: "same as the centre" must not match 0s
    assert np.all(target == np.float32(0.05))
    assert np.all(soft_labels(labels, softness=0.1) == np.float32(0.1))


def test_crop_centred_puts_the_centre_in_the_middle():
    vol = np.arange(10 * 12 * 14).reshape(10, 12, 14)
    patch = crop_centered(vol, (5, 6, 7), (5, 7, 9))
    assert patch.shape == (5, 7, 9) and patch[2, 3, 4] == vol[5, 6, 7]
    with pytest.raises(ValueError, match="leaves the volume"):
        crop_centered(vol, (1, 6, 7), (5, 7, 9))


def test_patch_sizes_follow_the_policy():
    snemi = FFNModelConfig(depth=9, fov_size=(17, 33, 33), deltas=(4, 8, 8))
    assert TrainConfig(model=snemi).patch_size == (25, 49, 49)  # 49 x 49 x 25 (x, y, z)
    assert TrainConfig(model=snemi, fov_policy="max_pred_moves").patch_size == (33, 65, 65)


def test_augmentation_is_applied_identically_and_keeps_the_centre(synthetic_volume):
    cfg = TrainConfig(model=TINY)
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(20):
        aug = draw_augmentation(rng, cfg.permutable_axes, cfg.reflectable_axes)
        assert aug.permutation in ((0, 1, 2), (0, 2, 1))
        seen.add((aug.permutation, aug.flips))
    assert len(seen) > 4  # transposes and flips both happen
    center = (10, 40, 40)
    plain = load_example(synthetic_volume, center, cfg)
    aug = Augmentation((0, 2, 1), (True, False, True))
    ex = load_example(synthetic_volume, center, cfg, aug)
    assert np.array_equal(ex.image, aug.apply(plain.image))
    assert np.array_equal(ex.target, aug.apply(plain.target))
    c = tuple(s // 2 for s in ex.target.shape)
    assert ex.target[c] == plain.target[c]
    assert np.array_equal(ex.canvas, plain.canvas)  # the seed is never augmented


def test_normalisation_uses_the_volume_mean_and_std(synthetic_volume):
    cfg = TrainConfig(model=TINY)
    ex = load_example(synthetic_volume, (10, 40, 40), cfg)
    raw = crop_centered(synthetic_volume.image, (10, 40, 40), cfg.patch_size).astype(np.float64)
    expected = (raw - synthetic_volume.image.mean()) / synthetic_volume.image.std()
    assert np.allclose(ex.image, expected, atol=1e-5)
    other = TrainVolume("n", synthetic_volume.image, synthetic_volume.labels, 131.0, 62.0)
    assert np.allclose(load_example(other, (10, 40, 40), cfg).image, (raw - 131) / 62, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# moves


def test_fixed_policy_centre_first_and_threshold_respected():
    canvas = make_seed_canvas((5, 9, 9))
    order = [(0, 0, 0), (0, 0, 2), (0, 2, 0), (1, 0, 0), (0, -2, 0)]
    policy = FixedMoves(order, logit(0.9))
    assert policy.next_offset(canvas) == (0, 0, 0)
    canvas[2, 4, 6] = 2.0  # (0, 0, 2): probability 0.88 < 0.9, refused
    canvas[2, 6, 4] = 2.3  # (0, 2, 0): 0.909, taken
    assert policy.next_offset(canvas) == (0, 2, 0)
    canvas[2, 2, 4] = 5.0  # (0, -2, 0) passes; (1, 0, 0) stays refused
    assert policy.next_offset(canvas) == (0, -2, 0)
    assert policy.next_offset(canvas) is None


def test_fixed_move_order_is_centre_then_a_shuffle_of_the_26_shifts():
    a = fixed_move_order((1, 2, 2), np.random.default_rng(0))
    b = fixed_move_order((1, 2, 2), np.random.default_rng(0))
    plain = fixed_move_order((1, 2, 2))
    assert a == b and a[0] == (0, 0, 0) and len(a) == 27
    assert sorted(a[1:]) == sorted(plain[1:]) and a[1:] != plain[1:]


def test_write_back_is_visible_to_the_next_position_and_input(synthetic_volume):
    cfg = TrainConfig(model=TINY)
    ex = load_example(synthetic_volume, (10, 40, 40), cfg)
    stream = ExampleStream()
    stream.start(ex, FixedMoves([(0, 0, 0), (0, 0, 2), (0, 2, 0)], logit(0.9)))
    assert stream.offset == (0, 0, 0)
    image, seed, target = stream.fov(TINY.fov_size)
    assert seed.shape == image.shape == target.shape == TINY.fov_size
    prediction = np.full(TINY.fov_size, -1.0, np.float32)
    prediction[2, 6, 4] = 3.0  # high at FOV centre + (0, 2, 0): only that move passes
    finished = stream.write_back(prediction, TINY.fov_size)
    assert not finished and stream.offset == (0, 2, 0)
    _, next_seed, _ = stream.fov(TINY.fov_size)
    # the new FOV is shifted by 2 in y: its rows 0..6 are the old prediction's rows 2..8
    assert np.array_equal(next_seed[:, :7], prediction[:, 2:])
    assert np.all(next_seed[:, 7:] == np.float32(logit(0.05)))  # never predicted: still the pad


def test_face_max_candidates():
    logits = np.full((5, 9, 9), -5.0, np.float32)
    c = (2, 4, 4)
    logits[c[0], c[1] + 1, c[2] + 2] = 4.0  # on the +x face (x = c + 2)
    logits[c[0] - 1, c[1], c[2]] = 3.0  # on the -z face (z = c - 1)
    logits[c[0], c[1] - 2, c[2]] = 1.0  # on the -y face, below threshold
    found = face_max_moves(logits, (1, 2, 2), logit(0.9))
    assert found == [(4.0, (0, 1, 2)), (3.0, (-1, 0, 0))]
    assert face_max_moves(np.full((5, 9, 9), -5.0), (1, 2, 2), logit(0.9)) == []


def test_max_pred_policy_breadth_first_no_revisits_and_bounds():
    logits = np.full((5, 9, 9), -5.0, np.float32)
    logits[2, 5, 6] = 4.0  # +x face -> (0, 1, 2)
    logits[1, 4, 4] = 3.0  # -z face -> (-1, 0, 0)
    policy = MaxPredMoves((1, 2, 2), (5, 9, 9), (9, 17, 17), logit(0.9))
    canvas = np.zeros((9, 17, 17), np.float32)
    assert policy.next_offset(canvas) == (0, 0, 0)
    policy.observe(logits, (0, 0, 0))
    assert policy.next_offset(canvas) == (0, 1, 2)
    assert policy.next_offset(canvas) == (-1, 0, 0)
    assert policy.next_offset(canvas) is None
    policy.queue.extend([(0, 0, 0), (0, 0, 6), (-1, 0, -1)])  # visited, out of the patch, same cell
    assert policy.next_offset(canvas) is None
    policy.queue.append((0, 0, -4))
    assert policy.next_offset(canvas) == (0, 0, -4)


# ---------------------------------------------------------------------------------------------
# optimisation


def test_clip_gradient_entries():
    layer = torch.nn.Linear(3, 2)
    layer.weight.grad = torch.tensor([[2.0, -0.1, -3.0], [0.5, 0.7, -0.7]])
    layer.bias.grad = torch.tensor([0.69, -100.0])
    clip_gradient_entries(layer, 0.7)
    assert torch.equal(layer.weight.grad, torch.tensor([[0.7, -0.1, -0.7], [0.5, 0.7, -0.7]]))
    assert torch.equal(layer.bias.grad, torch.tensor([0.69, -0.7]))


def test_staircase_learning_rate_decay(synthetic_volume):
    cfg = TrainConfig(learning_rate=0.01, learning_rate_decay_factor=0.5, decay_steps=4)
    assert [cfg.learning_rate_at(s) for s in (0, 3, 4, 7, 8, 12)] == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.00125]
    assert TrainConfig(learning_rate=0.01).learning_rate_at(10**6) == 0.01  # off by default (classic)
    trainer = _trainer(synthetic_volume, optimizer="adam", learning_rate=0.01,
                       learning_rate_decay_factor=0.1, decay_steps=2)
    seen = []
    for _ in range(5):
        trainer.step()
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])
    assert trainer.summarize()["learning_rate"] == pytest.approx(0.0001)
    for bad in (dict(decay_steps=10), dict(learning_rate_decay_factor=0.5),
                dict(learning_rate_decay_factor=1.5, decay_steps=10),
                dict(learning_rate_decay_factor=0.5, decay_steps=0)):
        with pytest.raises(ValueError, match="decay"):
            TrainConfig(**bad)


def test_one_step_sgd_clipped_writes_back_and_has_no_gradient_across_moves(synthetic_volume):
    trainer = _trainer(synthetic_volume, batch_size=3, max_gradient_entry_mag=1e-4, learning_rate=0.5)
    fov = TINY.fov_size
    with torch.no_grad():
        trainer.model.conv_lom.bias.fill_(6.0)  # confident "inside" everywhere: every move is taken
    for _ in range(3):  # get some streams past their first move
        trainer.step()
    for stream in trainer.streams:  # what step() does first: finished streams start anew
        if not stream.active:
            trainer._new_example(stream)
    parts = [s.fov(fov) for s in trainer.streams]
    offsets = [s.offset for s in trainer.streams]
    image = torch.from_numpy(np.stack([p[0] for p in parts])[:, None])
    seed = torch.from_numpy(np.stack([p[1] for p in parts])[:, None])
    target = torch.from_numpy(np.stack([p[2] for p in parts])[:, None])
    assert any(float(s.max()) > logit(0.06) and o != (0, 0, 0) for s, o in zip(seed, offsets)), (
        "some input seed should carry earlier predictions"
    )

    # independent reference: the loss of this batch alone, with the seed a constant input
    reference = copy.deepcopy(trainer.model)
    logits = reference(image, seed)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    assert max(float(g.abs().max()) for g in grads) > 1e-4  # clipping binds
    expected = [p.detach() - 0.5 * g.clamp(-1e-4, 1e-4) for p, g in zip(reference.parameters(), grads)]

    captured = {}
    forward = trainer.model.forward

    def spy(img, sd):
        captured["seed"] = sd.detach().clone()
        return forward(img, sd)

    trainer.model.forward = spy
    trainer.step()
    assert torch.equal(captured["seed"], seed)
    for p, e in zip(trainer.model.parameters(), expected):
        assert torch.allclose(p.detach(), e, rtol=0, atol=1e-6)
    # the predictions of this step are now in the canvases, where the next inputs are cut from
    for stream, offset, pred in zip(trainer.streams, offsets, logits.detach()[:, 0].numpy()):
        if stream.example is not None and stream.active:
            from neurotut.ffn.inputs import fov_slices

            region = stream.example.canvas[fov_slices(stream.example.canvas.shape, fov, offset)]
            assert np.array_equal(region, pred)


class NotAllowed:
    """An arbitrary class: a weights-only load must refuse to build it."""


def _strip_rates(history):
    return [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in history]


@pytest.mark.parametrize("optimizer, policy, decay", [("sgd", "fixed", None), ("adam", "max_pred_moves", None),
                                                     ("adam", "fixed", (0.5, 3))])
def test_resume_is_exact(synthetic_volume, tmp_path, optimizer, policy, decay):
    kwargs = dict(optimizer=optimizer, fov_policy=policy, batch_size=2)
    if decay is not None:  # the decay stairs (steps 3, 6, 9) straddle the resume at step 5
        kwargs.update(learning_rate_decay_factor=decay[0], decay_steps=decay[1])
    straight = _trainer(synthetic_volume, **kwargs)
    straight.train(10, summary_every=5, progress=False)

    first = _trainer(synthetic_volume, **kwargs)
    first.train(5, summary_every=5, progress=False)
    path = first.save(tmp_path / "model.ckpt-5.pt")
    with pytest.raises(FileExistsError):
        first.save(path)  # never overwritten silently
    fresh_sampler = make_sampler([synthetic_volume], first.config, min_size=100, seed=99)
    resumed = Trainer.resume(path, [synthetic_volume], fresh_sampler, device="cpu")
    assert resumed.global_step == 5
    resumed.train(10, summary_every=5, progress=False)

    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name]))
    for s1, s2 in zip(straight.streams, resumed.streams):
        assert s1.offset == s2.offset
        assert np.array_equal(s1.example.canvas, s2.example.canvas)
    assert _strip_rates(straight.history) == _strip_rates(resumed.history)


def test_checkpoints_load_safely_and_refuse_another_config(synthetic_volume, tmp_path):
    trainer = _trainer(synthetic_volume)
    trainer.train(2, summary_every=None, checkpoint_dir=tmp_path, progress=False)
    path = latest_checkpoint(tmp_path)
    assert path is not None and path.name == "model.ckpt-2.pt"
    state = load_checkpoint(path)
    assert state["step"] == 2 and state["config"]["model"]["fov_size"] == [5, 9, 9]
    model, cfg = model_from_checkpoint(path)
    assert cfg == trainer.config and not model.training
    for a, b in zip(model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b)

    other = _trainer(synthetic_volume, learning_rate=0.01)
    with pytest.raises(ValueError, match="another configuration"):
        other.load_state_dict(state)

    bad = tmp_path / "model.ckpt-9.pt"
    torch.save({"format": "neurotut-ffn-checkpoint", "payload": NotAllowed()}, bad)
    with pytest.raises(CorruptCheckpointError, match="refuses") as info:
        load_checkpoint(bad)  # weights_only=True: arbitrary objects are not unpickled
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_bad_setups_are_refused(synthetic_volume):
    cfg = TrainConfig(model=TINY)
    parts = compute_partitions(synthetic_volume.labels, lom_radius=(1, 2, 2), min_size=100)
    narrow = BalancedSampler(index_partitions({"syn": parts}, margin=(1, 1, 1)))
    with pytest.raises(ValueError, match="margin"):
        Trainer(cfg, [synthetic_volume], narrow, device="cpu")
    sampler = make_sampler([synthetic_volume], cfg, min_size=100)
    with pytest.raises(ValueError, match="CUDA"):
        Trainer(TrainConfig(model=TINY, amp=True), [synthetic_volume], sampler, device="cpu")
    with pytest.raises(ValueError, match="not given"):
        Trainer(cfg, [TrainVolume("other", synthetic_volume.image, synthetic_volume.labels)], sampler, "cpu")
    with pytest.raises(ValueError, match="differ in shape"):
        TrainVolume("x", np.zeros((4, 5, 5), np.uint8), np.zeros((4, 5, 6), np.uint32))
    with pytest.raises(TypeError, match="integer"):
        TrainVolume("x", np.zeros((4, 5, 5), np.uint8), np.zeros((4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="permut"):
        TrainConfig(model=FFNModelConfig(fov_size=(5, 9, 7), deltas=(1, 2, 2)))


# ---------------------------------------------------------------------------------------------
# evaluation and learning


def test_eval_counts_precision_recall_f1():
    counts = EvalCounts()
    canvas = np.array([3.0, 3.0, -3.0, -3.0], np.float32)
    target = np.array([0.95, 0.05, 0.95, 0.05], np.float32)
    counts.add(canvas, target, logit(0.9))
    m = counts.metrics()
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (1, 1, 1, 1)
    assert m["precision"] == m["recall"] == m["f1"] == 0.5
    assert m["f1_all_inside"] == pytest.approx(2 / 3)  # 2 P / (2 P + N) with P = N = 2
    x, y = canvas.astype(np.float64), target.astype(np.float64)
    bce = np.mean(np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0) - x * y)
    assert m["patch_loss"] == pytest.approx(bce, rel=1e-5)
    assert math.isnan(EvalCounts().metrics()["f1"])


def test_a_short_run_beats_the_trivial_predictor(synthetic_volume):
    trainer = _trainer(synthetic_volume, optimizer="adam", learning_rate=5e-4, model=FFNModelConfig(
        depth=3, fov_size=(5, 9, 9), deltas=(1, 2, 2), features=16))
    cfg = trainer.config
    held_out = make_sampler([synthetic_volume], cfg, min_size=100, seed=123)
    _, centers = held_out.sample(40)
    centers = [("syn", tuple(c)) for c in centers]
    before = evaluate(trainer.model, [synthetic_volume], centers, cfg).metrics()
    trainer.train(400, summary_every=100, progress=False)
    after = evaluate(trainer.model, [synthetic_volume], centers, cfg).metrics()
    assert after["f1_all_inside"] == before["f1_all_inside"]  # same patches, same trivial F1
    assert after["f1"] > after["f1_all_inside"] > before["f1"]
    assert after["patch_loss"] < before["patch_loss"]
    assert len(trainer.history) == 4 and trainer.history[-1]["step"] == 400


def test_run_example_records_every_move(synthetic_volume):
    trainer = _trainer(synthetic_volume)
    ex = load_example(synthetic_volume, (10, 40, 40), trainer.config)
    steps = run_example(trainer.model, ex, trainer.config)
    assert steps[0]["offset"] == (0, 0, 0) and 1 <= len(steps) <= 27
    for a, b in zip(steps, steps[1:]):
        assert np.array_equal(a["canvas_after"], b["canvas_before"])
    assert np.array_equal(steps[-1]["canvas_after"], ex.canvas)


def test_run_examples_batches_and_evaluate_counts_every_step(synthetic_volume):
    trainer = _trainer(synthetic_volume)
    with torch.no_grad():  # the correction is +10 everywhere: every move is taken, 27 steps
        trainer.model.conv_lom.weight.zero_()
        trainer.model.conv_lom.bias.fill_(10.0)
    cfg = trainer.config
    centres = [(10, 40, 40), (8, 30, 50), (12, 50, 30)]
    examples = [load_example(synthetic_volume, c, cfg) for c in centres]
    done = list(run_examples(trainer.model, iter(examples), cfg, batch_size=2))
    assert sorted(e.center for e, _ in done) == sorted(centres)
    assert all(len(steps) == 27 and "canvas_before" not in steps[0] for _, steps in done)
    counts = evaluate(trainer.model, [synthetic_volume], [("syn", c) for c in centres], cfg, batch_size=2)
    assert counts.examples == 3 and counts.steps == 81 and counts.metrics()["steps_per_example"] == 27
    assert counts.metrics()["recall"] == 1.0  # every FOV said "inside"


def test_eval_counts_add_up():
    a, b = EvalCounts(), EvalCounts()
    a.add(np.array([3.0, -3.0], np.float32), np.array([0.95, 0.95], np.float32), logit(0.9), steps=2)
    b.add(np.array([3.0, 3.0], np.float32), np.array([0.05, 0.95], np.float32), logit(0.9), steps=5)
    total = a + b
    assert (total.tp, total.fp, total.fn, total.tn) == (2, 1, 1, 0)
    assert total.examples == 2 and total.steps == 7
    assert total.loss_sum == pytest.approx(a.loss_sum + b.loss_sum)
    assert (a.tp, a.examples) == (1, 1)  # the operands are unchanged


def test_evaluate_examples_in_input_order_and_summing_to_evaluate(synthetic_volume):
    trainer = _trainer(synthetic_volume)
    cfg = trainer.config
    _, drawn = make_sampler([synthetic_volume], cfg, min_size=100, seed=5).sample(7)
    centres = [("syn", tuple(int(v) for v in c)) for c in drawn]
    results = evaluate_examples(trainer.model, [synthetic_volume], centres, cfg, batch_size=3)
    assert [(r.volume, r.center) for r in results] == centres
    total = evaluate(trainer.model, [synthetic_volume], centres, cfg, batch_size=3)
    summed = EvalCounts()
    for r in results:
        assert r.counts.examples == 1 and 1 <= r.steps <= 27
        ex = load_example(synthetic_volume, r.center, cfg)
        assert r.object_fraction == pytest.approx(float(np.mean(ex.target > 0.5)))
        assert r.object_fraction == 0.0 or synthetic_volume.labels[r.center] > 0
        summed = summed + r.counts
    assert (summed.tp, summed.fp, summed.fn, summed.tn, summed.steps) == (
        total.tp, total.fp, total.fn, total.tn, total.steps)
    # alone, each example gives the counts it had in the batch
    alone = evaluate_examples(trainer.model, [synthetic_volume], centres[2:3], cfg)[0]
    assert (alone.counts.tp, alone.counts.fp, alone.steps) == (
        results[2].counts.tp, results[2].counts.fp, results[2].steps)


def test_evaluate_without_centres_is_empty_not_an_error(synthetic_volume):
    trainer = _trainer(synthetic_volume)
    assert evaluate_examples(trainer.model, [synthetic_volume], [], trainer.config) == []
    counts = evaluate(trainer.model, [synthetic_volume], [], trainer.config)
    assert counts.examples == 0 and math.isnan(counts.metrics()["f1"])
    with pytest.raises(KeyError, match="no volume named"):
        evaluate_examples(trainer.model, [synthetic_volume], [("other", (10, 40, 40))], trainer.config)


def test_tensorboard_summaries(synthetic_volume, tmp_path):
    pytest.importorskip("tensorboard")
    trainer = _trainer(synthetic_volume)
    writer = SummaryLogger(tmp_path / "tb")
    trainer.train(30, summary_every=15, writer=writer, progress=False)
    writer.close()
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and centre-slice images


# ---------------------------------------------------------------------------------------------
# command line


def test_command_line_trains_and_resumes(synthetic_volume, tmp_path, capsys):
    h5 = tmp_path / "vol.h5"
    with h5py.File(h5, "w") as f:
        f["raw"] = synthetic_volume.image
        f["labels"] = synthetic_volume.labels.astype(np.int64)
    cfg = TrainConfig(model=TINY)
    parts = compute_partitions(synthetic_volume.labels, lom_radius=(2, 4, 4), min_size=100)
    save_coordinates(tmp_path / "coords.h5", index_partitions({"syn": parts}, margin=cfg.patch_radius))
    args = [
        "ffn", "train", "--train_coords", str(tmp_path / "coords.h5"),
        "--data_volumes", f"syn@{h5}@raw", "--label_volumes", f"syn:{h5}:labels",
        "--model_args", '{"depth": 2, "fov_size": [9, 9, 5], "deltas": [2, 2, 1], "features": 8}',
        "--image_mean", "128", "--image_stddev", "33", "--train_dir", str(tmp_path / "run"),
        "--summary_rate_secs", "0", "--keep_checkpoints", "1", "--quiet",
    ]
    assert main(args + ["--max_steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "global_step/sec" in out and "fov (z, y, x) (5, 9, 9)" in out
    assert latest_checkpoint(tmp_path / "run").name == "model.ckpt-3.pt"
    assert main(args + ["--max_steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "at step 3" in out
    assert [p.name for p in (tmp_path / "run").glob("model.ckpt-*.pt")] == ["model.ckpt-5.pt"]
    state = load_checkpoint(tmp_path / "run" / "model.ckpt-5.pt")
    assert state["normalization"]["syn"] == [128.0, 33.0]
    # another configuration in the same folder is refused, nothing is overwritten
    assert main(args + ["--max_steps", "7", "--learning_rate", "0.01"]) == 2
    assert "another configuration" in capsys.readouterr().err
