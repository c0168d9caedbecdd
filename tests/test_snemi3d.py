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
    with pytest.raises(OSError, match="unreachable|cannot reach"):  # pooch, or the DNS check before it
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


def test_official_release_loader_unpacks_the_zip(http_root, data_dir, monkeypatch):
    """load_snemi3d through the real fetch + unzip path, on a small archive of the same layout."""
    import dataclasses
    import hashlib
    import zipfile

    import tifffile

    from neurotut.data import REGISTRY, RemoteFile, load_snemi3d

    root, base, log = http_root
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (4, 16, 16), dtype=np.uint8)
    test = rng.integers(0, 256, (4, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 70000, (4, 16, 16)).astype(np.uint32)
    for name, array in [("image/train-input.tif", train), ("seg/train-labels.tif", labels), ("image/test-input.tif", test)]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / name, array, photometric="minisblack")
    with zipfile.ZipFile(root / "snemi.zip", "w") as zf:
        for name in ("image/train-input.tif", "seg/train-labels.tif", "image/test-input.tif"):
            zf.write(root / name, f"snemi/{name}")
    md5 = hashlib.md5((root / "snemi.zip").read_bytes()).hexdigest()
    fake = dataclasses.replace(REGISTRY["snemi3d"], files=(RemoteFile("snemi.zip", f"md5:{md5}", f"{base}/snemi.zip"),))
    monkeypatch.setitem(REGISTRY, "snemi3d", fake)

    raw, lab, voxel_size = load_snemi3d("train", progress=False)
    assert np.array_equal(raw, train) and np.array_equal(lab, labels) and lab.dtype == np.uint32
    assert voxel_size == (30.0, 6.0, 6.0)
    raw_t, lab_t, _ = load_snemi3d("test", progress=False)
    assert np.array_equal(raw_t, test) and not lab_t.any()
    assert log == ["/snemi.zip"]  # downloaded once, unpacked once, then served from the cache
    with pytest.raises(ValueError, match="train"):
        load_snemi3d("validation")
