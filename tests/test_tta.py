"""Test-time augmentation: an exact (equivariant) predictor is unchanged by TTA, a biased one is
averaged, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from neurotut import affinity, tta
from neurotut.data import synthetic


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return synthetic.make_synthetic(shape=(12, 40, 40), seed=3)[1]


def test_variants_are_distinct_and_start_with_identity():
    for n in tta.VARIANT_COUNTS:
        vs = tta.variants(n)
        assert len(vs) == n == len(set(vs))
        assert vs[0] == ((False, False, False), False)
    assert all(not f[0] for f, _ in tta.variants(4)) and not any(t for _, t in tta.variants(8))
    with pytest.raises(ValueError, match="1, 4, 8 or 16"):
        tta.variants(3)


@pytest.mark.parametrize("variant", tta.variants(16))
def test_exact_predictor_maps_back_to_the_truth(labels, variant):
    """Labels used as the 'image' and the true affinities as the 'prediction': every variant,
    mapped back, equals the true affinities wherever it gives a value."""
    offsets = affinity.SUPERHUMAN_OFFSETS
    truth = affinity.affinities(labels, offsets)
    pred = affinity.affinities(tta.transform(labels, variant), offsets)
    back, valid = tta.untransform(pred, offsets, variant)
    assert back.shape == truth.shape
    np.testing.assert_array_equal(back[valid], truth[valid])
    # a flipped axis loses exactly the first k planes of a channel whose offset has k there
    flips, _ = variant
    for c, off in enumerate(offsets):
        lost = 1.0
        for axis, (f, k) in enumerate(zip(flips, off)):
            n = labels.shape[axis]
            lost *= (n - (min(k, n) if f else 0)) / n
        assert valid[c].mean() == pytest.approx(lost)


def test_tta_of_an_exact_predictor_is_the_truth(labels):
    offsets = affinity.SUPERHUMAN_OFFSETS
    truth = affinity.affinities(labels, offsets)
    out = tta.predict_with_tta(lambda v: affinity.affinities(v, offsets), labels, offsets, 16)
    np.testing.assert_array_equal(out, truth)


def test_tta_averages_a_biased_predictor():
    """A predictor that answers 1 only when the image is not flipped in x averages to 1/2 (x flips
    are half of the 4 variants) where every variant gives a value."""
    offsets = ((0, 0, 1), (0, 1, 0))
    raw = np.zeros((2, 6, 6), dtype=np.float32)
    raw[:, :, 0] = 1.0  # a marker: after an x flip it sits at the other side

    def predict(v):
        value = 1.0 if v[0, 0, 0] == 1.0 else 0.0
        return np.full((2,) + v.shape, value, dtype=np.float32)

    out = tta.predict_with_tta(predict, raw, offsets, 4)
    assert out.shape == (2, 2, 6, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 1:, 1:], 0.5)


def test_bad_input():
    with pytest.raises(ValueError, match="offset"):
        tta.untransform(np.zeros((1, 2, 4, 4), np.float32), [(0, 0, 2)], ((False,) * 3, True))
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        tta.transform(np.zeros((4, 4)), ((False,) * 3, False))
    with pytest.raises(ValueError, match="expected"):
        tta.untransform(np.zeros((2, 2, 4, 4), np.float32), [(0, 0, 1)], ((False,) * 3, False))
