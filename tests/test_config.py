"""Profiles, device choice, seeds, data directory."""

import numpy as np
import pytest
import torch

from neurotut import config


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("NEUROTUT_PROFILE", "full")
    assert config.get_profile().name == "full"
    monkeypatch.setenv("NEUROTUT_PROFILE", "Quick")
    assert config.get_profile() is config.PROFILES["quick"]
    monkeypatch.setenv("NEUROTUT_PROFILE", "huge")
    with pytest.raises(ValueError, match="quick"):
        config.get_profile()


def test_default_profile_follows_cuda(monkeypatch):
    monkeypatch.delenv("NEUROTUT_PROFILE", raising=False)
    monkeypatch.setattr(config, "cuda_available", lambda: False)
    assert config.profile_name() == "quick"
    monkeypatch.setattr(config, "cuda_available", lambda: True)
    assert config.profile_name() == "full"


def test_profiles_differ_only_in_sizes():
    quick, full = config.PROFILES["quick"], config.PROFILES["full"]
    assert type(quick) is type(full)
    assert quick.dataset == "snemi3d-crop" and full.dataset == "snemi3d"


@pytest.mark.parametrize("name", sorted(config.PROFILES))
def test_ffn_inference_crop_lies_in_the_validation_sections_and_holds_the_workshop_fov(name):
    profile = config.PROFILES[name]
    side = {"snemi3d-crop": 512, "snemi3d": 1024}[profile.dataset]   # both have 100 sections
    n_val = 100 - int(round(100 * profile.train_fraction))
    val_shape = (n_val, side, side)
    crop = profile.ffn_inference_crop or val_shape
    ends = [o + c for o, c in zip(profile.ffn_inference_offset, crop)]
    assert all(0 <= o for o in profile.ffn_inference_offset)
    assert all(e <= s for e, s in zip(ends, val_shape)), (ends, val_shape)
    assert all(c >= f for c, f in zip(crop, (17, 33, 33)))   # the workshop network's FOV (z, y, x)
    assert profile.ffn_val_examples >= 1 and profile.ffn_workshop_val_examples >= 1


def test_cpu_device_says_so(monkeypatch, capsys):
    monkeypatch.delenv("NEUROTUT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.get_device().type == "cpu"
    assert "CPU" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="CUDA"):
        config.get_device("cuda")


def test_seed_everything_is_reproducible():
    g1 = config.seed_everything(7)
    a = (torch.rand(3), np.random.rand(2), g1.random(2))
    g2 = config.seed_everything(7)
    b = (torch.rand(3), np.random.rand(2), g2.random(2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


def test_seed_everything_fixes_the_thread_count_of_the_profile(monkeypatch):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        monkeypatch.setenv("NEUROTUT_PROFILE", "quick")
        torch.set_num_threads(1)
        config.seed_everything(0)
        assert torch.get_num_threads() == config.PROFILES["quick"].cpu_threads == 2
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROTUT_DATA_DIR", str(tmp_path / "d"))
    assert config.data_dir() == tmp_path / "d" and (tmp_path / "d").is_dir()
    monkeypatch.delenv("NEUROTUT_DATA_DIR")
    assert "neurotut" in str(config.data_dir())
