"""Reproducing a published FFN result: seed points, seeds tried, objects regrown on the published
state, rejected seeds, scores. Synthetic results come from neurotut's own segment_all with an
oracle network (what is reproduced there must match exactly); google/ffn's FIB-25 result is
checked when it is in the data cache."""

import numpy as np
import pytest
from scipy import ndimage

from neurotut.data.download import is_cached
from neurotut.ffn import reproduce as rp
from neurotut.ffn.inference import Canvas, InferenceOptions
from neurotut.ffn.seeds import PolicyGrid3d
from neurotut.ffn.storage import OriginInfo

FOV, DELTAS = (5, 9, 9), (1, 2, 2)


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """The oracle's 'image': label id * 1000 + distance to the object's boundary."""
    dist = ndimage.distance_transform_edt(labels > 0)
    return (labels.astype(np.float32) * 1000 + np.minimum(dist, 999)).astype(np.float32)


def oracle(images: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The object under the FOV centre as logits, higher inside; -5 elsewhere (a background
    centre: every logit -5, so the seed goes weak)."""
    ids = np.floor(images / 1000)
    dist = images - ids * 1000
    cz, cy, cx = (s // 2 for s in images.shape[1:])
    centre = ids[:, cz, cy, cx][:, None, None, None]
    return np.where((ids == centre) & (centre != 0), 3.0 + 0.1 * dist, -5.0).astype(np.float32)


@pytest.fixture(scope="module")
def published():
    """A 'published' run: segment_all over boxes of several sizes (some below min size) with
    seeds on a grid, so that segments are created, seeds rejected as weak (background) or too
    small, and others skipped as already segmented or too close."""
    labels = np.zeros((14, 40, 40), np.uint32)
    labels[2:12, 3:20, 3:20] = 1
    labels[2:12, 22:38, 4:30] = 2
    labels[3:9, 6:14, 24:34] = 3
    labels[5:8, 26:31, 32:36] = 4  # 45 voxels: too small
    image = encode_labels(labels)
    options = InferenceOptions(min_segment_size=100)
    canvas = Canvas(image, oracle, FOV, DELTAS, options)
    policy = PolicyGrid3d(image, canvas.margin, step=3, offsets=(1,))
    canvas.segment_all(policy, progress=False)
    return image, options, policy.valid_coords(), canvas


def fresh_canvas(image, options):
    return Canvas(image, oracle, FOV, DELTAS, options)


def test_the_published_run_has_all_the_cases(published):
    c = published[3].counters
    assert c["segments-created"] >= 3 and c["seeds-weak"] > 0 and c["seeds-too-small"] > 0
    assert c["seeds-invalid"] > 0 and c["seeds-too-close"] > 0


def test_origins_are_found_in_order_among_the_seed_points(published):
    _, _, points, canvas = published
    ids, starts, iters = rp.origin_table(canvas.origins)
    assert list(ids) == sorted(canvas.origins) and iters.tolist() == [canvas.origins[i].iters for i in ids]
    agree = rp.compare_seed_points(points, starts)
    assert agree.found == agree.n_origins == len(canvas.origins) and agree.same_order
    assert agree.n_points == len(points) and agree.missing.shape == (0, 3)
    assert np.array_equal(points[agree.ranks], starts)


def test_missing_and_reordered_origins_are_reported():
    points = np.array([[5, 5, 5], [5, 5, 9], [6, 1, 1]])
    agree = rp.compare_seed_points(points, np.array([[6, 1, 1], [5, 5, 5], [7, 7, 7]]))
    assert agree.ranks.tolist() == [2, 0, -1] and agree.found == 2 and not agree.same_order
    assert agree.missing.tolist() == [[7, 7, 7]]
    assert rp.compare_seed_points(points, np.zeros((0, 3))).same_order


def test_seeds_tried_counts_every_object_grown(published):
    _, options, points, canvas = published
    ids, starts, _ = rp.origin_table(canvas.origins)
    ranks = rp.compare_seed_points(points, starts).ranks
    tried = rp.seeds_tried(points, canvas.result(), ids, ranks, options.min_boundary_dist)
    c = canvas.counters
    assert tried.sum() == c["segments-created"] + c["seeds-weak"] + c["seeds-too-small"] + c["seeds-no-steps"]
    assert tried[ranks].all()
    tries = rp.rejected_tries(tried, ranks, ids)
    assert len(tries) == tried.sum() - len(ids)
    for j, next_id in tries:  # the id the next segment got: one more than those created before
        assert next_id == 1 + int(np.count_nonzero(ranks < j))


def test_seeds_tried_needs_every_origin():
    seg = np.zeros((3, 3, 3), np.uint8)
    seg[1, 1, 1] = 1
    with pytest.raises(ValueError, match="ranks"):
        rp.seeds_tried(np.ones((1, 3)), seg, np.array([1]), np.array([-1]), (1, 1, 1))
    seg[0, 0, 0] = 2
    with pytest.raises(ValueError, match="no origin"):
        rp.seeds_tried(np.ones((1, 3)), seg, np.array([1]), np.array([0]), (1, 1, 1))


def test_objects_regrown_on_the_published_state_are_identical(published):
    image, options, _, canvas = published
    seg = canvas.result()
    result = rp.reproduce_objects(fresh_canvas(image, options), seg, canvas.origins, sorted(canvas.origins))
    assert [r.segment_id for r in result.records] == sorted(canvas.origins)
    for r in result.records:
        assert r.created and r.neurotut_steps == r.google_steps == canvas.origins[r.segment_id].iters
        assert r.neurotut_voxels == r.google_voxels == r.shared_voxels and r.iou == 1.0
        assert r.start_zyx == tuple(canvas.origins[r.segment_id].start_zyx)
    assert np.array_equal(result.segmentation, seg)
    summary = rp.summarize_objects(result.records)
    assert summary["identical"] == summary["objects"] == summary["iou_at_least"] == len(canvas.origins)
    assert summary["rejected"] == 0 and summary["min_iou"] == 1.0


def test_regrowing_depends_on_the_earlier_segments(published):
    """On the published state the object comes back exactly; on a state where an earlier segment
    owns part of it, those voxels stay with the earlier segment (first come keeps the voxel)."""
    image, options, _, canvas = published
    seg = canvas.result().astype(np.int64)
    last = max(canvas.origins)
    (record,) = rp.reproduce_objects(fresh_canvas(image, options), seg, canvas.origins, [last]).records
    assert record.iou == 1.0
    start = canvas.origins[last].start_zyx
    taken = (seg == last) & (np.arange(seg.shape[2]) < start[2] - 2)
    assert 0 < taken.sum() <= (seg == last).sum() - options.min_segment_size  # the rest is kept
    earlier = np.where(taken, 1, seg)  # segment 1 owns part of the last object
    result = rp.reproduce_objects(fresh_canvas(image, options), earlier, canvas.origins, [last])
    (bad,) = result.records
    ours = result.segmentation == last
    assert bad.created and not (ours & taken).any() and not (ours & (seg != last)).any()
    assert 0 < bad.neurotut_voxels <= (seg == last).sum() - taken.sum() == bad.google_voxels


def test_rejected_seeds_are_rejected_again(published):
    image, options, points, canvas = published
    ids, starts, _ = rp.origin_table(canvas.origins)
    ranks = rp.compare_seed_points(points, starts).ranks
    seg = canvas.result()
    tried = rp.seeds_tried(points, seg, ids, ranks, options.min_boundary_dist)
    tries = rp.rejected_tries(tried, ranks, ids)
    again = rp.reproduce_rejections(fresh_canvas(image, options), seg, canvas.origins, points, tries)
    assert len(again) == len(tries) and not any(t.created for t in again)
    steps = sum(t.neurotut_steps for t in again) + sum(o.iters for o in canvas.origins.values())
    assert steps == canvas.counters["network-positions"]


def test_select_objects_takes_what_fits_in_creation_order():
    origins = {i: OriginInfo((0, 0, i), n, 0.0) for i, n in zip((1, 2, 3, 4, 5), (50, 5, 30, 10, 1))}
    assert rp.select_objects(origins, 40) == [2, 3, 5]
    assert rp.select_objects(origins, None) == [1, 2, 3, 4, 5]
    assert rp.select_objects(origins, 0) == []


def test_summary_of_nothing_and_bad_requests(published):
    summary = rp.summarize_objects([])
    assert summary["objects"] == 0 and np.isnan(summary["min_iou"])
    image, options, _, canvas = published
    with pytest.raises(ValueError, match="no origin"):
        rp.reproduce_objects(fresh_canvas(image, options), canvas.result(), canvas.origins, [999])
    with pytest.raises(ValueError, match="differs"):
        rp.reproduce_objects(fresh_canvas(image, options), canvas.result()[1:], canvas.origins, [1])


def test_try_seed_in_order_is_segment_all(published):
    image, options, points, canvas = published
    again = fresh_canvas(image, options)
    created = [again.try_seed(p) for p in points]
    assert np.array_equal(again.result(), canvas.result())
    assert sorted(s for s in created if s) == sorted(canvas.origins)
    assert {i: o[:2] for i, o in again.origins.items()} == {i: o[:2] for i, o in canvas.origins.items()}


def test_set_state_checks_its_input(published):
    image, options, _, canvas = published
    fresh = fresh_canvas(image, options)
    with pytest.raises(ValueError, match="differs"):
        fresh.set_state(np.zeros((2, 2, 2), np.int32), {})
    with pytest.raises(TypeError, match="integer"):
        fresh.set_state(np.zeros(image.shape, np.float32), {})
    fresh.set_state(canvas.result(), canvas.origins)
    assert fresh.try_seed(canvas.origins[1].start_zyx) == 0  # already segmented: invalid


def test_scores_and_origin_agreement():
    truth = np.repeat(np.arange(1, 5), 16).reshape(4, 4, 4)
    scores = rp.score_segmentations(truth, truth, truth)
    assert set(scores) == {"neurotut vs google", "google vs ground truth", "neurotut vs ground truth"}
    assert all(s.arand == 0 and s.voi == 0 for s in scores.values())
    ours = {1: OriginInfo((1, 2, 3), 5, 0.0), 2: OriginInfo((4, 5, 6), 7, 0.0)}
    google = {1: OriginInfo((1, 2, 3), 5, 1.0), 2: OriginInfo((9, 9, 9), 7, 0.0), 3: OriginInfo((4, 5, 6), 6, 0.0)}
    assert rp.origin_agreement(ours, google) == {
        "neurotut": 2, "google": 3, "shared_starts": 2, "same_id": 1, "same_steps": 1}


# ---------------------------------------------------------------------------------------------
# google/ffn's published FIB-25 result


needs_real = pytest.mark.skipif(
    not (is_cached("google-ffn-fib25") and is_cached("fib25-training-sample2")),
    reason="google-ffn-fib25 / fib25-training-sample2 not in the data cache (neurotut data fill-cache)",
)


@pytest.fixture(scope="module")
def real():
    from neurotut.data.fib25 import load_training_sample2
    from neurotut.data.google_ffn import load_google_result
    from neurotut.ffn.inference import normalize_image
    from neurotut.ffn.originals import fib25_request

    request = fib25_request()
    volume = load_training_sample2(progress=False)
    image = normalize_image(volume.raw, request.image_mean, request.image_stddev)
    return image, request, load_google_result(progress=False)


@needs_real
def test_google_origins_are_neurotuts_policypeaks_points_in_order(real):
    from neurotut.ffn.seeds import PolicyPeaks

    image, request, result = real
    points = PolicyPeaks(image, margin=16).valid_coords()
    # google's counter counts one call more than points: the last one ends the iteration
    assert len(points) == result.counters["seed-policy-calls"] - 1 == 12_464
    ids, starts, _ = rp.origin_table(result.origins)
    agree = rp.compare_seed_points(points, starts)
    assert agree.found == agree.n_origins == 254 and agree.same_order
    tried = rp.seeds_tried(points, result.segmentation, ids, agree.ranks,
                           request.inference_options.min_boundary_dist)
    assert tried.sum() == result.counters["segment_at-loop-calls"] == 517


@needs_real
def test_google_segments_3_and_2_regrown_exactly(real, one_torch_thread):
    from neurotut.ffn.inference import TorchPredictor
    from neurotut.ffn.originals import fib25_network

    image, request, result = real
    model, _ = fib25_network()
    canvas = Canvas(image, TorchPredictor(model, "cpu"), model.config.fov_size, model.config.deltas,
                    request.inference_options)
    records = rp.reproduce_objects(canvas, result.segmentation, result.origins, [3, 2]).records
    assert [(r.google_steps, r.neurotut_steps) for r in records] == [(1, 1), (7, 7)]
    assert all(r.created and r.iou > 0.999 for r in records)
