"""Test-time augmentation: an exact (equivariant) predictor is unchanged by TTA, a biased one is
averaged, predict_volume(tta=n) is the mean of its variants, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurotut import affinity, tta
from neurotut.augment import flip_volume
from neurotut.data import synthetic
from neurotut.inference import predict_volume
from neurotut.models.rsunet import RSUNet, RSUNetConfig

OFFSETS = affinity.SUPERHUMAN_OFFSETS


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return synthetic.make_synthetic(shape=(12, 40, 40), seed=3)[1]


def test_variant_sets():
    for n, vs in tta.VARIANTS.items():
        assert len(vs) == n == len(set(vs)) and vs[0] == 0
    with pytest.raises(ValueError, match="1, 4, 8 or 16"):
        tta.variants(3)


@pytest.mark.parametrize("variant", range(16))
def test_exact_predictor_maps_back_to_the_truth(labels, variant):
    """Labels as the 'image', their true affinities as the 'prediction': every variant, mapped
    back, equals the true affinities wherever it gives a value, and gives all but the planes a
    reflected axis loses."""
    truth = affinity.affinities(labels, OFFSETS)
    pred = affinity.affinities(np.ascontiguousarray(flip_volume(labels, variant)), OFFSETS)
    back, valid = tta.untransform(pred, OFFSETS, variant)
    assert back.shape == truth.shape and back.dtype == np.float32
    np.testing.assert_array_equal(back[valid], truth[valid])
    assert valid[:3].mean() > 0.9 and (variant != 0 or valid.all())


def test_tta_of_an_exact_predictor_is_the_truth(labels):
    out = tta.predict_with_tta(lambda v: affinity.affinities(v, OFFSETS), labels, OFFSETS, 16)
    np.testing.assert_array_equal(out, affinity.affinities(labels, OFFSETS))


def test_tta_averages_a_biased_predictor():
    """A predictor that answers 1 only when the image is not flipped in x averages to 1/2 with
    the 4 y/x flips, wherever every variant gives a value."""
    offsets = ((0, 0, 1), (0, 1, 0))
    raw = np.zeros((2, 6, 6), dtype=np.float32)
    raw[:, :, 0] = 1.0  # a marker on the x = 0 side: an x flip moves it

    def predict(v):
        return np.full((2,) + v.shape, 1.0 if v[0, 0, 0] == 1.0 else 0.0, dtype=np.float32)

    out = tta.predict_with_tta(predict, raw, offsets, 4)
    assert out.shape == (2, 2, 6, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 1:, 1:], 0.5)


def test_predict_volume_with_tta_is_the_mean_over_variants():
    torch.manual_seed(0)
    model = RSUNet(RSUNetConfig(widths=(4, 6, 8))).eval()
    raw = np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8)
    window = (4, 32, 32)
    out = predict_volume(model, raw, window, tta=4, offsets=OFFSETS, progress=False)
    total, count = 0.0, 0
    for variant in tta.variants(4):
        pred = predict_volume(model, np.ascontiguousarray(flip_volume(raw, variant)), window, progress=False)
        back, valid = tta.untransform(pred, OFFSETS, variant)
        total, count = total + back, count + valid
    np.testing.assert_allclose(out, total / count, rtol=1e-6, atol=1e-7)
    plain = predict_volume(model, raw, window, progress=False)
    assert out.shape == plain.shape and not np.allclose(out, plain)  # the network is not equivariant
    assert predict_volume(model, raw, window, tta=4, channels=3, progress=False).shape == (3, 4, 32, 32)


def test_bad_input():
    with pytest.raises(ValueError, match="swapped offset"):
        tta.untransform(np.zeros((1, 2, 4, 4), np.float32), [(0, 0, 2)], 8)
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        tta.predict_with_tta(lambda v: v[None], np.zeros((4, 4)), [(0, 0, 1)], 1)
    with pytest.raises(ValueError, match="do not fit"):
        tta.untransform(np.zeros((2, 2, 4, 4), np.float32), [(0, 0, 1)], 0)
