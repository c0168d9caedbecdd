"""Tests for neurotut.inference: bump weights, window placement, blending against a brute-force
reference, constant models, single-window exactness, padding and input checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from neurotut.inference import bump_weights, predict_volume, raw_to_input, window_starts
from neurotut.models.rsunet import RSUNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")



class Constant(nn.Module):
    """Logits ``c`` everywhere, whatever the input."""

    def __init__(self, channels=3, value=0.7):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.channels, self.value = channels, value

    def forward(self, x):
        return torch.full((x.shape[0], self.channels) + x.shape[2:], self.value) + 0 * self.dummy


class PositionInWindow(nn.Module):
    """Logit = the input + the voxel's y position inside its window: differs between windows."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        y = torch.arange(x.shape[3], dtype=x.dtype).reshape(1, 1, 1, -1, 1) / x.shape[3]
        return torch.cat([x + y, x - y], dim=1) + 0 * self.dummy


def test_bump_weights_shape_symmetry_and_range():
    w = bump_weights((5, 8, 9))
    assert w.shape == (5, 8, 9) and w.dtype == np.float64
    assert w.max() == pytest.approx(1 + 1e-4)
    assert w.min() >= 1e-4
    for axis in range(3):
        np.testing.assert_allclose(w, np.flip(w, axis=axis), rtol=1e-12)
    # falls from the centre to the border, to about the floor at the corners
    assert w[2, 4, 4] > w[2, 4, 1] > w[2, 4, 0]
    assert w[0, 0, 0] == pytest.approx(1e-4, rel=1e-3)
    # the formula, at one voxel
    t = lambda i, n: (i + 1) / (n + 1)  # noqa: E731
    s = lambda z, y, x: -sum((t(i, n) * (1 - t(i, n))) ** -1.5 for i, n in zip((z, y, x), (5, 8, 9)))  # noqa: E731
    assert w[1, 2, 6] == pytest.approx(1e-4 + np.exp(s(1, 2, 6) - s(2, 3, 4)), rel=1e-12)


@pytest.mark.parametrize("size,window,stride", [(10, 4, 2), (9, 4, 2), (4, 4, 2), (17, 5, 3), (7, 1, 1)])
def test_window_starts_cover_the_axis(size, window, stride):
    starts = window_starts(size, window, stride)
    covered = np.zeros(size, int)
    for s in starts:
        covered[s : s + window] += 1
    assert covered.min() >= 1
    assert starts[0] == 0 and starts[-1] == size - window
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    with pytest.raises(ValueError):
        window_starts(3, 4, 1)


def test_constant_model_gives_a_constant_volume():
    raw = np.random.default_rng(0).integers(0, 256, (7, 21, 19), dtype=np.uint8)
    out = predict_volume(Constant(3, 0.7), raw, (3, 8, 8), overlap=0.5, batch_size=3, progress=False)
    assert out.shape == (3, 7, 21, 19) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-0.7)), rtol=1e-6)


def test_single_window_equals_the_network_exactly():
    torch.manual_seed(0)
    model = RSUNet(widths=(4, 6, 8)).eval()
    raw = np.random.default_rng(1).integers(0, 256, (3, 16, 12), dtype=np.uint8)
    out = predict_volume(model, raw, raw.shape, progress=False)
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(raw_to_input(raw))[None, None]))[0].numpy()
    np.testing.assert_array_equal(out, direct)


def test_reversible_networks_predict_like_their_plain_computation():
    torch.manual_seed(0)
    model = RSUNet(widths=(4, 6, 8), reversible=True, depth=2).eval()
    raw = np.random.default_rng(1).integers(0, 256, (3, 16, 12), dtype=np.uint8)
    out = predict_volume(model, raw, (3, 8, 8), progress=False)
    model.set_reversible_mode("plain")
    np.testing.assert_array_equal(predict_volume(model, raw, (3, 8, 8), progress=False), out)


def test_blending_matches_a_brute_force_reference():
    raw = np.random.default_rng(2).random((4, 13, 11)).astype(np.float32)
    window, overlap = (2, 6, 5), 0.5
    out = predict_volume(PositionInWindow(), raw, window, overlap=overlap, batch_size=4, progress=False)
    # reference: every window, every voxel, explicit sums
    w = bump_weights(window)
    strides = [max(1, round(n * (1 - overlap))) for n in window]
    num = np.zeros((2,) + raw.shape)
    den = np.zeros(raw.shape)
    for start in itertools.product(*(window_starts(n, k, s) for n, k, s in zip(raw.shape, window, strides))):
        for idx in itertools.product(*(range(k) for k in window)):
            v = tuple(a + b for a, b in zip(start, idx))
            pos = idx[1] / window[1]
            logits = np.array([raw[v] + pos, raw[v] - pos])
            num[(slice(None),) + v] += w[idx] / (1 + np.exp(-logits))
            den[v] += w[idx]
    np.testing.assert_allclose(out, num / den, rtol=1e-6, atol=1e-7)
    # and blending really mixes windows: a plain single window per voxel would differ
    assert not np.allclose(out[0], 1 / (1 + np.exp(-raw)), atol=1e-3)


def test_small_volumes_are_padded_and_channels_selected():
    raw = np.random.default_rng(3).integers(0, 256, (2, 5, 6), dtype=np.uint8)
    out = predict_volume(Constant(12, -1.0), raw, (4, 8, 8), channels=3, progress=False)
    assert out.shape == (3, 2, 5, 6)
    out = predict_volume(Constant(12, -1.0), raw, (4, 8, 8), channels=[0, 5], progress=False)
    assert out.shape == (2, 2, 5, 6)


def test_bad_inputs_are_refused():
    model = Constant()
    with pytest.raises(ValueError, match="Z, Y, X"):
        predict_volume(model, np.zeros((4, 4), np.uint8), (1, 4, 4), progress=False)
    with pytest.raises(TypeError, match="uint8"):
        predict_volume(model, np.zeros((2, 4, 4), np.int32), (1, 4, 4), progress=False)
    with pytest.raises(ValueError, match="overlap"):
        predict_volume(model, np.zeros((2, 4, 4), np.uint8), (1, 4, 4), overlap=1.0, progress=False)
    with pytest.raises(ValueError, match="channels"):
        predict_volume(model, np.zeros((2, 4, 4), np.uint8), (1, 4, 4), channels=4, progress=False)
