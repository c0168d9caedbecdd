"""neurotut's pretrained RSUNet: found in the repository, or downloaded and verified without it."""

import shutil

import numpy as np
import pytest
import torch

from neurotut import pretrained
from neurotut.data.download import ChecksumError, file_hash
from neurotut.data.registry import get_dataset
from neurotut.models.rsunet import count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO_FILE = pretrained._REPO_DIR / pretrained.RSUNET_QUICK


def test_repository_copy_has_the_registered_checksum_and_loads():
    remote = get_dataset(pretrained.DATASET).file(pretrained.RSUNET_QUICK)
    assert remote.known_hash == f"sha256:{file_hash(REPO_FILE)}"
    assert REPO_FILE.stat().st_size < 5 * 2**20  # small enough to live in git
    assert pretrained.path() == REPO_FILE
    model, cfg, record = pretrained.load_rsunet()
    assert not model.training and cfg.model.widths == (8, 12, 16, 24, 32)
    assert count_parameters(model) > 0 and record["step"] >= 1000
    assert record["history"] and record["history"][-1]["step"] == record["step"]
    with torch.no_grad():
        out = model(torch.rand(1, 1, 8, 64, 64))
    assert out.shape == (1, len(cfg.offsets), 8, 64, 64) and torch.isfinite(out).all()


def test_without_the_repository_it_is_downloaded_and_verified(http_root, data_dir, monkeypatch, tmp_path):
    root, base, log = http_root
    shutil.copyfile(REPO_FILE, root / pretrained.RSUNET_QUICK)
    monkeypatch.setattr(pretrained, "_REPO_DIR", tmp_path / "not-a-checkout")
    got = pretrained.path(base_url=base)
    assert got == data_dir / pretrained.DATASET / pretrained.RSUNET_QUICK
    assert log == [f"/{pretrained.RSUNET_QUICK}"]
    assert pretrained.path(base_url=base) == got and len(log) == 1  # cached: no second download
    np.testing.assert_array_equal(np.frombuffer(got.read_bytes(), np.uint8),
                                  np.frombuffer(REPO_FILE.read_bytes(), np.uint8))


def test_a_tampered_download_is_refused(http_root, data_dir, monkeypatch, tmp_path):
    root, base, _ = http_root
    payload = bytearray(REPO_FILE.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (root / pretrained.RSUNET_QUICK).write_bytes(bytes(payload))
    monkeypatch.setattr(pretrained, "_REPO_DIR", tmp_path / "not-a-checkout")
    with pytest.raises(ChecksumError, match=pretrained.RSUNET_QUICK):
        pretrained.path(base_url=base)


def test_affinity_network_of_each_profile(data_dir):
    from neurotut import config

    model, cfg, what = pretrained.affinity_network(config.PROFILES["quick"])
    assert "pretrained" in what and cfg.model.widths == config.PROFILES["quick"].unet_widths
    with pytest.raises(FileNotFoundError, match="run chapter 4 first"):
        pretrained.affinity_network(config.PROFILES["full"])  # no pretrained, no chapter 4 run
