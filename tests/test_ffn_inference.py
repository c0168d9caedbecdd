"""FFN inference: movement policy, one object, the whole subvolume, checkpoints, requests, CLI.

Most tests use *oracle networks*: predictors that return the ground-truth object as logits, so
that what is tested is the inference bookkeeping, not a trained model.
"""

import json

import numpy as np
import pytest
from scipy import ndimage

from neurotut.ffn import storage
from neurotut.ffn.inference import Canvas, InferenceOptions
from neurotut.ffn.model import logit
from neurotut.ffn.movement import FaceMaxMovementPolicy, scored_moves
from neurotut.ffn.request import InferenceRequest, parse_bounding_box, parse_text_proto, run_request
from neurotut.ffn.segment import segment_volume
from neurotut.ffn.seeds import PolicyGrid3d, PolicyPeaks, SeedPolicy
from neurotut.io import OutputExistsError

# ---------------------------------------------------------------------------------------------
# oracles and helpers


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """The oracle's 'image': label id * 1000 + distance to the object's boundary (voxels)."""
    dist = ndimage.distance_transform_edt(labels > 0, sampling=(3, 1, 1))
    return (labels.astype(np.float32) * 1000 + np.minimum(dist, 999)).astype(np.float32)


def label_oracle(images: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Ground truth as logits: the object under the FOV centre, higher away from its boundary
    (so face maxima lie inside the object, as with a trained network); -5 elsewhere."""
    ids = np.floor(images / 1000)
    dist = images - ids * 1000
    cz, cy, cx = (s // 2 for s in images.shape[1:])
    centre = ids[:, cz, cy, cx][:, None, None, None]
    inside = (ids == centre) & (centre != 0)
    return np.where(inside, 3.0 + 0.1 * dist, -5.0).astype(np.float32)


class IndexOracle:
    """Objects given as global masks (they may overlap). The canvas image holds each voxel's flat
    index, so the oracle knows where its FOV is. A new object starts with a seed input that is
    positive at the centre voxel only; the oracle then follows the first mask holding that voxel
    until the next object starts."""

    def __init__(self, masks: list[np.ndarray]):
        self.masks = [m.ravel() for m in masks]
        self.logits = []
        for m in masks:
            d = ndimage.distance_transform_edt(m).ravel()
            self.logits.append(np.where(m.ravel(), 3.0 + 0.1 * d, -5.0).astype(np.float32))
        self.current = None
        self.calls = 0

    def __call__(self, images, seeds):
        self.calls += 1
        idx = images.astype(np.int64)
        out = np.full(images.shape, -5.0, np.float32)
        centre = tuple(s // 2 for s in images.shape[1:])
        for b in range(len(images)):
            if (seeds[b] > 0).sum() == 1 and seeds[b][centre] > 0:  # a new object
                start = idx[b][centre]
                self.current = next((k for k, m in enumerate(self.masks) if m[start]), None)
            if self.current is not None:
                out[b] = self.logits[self.current][idx[b]]
        return out


class ListPolicy(SeedPolicy):
    """Seeds at given points, in the given order."""

    name = "ListPolicy"

    def __init__(self, image, margin, points):
        super().__init__(image, margin)
        self.points = np.asarray(points, dtype=np.int64).reshape(-1, 3)

    def compute_coords(self):
        return self.points


def index_image(shape):
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


FOV, DELTAS = (5, 9, 9), (1, 2, 2)


# ---------------------------------------------------------------------------------------------
# movement


def test_logit_values_of_the_spec():
    assert logit(0.95) == pytest.approx(2.944, abs=1e-3)
    assert logit(0.9) == pytest.approx(2.197, abs=1e-3)
    assert logit(0.6) == pytest.approx(0.405, abs=1e-3)


def test_scored_moves_one_face_maximum():
    field = np.full((9, 17, 17), -5.0, np.float32)  # centre (4, 8, 8), deltas (2, 4, 4)
    field[4, 11, 12] = 4.0  # on the +x face (x = 8 + 4), 3 voxels off centre in y
    assert scored_moves(field, (2, 4, 4), 2.0) == [(4.0, (0, 3, 4))]
    assert scored_moves(field, (2, 4, 4), 4.5) == []  # below the threshold: no move
    field[4, 11, 13] = 9.0  # outside the box centre +- deltas: never looked at
    assert scored_moves(field, (2, 4, 4), 2.0) == [(4.0, (0, 3, 4))]


def test_scored_moves_sorted_best_first_and_corner_counted_once():
    field = np.full((9, 17, 17), -5.0, np.float32)
    field[2, 8, 8] = 3.0  # -z face centre
    field[4, 4, 6] = 6.0  # -y face
    field[6, 12, 12] = 5.0  # a corner: on the +z, +y and +x faces
    moves = scored_moves(field, (2, 4, 4), 2.0)
    assert moves == [(6.0, (0, -4, -2)), (5.0, (2, 4, 4)), (3.0, (-2, 0, 0))]


def test_scored_moves_axis_with_zero_delta_has_no_faces():
    yy, xx = np.mgrid[:9, :9]
    field = (5.0 - np.hypot(yy - 4, xx - 4))[None].astype(np.float32)  # peak at the centre
    moves = scored_moves(field, (0, 2, 2), 2.0)
    assert sorted(off for _, off in moves) == [(0, -2, 0), (0, 0, -2), (0, 0, 2), (0, 2, 0)]


def test_movement_policy_fifo_quantization_and_validity():
    policy = FaceMaxMovementPolicy((2, 4, 4), score_threshold=2.0)
    policy.reset((10, 20, 20))
    assert policy.quantize((10, 20, 20)) == (0, 0, 0)
    assert policy.quantize((10, 22, 20)) == (0, 1, 0)  # (2 + 4 // 2) // 4
    assert policy.quantize((10, 21, 17)) == (0, 0, -1)
    field = np.full((9, 17, 17), -5.0, np.float32)
    field[4, 8, 12] = 4.0  # +x move
    field[4, 8, 4] = 3.0  # -x move
    policy.update(field, (10, 20, 20))
    policy.update(field, (10, 20, 28))
    assert [p for _, p in policy.queue] == [(10, 20, 24), (10, 20, 16), (10, 20, 32), (10, 20, 24)]
    assert policy.pop(lambda p: True) == (10, 20, 24)
    policy.update(field, (10, 20, 24))  # visits cell (0, 0, 1); queues (.., 28) and (.., 20)
    seen = []

    def valid(p):
        seen.append(p)
        return p != (10, 20, 16)

    assert policy.pop(valid) == (10, 20, 32)  # (.., 16) invalid now: skipped
    assert seen == [(10, 20, 16), (10, 20, 32)]
    # the rest lie on visited cells (24: cell 1, 28: cell 2, 20: cell 0): skipped unchecked
    assert policy.pop(valid) is None and len(seen) == 2 and len(policy) == 0


# ---------------------------------------------------------------------------------------------
# one step and one object


def _recording(values):
    calls = []

    def predictor(images, seeds):
        calls.append(seeds.copy())
        return np.broadcast_to(values, seeds.shape).astype(np.float32).copy()

    return predictor, calls


def test_update_at_pads_unvisited_voxels_and_overwrites_the_fov():
    predictor, calls = _recording(np.float32(1.5))
    canvas = Canvas(np.zeros((9, 20, 20), np.float32), predictor, FOV, DELTAS,
                    InferenceOptions(pad_value=0.05, init_activation=0.95))
    canvas.seed[4, 10, 10] = canvas.t_init
    canvas.seed[4, 10, 11] = -1.0
    out = canvas.update_at((4, 10, 10))
    seed_in = calls[0][0]
    assert seed_in[2, 4, 4] == pytest.approx(logit(0.95))
    assert seed_in[2, 4, 0] == pytest.approx(logit(0.05))
    assert seed_in[2, 4, 5] == -1.0
    # overwrite, not max: the seed point goes down to the new value; no voxel >= move threshold,
    # so the old negative voxel may rise
    assert canvas.seed[4, 10, 10] == 1.5 and canvas.seed[4, 10, 11] == 1.5
    assert np.all(canvas.seed[2:7, 6:15, 6:15] == 1.5) and np.isnan(canvas.seed[0, 0, 0])
    assert out.shape == FOV


def test_disconnected_seed_bias():
    new = np.full(FOV, 3.0, np.float32)  # above the move threshold: the bias applies
    new[2, 4, 5] = -4.0
    predictor, _ = _recording(new)
    canvas = Canvas(np.zeros((9, 20, 20), np.float32), predictor, FOV, DELTAS)
    c = (4, 10, 10)
    canvas.seed[4, 10, 8] = -1.0  # negative before, higher now: frozen
    canvas.seed[4, 10, 9] = 0.5  # positive before: free to change
    canvas.seed[4, 10, 11] = -1.0  # negative before, lower now: takes the lower value
    canvas.update_at(c)
    assert canvas.seed[4, 10, 8] == -1.0
    assert canvas.seed[4, 10, 9] == 3.0
    assert canvas.seed[4, 10, 11] == -4.0
    assert canvas.seed[4, 10, 12] == 3.0  # NaN (unvisited) before: exempt
    # switched off with a negative disco_seed_threshold
    off = Canvas(np.zeros((9, 20, 20), np.float32), predictor, FOV, DELTAS,
                 InferenceOptions(disco_seed_threshold=-1))
    off.seed[4, 10, 8] = -1.0
    off.update_at(c)
    assert off.seed[4, 10, 8] == 3.0


def test_a_weak_seed_stops_the_object_and_is_marked_rejected():
    predictor, calls = _recording(np.float32(-5.0))
    canvas = Canvas(np.zeros((9, 20, 20), np.float32), predictor, FOV, DELTAS,
                    InferenceOptions(min_segment_size=1))
    assert canvas.segment_at((4, 10, 10)) == 1 and len(calls) == 1
    canvas.segment_all(ListPolicy(canvas.image, canvas.margin, [(4, 10, 10)]), progress=False)
    assert canvas.segmentation[4, 10, 10] == -1 and canvas.counters["seeds-weak"] == 1
    assert canvas.result().max() == 0


def test_segment_at_grows_a_box_and_stops_at_its_faces():
    shape = (9, 40, 40)
    box = np.zeros(shape, bool)
    box[2:7, 8:30, 6:34] = True
    canvas = Canvas(index_image(shape), IndexOracle([box]), FOV, DELTAS)
    steps = []
    n = canvas.segment_at((4, 18, 20), callback=lambda cv, p, lg: steps.append(p))
    assert n == len(steps) == len(canvas.history) and steps[0] == (4, 18, 20)
    grown = canvas.seed >= canvas.t_segment
    # the oracle's object wherever a visited FOV reached it, nothing else
    reached = np.zeros(shape, bool)
    for p in steps:
        reached[canvas.fov_slices(p)] = True
        assert box[p]
    assert np.array_equal(grown, box & reached)
    assert grown.sum() > 0.7 * box.sum()
    cells = {canvas.movement.quantize(p) for p in steps}
    assert len(cells) == len(steps)  # never two steps on one cell of the delta grid


def test_flood_recorder_starts_from_the_seed_alone_and_ends_with_the_final_state():
    from neurotut.ffn.flood_recorder import FloodRecorder
    from neurotut.ffn.model import logit

    shape = (9, 40, 40)
    box = np.zeros(shape, bool)
    box[2:7, 8:30, 6:34] = True
    canvas = Canvas(index_image(shape), IndexOracle([box]), FOV, DELTAS)
    recorder = FloodRecorder(z=4, every=3)
    n = canvas.segment_at((4, 18, 20), callback=recorder)
    frames = recorder.finish()
    assert frames[0].step == 0 and frames[0].visited.shape == (0, 3)
    assert np.count_nonzero(~np.isnan(frames[0].plane)) == 1
    assert frames[0].plane[18, 20] == np.float32(logit(canvas.options.init_activation))
    assert frames[1].step == 1 and frames[-1].step == n
    assert np.array_equal(frames[-1].plane, canvas.seed[4], equal_nan=True)
    assert [f.step for f in frames[2:-1]] == list(range(3, n, 3))


# ---------------------------------------------------------------------------------------------
# the subvolume


def test_first_come_ownership_overlaps_min_size_and_boundary_distance():
    shape = (9, 48, 48)
    o1 = np.zeros(shape, bool)
    o1[1:8, 4:23, 4:31] = True
    o2 = np.zeros(shape, bool)
    o2[1:8, 18:37, 4:31] = True  # overlaps o1 in y 18..22
    o3 = np.zeros(shape, bool)
    o3[3:6, 38:41, 38:41] = True  # 27 voxels: too small
    oracle = IndexOracle([o1, o2, o3])
    canvas = Canvas(index_image(shape), oracle, FOV, DELTAS, InferenceOptions(min_segment_size=100))
    s1, s2, s3 = (4, 10, 15), (4, 32, 15), (4, 39, 39)
    canvas.segment_all(ListPolicy(canvas.image, canvas.margin, [s1]), progress=False)
    seg = canvas.segmentation
    assert seg[4, 22, 15] == 1
    first = seg.copy()
    p = (4, 23, 15)  # in o2 only, next to a voxel of segment 1
    inside = (4, 12, 20)
    canvas.segment_all(ListPolicy(canvas.image, canvas.margin, [p, s3, inside, s2]), progress=False)
    c = canvas.counters
    assert c["segments-created"] == 2 and c["seeds-too-close"] == 1
    assert c["seeds-too-small"] == 1 and c["seeds-invalid"] == 1
    assert seg[s3] == -1  # rejected small object
    assert seg[p] == 2  # a -1 marker is free for a later segment
    assert np.all(o1[seg == 1]) and np.all(o2[seg == 2])
    # first come keeps the voxel: segment 1's voxels, also those object 2 wanted, stay 1
    assert np.all(seg[first == 1] == 1) and ((first == 1) & o2).sum() > 0
    # segment 2 (grown last) recorded how many of its voxels segment 1 already owned
    claimed = int(((canvas.seed >= canvas.t_segment) & (seg == 1)).sum())
    assert claimed > 0 and canvas.overlaps[2].tolist() == [[1], [claimed]]
    assert canvas.overlaps[1].shape == (2, 0)
    assert canvas.origins[1].start_zyx == s1 and canvas.origins[2].start_zyx == s2
    assert canvas.origins[2].iters > 0
    assert np.array_equal(canvas.seg_prob > 0, seg > 0)
    assert canvas.result().dtype == np.uint32 and canvas.result().min() == 0


def test_masked_positions_and_seeds_are_skipped():
    shape = (9, 40, 40)
    box = np.zeros(shape, bool)
    box[2:7, 8:30, 6:34] = True
    mask = np.zeros(shape, bool)
    mask[:, :, 20:] = True
    canvas = Canvas(index_image(shape), IndexOracle([box]), FOV, DELTAS,
                    InferenceOptions(min_segment_size=10), mask=mask)
    canvas.segment_all(ListPolicy(canvas.image, canvas.margin, [(4, 18, 25), (4, 18, 12)]), progress=False)
    assert canvas.counters["seeds-masked"] == 1 and canvas.counters["segments-created"] == 1
    assert all(p[2] < 20 for p in canvas.history)


def test_oracle_reproduces_convex_objects_exactly():
    shape = (24, 80, 80)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint32)
    for i, (cz, cy, cx, rz, ry, rx) in enumerate(
        [(12, 24, 24, 8, 14, 16), (12, 54, 52, 9, 18, 14), (11, 60, 18, 6, 10, 9)], 1
    ):
        labels[((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = i
    image = encode_labels(labels)
    canvas = Canvas(image, label_oracle, (9, 17, 17), (2, 4, 4), InferenceOptions(min_segment_size=50))
    canvas.segment_all(PolicyGrid3d(image, canvas.margin, step=6, offsets=(0,)), progress=False)
    seg = canvas.result()
    for i in (1, 2, 3):
        ids = np.unique(seg[labels == i])
        assert len(ids) == 1 and ids[0] > 0
    assert np.array_equal(seg > 0, labels > 0)


def test_max_seeds_stops_and_the_same_policy_continues():
    shape = (9, 48, 48)
    labels = np.zeros(shape, np.uint32)
    labels[1:8, 4:20, 4:44] = 1
    labels[1:8, 24:44, 4:44] = 2
    image = encode_labels(labels)
    opts = InferenceOptions(min_segment_size=10)
    whole = Canvas(image, label_oracle, FOV, DELTAS, opts)
    whole.segment_all(PolicyGrid3d(image, whole.margin, step=4, offsets=(0,)), progress=False)
    parts = Canvas(image, label_oracle, FOV, DELTAS, opts)
    policy = PolicyGrid3d(image, parts.margin, step=4, offsets=(0,))
    parts.segment_all(policy, progress=False, max_seeds=3)
    assert 0 < policy.idx < len(policy)
    parts.segment_all(policy, progress=False)
    assert np.array_equal(parts.segmentation, whole.segmentation)
    assert whole.counters["segments-created"] >= 2


@pytest.fixture(scope="module")
def synthetic():
    from neurotut.data import make_synthetic

    raw, labels, _ = make_synthetic((32, 128, 128), seed=3, n_objects=20)
    return raw, labels


def test_oracle_flood_fill_reproduces_synthetic_labels(synthetic):
    """With an oracle network, seeds on a dense grid and the original's movement policy, the
    segmentation (split into connected components on load, as the original does) matches the
    ground truth's connected components almost exactly away from the border (where the FOV cannot
    be centred). What remains are branches that the face-maximum moves do not follow."""
    from neurotut.metrics import adapted_rand_error

    raw, labels = synthetic
    image = encode_labels(labels)
    fov, deltas = (9, 33, 33), (2, 8, 8)
    canvas = Canvas(image, label_oracle, fov, deltas, InferenceOptions(min_segment_size=100))
    canvas.segment_all(PolicyGrid3d(image, canvas.margin, step=6, offsets=(0,)), progress=False)
    seg, _ = storage.clean_up(canvas.result())
    inner = tuple(slice(f // 2, -(f // 2)) for f in fov)
    truth = storage.split_disconnected_components(labels[inner])
    scores = adapted_rand_error(truth, seg[inner])
    assert scores.precision > 0.99  # no merges at all
    assert scores.error < 0.03
    assert canvas.counters["segments-created"] >= 15


def test_batching_does_not_change_the_result(synthetic):
    raw, labels = synthetic
    crop = (slice(0, 24), slice(0, 80), slice(0, 80))
    image = encode_labels(labels[crop])
    results = []
    for batch_size in (1, 6):
        canvas = Canvas(image, label_oracle, (9, 17, 17), (2, 4, 4),
                        InferenceOptions(min_segment_size=50), batch_size=batch_size)
        canvas.segment_all(PolicyPeaks(raw[crop].astype(np.float32), canvas.margin), progress=False)
        results.append(canvas)
    a, b = results
    assert np.array_equal(a.segmentation, b.segmentation)
    assert np.array_equal(a.seg_prob, b.seg_prob)
    assert {k: (o.start_zyx, o.iters) for k, o in a.origins.items()} == {
        k: (o.start_zyx, o.iters) for k, o in b.origins.items()
    }
    assert b.counters["network-calls"] < a.counters["network-calls"]  # batches did form
    assert b.counters["network-positions"] == a.counters["network-positions"]


class Interrupt(Exception):
    pass


def test_resume_from_an_inference_checkpoint_equals_an_uninterrupted_run(synthetic, tmp_path):
    raw, labels = synthetic
    crop = (slice(0, 24), slice(0, 64), slice(0, 96))
    image = encode_labels(labels[crop])
    rawc = raw[crop].astype(np.float32)
    opts = InferenceOptions(min_segment_size=50)
    kwargs = dict(fov_size=(9, 17, 17), deltas=(2, 4, 4), options=opts, progress=False)

    def policy():
        return PolicyPeaks(rawc, (4, 8, 8))

    full = segment_volume(image, label_oracle, seed_policy=policy(), **kwargs)
    total_calls = full.counters["network-calls"]
    assert full.counters["segments-created"] >= 4

    calls = {"n": 0}

    def flaky(images, seeds):
        calls["n"] += 1
        if calls["n"] > total_calls // 2:
            raise Interrupt
        return label_oracle(images, seeds)

    cpoint = tmp_path / "seg-0_0_0.cpoint"
    with pytest.raises(Interrupt):
        segment_volume(image, flaky, seed_policy=policy(), checkpoint_path=cpoint, checkpoint_interval=0, **kwargs)
    assert cpoint.exists()
    with np.load(cpoint) as data:
        state = json.loads(str(data["seed_policy_state"]))
        assert 0 < state["idx"] < state["n_coords"] and data["origins"].shape[0] >= 1
    resumed = segment_volume(image, label_oracle, seed_policy=policy(), checkpoint_path=cpoint,
                             checkpoint_interval=0, **kwargs)
    assert not cpoint.exists()  # removed when the run finishes
    assert np.array_equal(resumed.segmentation, full.segmentation)
    assert np.array_equal(resumed.seg_prob, full.seg_prob)
    assert {k: (o.start_zyx, o.iters) for k, o in resumed.origins.items()} == {
        k: (o.start_zyx, o.iters) for k, o in full.origins.items()
    }
    assert {k: v.tolist() for k, v in resumed.overlaps.items()} == {k: v.tolist() for k, v in full.overlaps.items()}
    assert resumed.counters["checkpoints-restored"] == 1


def test_checkpoint_of_another_run_is_refused(tmp_path):
    canvas = Canvas(np.zeros((9, 20, 20), np.float32), label_oracle, FOV, DELTAS)
    path = canvas.save_checkpoint(tmp_path / "x.cpoint")
    other = Canvas(np.zeros((9, 20, 20), np.float32), label_oracle, FOV, DELTAS,
                   InferenceOptions(move_threshold=0.8))
    with pytest.raises(ValueError, match="options"):
        other.restore_checkpoint(path)


def test_consistency_threshold_repeats_the_network_until_stable():
    target = np.full(FOV, 4.0, np.float32)

    calls = {"n": 0}

    def halfway(images, seeds):  # moves the seed halfway to the target each call
        calls["n"] += 1
        return (seeds + target) / 2

    canvas = Canvas(np.zeros((9, 20, 20), np.float32), halfway, FOV, DELTAS,
                    InferenceOptions(consistency_threshold=0.01))
    canvas.seed[4, 10, 10] = canvas.t_init
    canvas.update_at((4, 10, 10))
    assert 2 < calls["n"] < 32
    plain = Canvas(np.zeros((9, 20, 20), np.float32), halfway, FOV, DELTAS)
    calls["n"] = 0
    plain.update_at((4, 10, 10))
    assert calls["n"] == 1


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match="normalised"):
        Canvas(np.zeros((9, 20, 20), np.uint8), label_oracle, FOV, DELTAS)
    with pytest.raises(ValueError, match="smaller than the FOV"):
        Canvas(np.zeros((3, 20, 20), np.float32), label_oracle, FOV, DELTAS)
    with pytest.raises(ValueError, match="odd"):
        Canvas(np.zeros((9, 20, 20), np.float32), label_oracle, (4, 9, 9), DELTAS)
    with pytest.raises(ValueError, match="probability"):
        InferenceOptions(move_threshold=1.5)


# ---------------------------------------------------------------------------------------------
# requests, run_request and the command line

PBTXT = """
image {
  hdf5: "%s@raw"
}
image_mean: 0
image_stddev: 1
checkpoint_interval: 1800
seed_policy: "PolicyGrid3d"
seed_policy_args: "{\\"step\\": 6, \\"offsets\\": [0]}"
model_checkpoint_path: "%s"
model_name: "convstack_3d.ConvStack3DFFNModel"
model_args: "{\\"depth\\": 1, \\"fov_size\\": [9, 9, 5], \\"deltas\\": [2, 2, 1]}"
segmentation_output_dir: "%s"
inference_options {
  init_activation: 0.95
  pad_value: 0.05
  move_threshold: 0.9
  min_boundary_dist { x: 1 y: 2 z: 3 }
  segment_threshold: 0.6
  min_segment_size: 100
}
"""


def test_text_proto_request_like_the_original(tmp_path):
    req = InferenceRequest.parse(PBTXT % ("a.h5", "m.pt", tmp_path))
    assert req.image == "a.h5@raw" and req.seed_policy == "PolicyGrid3d"
    assert req.seed_policy_args == {"step": 6, "offsets": [0]}
    assert req.model_args["fov_size"] == [9, 9, 5]
    assert req.inference_options.min_boundary_dist == (3, 2, 1)  # x, y, z -> z, y, x
    assert req.inference_options.min_segment_size == 100 and req.checkpoint_interval == 1800
    assert parse_text_proto('a: 1 b { c: "x" } b { c: "y" } # comment\n d: true') == {
        "a": 1, "b": [{"c": "x"}, {"c": "y"}], "d": True,
    }


def test_yaml_request_and_request_errors(tmp_path):
    path = tmp_path / "req.yml"
    path.write_text(
        "image: a.h5:raw\nimage_mean: 131\nimage_stddev: 62\nmodel_checkpoint_path: m.pt\n"
        "segmentation_output_dir: out\ninference_options:\n  min_boundary_dist: [2, 2, 1]\n"
    )
    req = InferenceRequest.load(path)
    assert req.inference_options.min_boundary_dist == (1, 2, 2) and req.seed_policy == "PolicyPeaks"
    with pytest.raises(ValueError, match="lacks"):
        InferenceRequest.parse("image_mean: 1\n")
    with pytest.raises(ValueError, match="unknown request fields"):
        InferenceRequest.parse(path.read_text() + "imge_stddev: 3\n")
    with pytest.raises(ValueError, match="does not support"):
        InferenceRequest.parse(path.read_text() + "masks: []\n")
    with pytest.raises(ValueError, match="unknown inference_options"):
        InferenceRequest.parse(path.read_text().replace("min_boundary_dist", "min_boundary"))


def test_bounding_box_forms():
    assert parse_bounding_box("start { x: 1 y: 2 z: 3 } size { x: 10 y: 20 z: 30 }") == ((3, 2, 1), (30, 20, 10))
    assert parse_bounding_box("1,2,3:10,20,30") == ((3, 2, 1), (30, 20, 10))
    with pytest.raises(ValueError):
        parse_bounding_box("1,2:3,4")


def _write_image(path, image):
    from neurotut.io import write_h5

    write_h5(path, {"raw": image})


def test_run_request_refuses_an_existing_result(tmp_path):
    shape = (9, 40, 40)
    box = np.zeros(shape, bool)
    box[2:7, 8:30, 6:34] = True
    _write_image(tmp_path / "img.h5", index_image(shape))
    req = InferenceRequest.parse(PBTXT % (tmp_path / "img.h5", "unused.pt", tmp_path / "out"))
    from neurotut.ffn.model import FFNModelConfig

    cfg = FFNModelConfig(depth=1, fov_size=FOV, deltas=DELTAS, features=2)
    path = run_request(req, None, predictor=IndexOracle([box]), model_config=cfg, progress=False)
    assert path == tmp_path / "out" / "0" / "0" / "seg-0_0_0.npz"
    seg = storage.load_segmentation(path)
    assert seg.max() >= 1 and np.all(box[seg > 0]) and (seg > 0).sum() > 0.7 * box.sum()
    assert "segments-created: " in (tmp_path / "out" / "counters.txt").read_text()
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        run_request(req, None, predictor=IndexOracle([box]), model_config=cfg, progress=False)
    assert path.read_bytes() == before
    run_request(req, None, overwrite=True, predictor=IndexOracle([box]), model_config=cfg, progress=False)
    # a bounding box is one canvas; its corner names the files
    box_path = run_request(req, ((0, 8, 4), (9, 32, 36)), predictor=IndexOracle([box]),
                           model_config=cfg, progress=False)
    assert box_path == tmp_path / "out" / "4" / "8" / "seg-4_8_0.npz"
    assert storage.load_segmentation(box_path).shape == (9, 32, 36)


def test_command_line_inference_end_to_end(tmp_path, capsys):
    import torch

    from neurotut.cli import main
    from neurotut.ffn import checkpoints
    from neurotut.ffn.model import ConvStack3DFFN, FFNModelConfig
    from neurotut.ffn.train_config import TrainConfig

    model_cfg = FFNModelConfig(depth=1, fov_size=FOV, deltas=DELTAS, features=4)
    torch.manual_seed(0)
    model = ConvStack3DFFN(model_cfg)
    state = {
        "format": checkpoints.CHECKPOINT_FORMAT,
        "version": checkpoints.CHECKPOINT_VERSION,
        "config": TrainConfig(model=model_cfg).as_dict(),
        "model": model.state_dict(),
    }
    ckpt = tmp_path / "model.ckpt-0.pt"
    torch.save(state, ckpt)
    rng = np.random.default_rng(0)
    _write_image(tmp_path / "img.h5", rng.integers(0, 255, size=(9, 24, 24)).astype(np.uint8))
    request = tmp_path / "req.pbtxt"
    request.write_text(PBTXT % (tmp_path / "img.h5", ckpt, tmp_path / "out"))
    argv = ["ffn", "inference", "--inference_request", str(request), "--quiet", "--device", "cpu",
            "--bounding_box", "start { x: 0 y: 0 z: 0 } size { x: 24 y: 24 z: 9 }"]
    assert main(argv) == 0
    out = storage.segmentation_path(tmp_path / "out", (0, 0, 0))
    assert out.exists() and storage.probability_path(tmp_path / "out", (0, 0, 0)).exists()
    assert "wrote" in capsys.readouterr().out
    assert main(argv) == 2  # refuses to replace the result
    assert "overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    # model_args that disagree with the checkpoint are an error
    request.write_text(request.read_text().replace("\\\"depth\\\": 1", "\\\"depth\\\": 2"))
    assert main(argv + ["--overwrite"]) == 2


def test_torch_predictor_matches_the_model():
    import torch

    from neurotut.ffn.inference import TorchPredictor
    from neurotut.ffn.model import ConvStack3DFFN, FFNModelConfig

    torch.manual_seed(0)
    model = ConvStack3DFFN(FFNModelConfig(depth=2, fov_size=FOV, deltas=DELTAS, features=4))
    predictor = TorchPredictor(model, "cpu")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, *FOV)).astype(np.float32)
    seeds = rng.normal(size=(3, *FOV)).astype(np.float32)
    out = predictor(images, seeds)
    with torch.no_grad():
        ref = model(torch.from_numpy(images[:, None]), torch.from_numpy(seeds[:, None]))[:, 0].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    mixed = TorchPredictor(model, "cpu", mixed_precision=True)(images, seeds)
    assert np.max(np.abs(mixed - ref)) < 0.1
