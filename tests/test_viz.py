"""Pictures: colours, overlays, error maps, the slice viewer's static fallback."""

import numpy as np
import pytest

from neurotut import viz


def test_colours_are_consistent_and_zero_is_black():
    labels = np.array([[0, 5, 7], [5, 7, 0]], np.uint32)
    rgb = viz.colorize(labels)
    assert rgb.shape == (2, 3, 3)
    assert np.array_equal(rgb[0, 0], [0, 0, 0])
    assert np.array_equal(rgb[0, 1], rgb[1, 0]) and not np.array_equal(rgb[0, 1], rgb[0, 2])
    with pytest.raises(TypeError):
        viz.colorize(labels.astype(float))


def test_overlay_leaves_unlabelled_pixels_grey():
    raw = np.full((4, 4), 200, np.uint8)
    labels = np.zeros((4, 4), np.uint32)
    labels[:2] = 3
    out = viz.overlay(raw, labels, alpha=0.5)
    assert np.allclose(out[2:], 1.0)  # grey (normalised) untouched
    assert not np.allclose(out[:2], 1.0)


def test_error_masks_find_one_split_and_one_merge():
    gt = np.zeros((1, 10, 30), np.uint32)
    gt[0, :, :10], gt[0, :, 10:20], gt[0, :, 20:] = 1, 2, 3
    pred = gt.copy()
    pred[0, :, 20:24] = 9  # object 3 split into 9 (40 voxels) + 3 (60 voxels)
    pred[0, :, 10:20] = 1  # objects 1 and 2 merged
    split, merge = viz.error_masks(gt, pred, min_overlap=10)
    assert split.sum() == 40 and split[0, :, 20:24].all()
    assert merge.sum() == 100 and merge[0, :, :20].sum() == 100
    split, merge = viz.error_masks(gt, gt, min_overlap=1)
    assert not split.any() and not merge.any()


def test_slice_viewer_falls_back_to_a_static_player(monkeypatch):
    monkeypatch.setenv("NEUROTUT_STATIC", "1")
    assert not viz.interactive_session()
    raw = np.random.default_rng(0).integers(0, 255, (6, 16, 16), dtype=np.uint8)
    labels = np.ones((6, 16, 16), np.uint32)
    html = viz.slice_viewer(raw, {"EM": None, "labels": labels}, static_step=2, size=2)
    assert "animation" in html.data and html.data.count("frames[") >= 3
    with pytest.raises(ValueError):
        viz.slice_viewer(raw, {"bad": labels[:3]})


def test_show_errors_draws_given_masks_like_computed_ones():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = np.zeros((1, 10, 30), np.uint32)
    gt[0, :, :10], gt[0, :, 10:20], gt[0, :, 20:] = 1, 2, 3
    pred = gt.copy()
    pred[0, :, 10:20] = 1
    raw = np.full((1, 10, 30), 128, np.uint8)
    fig, (a, b) = plt.subplots(1, 2)
    viz.show_errors(a, raw, gt, pred, 0, min_overlap=10)
    viz.show_errors(b, raw, gt, pred, 0, masks=viz.error_masks(gt, pred, min_overlap=10))
    assert np.array_equal(a.images[0].get_array(), b.images[0].get_array())
    plt.close(fig)
