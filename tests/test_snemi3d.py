"""The SNEMI3D loaders, the tutorial volume and the train/validation split."""

import numpy as np
import pytest

from neurotut import config
from neurotut.data import load_tutorial_volume, train_val_split


def test_real_crop_loader(real_crop):
    raw, labels, voxel_size = real_crop
    assert raw.shape == labels.shape == (100, 512, 512)
    assert raw.dtype == np.uint8 and labels.dtype == np.uint32
    assert voxel_size == (30.0, 6.0, 6.0)
    assert len(np.unique(labels)) - 1 == 151
    assert raw.mean() == pytest.approx(131, abs=1.0)
    assert raw.std() == pytest.approx(62, abs=1.0)
    assert (labels == 0).mean() == pytest.approx(0.225, abs=0.005)


def test_falls_back_to_synthetic_when_offline(data_dir, monkeypatch, capsys):
    from neurotut.data import download

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.delenv("NEUROTUT_REQUIRE_REAL_DATA", raising=False)
    monkeypatch.setattr(download.pooch, "create", offline)
    vol = load_tutorial_volume(config.PROFILES["quick"])
    assert vol.name == "synthetic" and not vol.is_real
    assert vol.raw.shape == config.PROFILES["quick"].synthetic_shape
    assert "synthetic" in capsys.readouterr().out
    monkeypatch.setenv("NEUROTUT_REQUIRE_REAL_DATA", "1")
    with pytest.raises(OSError, match="unreachable"):
        load_tutorial_volume(config.PROFILES["quick"])


def test_split_is_80_20_along_z():
    volume = np.arange(100 * 2 * 2).reshape(100, 2, 2)
    train, val = train_val_split(volume)
    assert train.shape[0] == 80 and val.shape[0] == 20
    assert np.array_equal(np.concatenate([train, val]), volume)
    assert np.shares_memory(train, volume)  # views, no copy
    with pytest.raises(ValueError):
        train_val_split(volume, 1.0)
    with pytest.raises(ValueError):
        train_val_split(volume[:1], 0.5)
