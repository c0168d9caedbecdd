"""`neurotut doctor`: the environment check, run on this (CPU) machine."""

import torch
import torch.nn.functional as F

from neurotut import doctor
from neurotut.cli import main


def _statuses(out: str) -> dict[str, str]:
    """{check name: status} from the printed lines."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("  ") and parts and parts[0] in (doctor.OK, doctor.WARN, doctor.FAIL, doctor.INFO):
            name = line[8:29].strip()
            rows[name] = parts[0]
    return rows


def test_quick_profile_without_cuda_passes_and_warns_about_missing_data(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("NEUROTUT_PROFILE", "quick")
    monkeypatch.delenv("NEUROTUT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    rows = _statuses(out)
    assert rows["python"] == "ok" and rows["waterz"] == "ok" and rows["data dir"] == "ok"
    assert torch.__version__ in out
    assert rows["cuda"] == "info" and "cuda op" not in rows  # no GPU: nothing to compute on it
    assert rows["data snemi3d-crop"] == "warn"  # the empty cache of this test
    assert "neurotut data fetch snemi3d-crop" in out
    assert str(data_dir) in out and "quick" in out
    assert "everything the quick profile needs is in place" in out


def test_full_profile_without_cuda_fails_with_one_line_per_reason(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("NEUROTUT_PROFILE", "full")
    monkeypatch.delenv("NEUROTUT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    verdict = out[out.index("neurotut doctor:"):].splitlines()
    assert "problem(s) for the full profile" in verdict[0]
    reasons = verdict[1:]
    assert any(line.startswith("  - cuda: CUDA is not available") for line in reasons)
    assert all(line.startswith("  - ") for line in reasons)
    assert len(reasons) == len([s for s in _statuses(out).values() if s == "FAIL"])


def test_require_data_fails_on_an_empty_cache_and_passes_on_a_filled_one(data_dir, shared_crop, monkeypatch,
                                                                          capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["doctor", "--profile", "quick", "--require-data"]) == 1
    out = capsys.readouterr().out
    assert "  - data snemi3d-crop: not cached" in out
    assert main(["data", "fill-cache", "snemi3d-crop", str(shared_crop)]) == 0
    capsys.readouterr()
    assert main(["doctor", "--profile", "quick", "--require-data"]) == 0
    assert _statuses(capsys.readouterr().out)["data snemi3d-crop"] == "ok"


def test_bad_profile_and_device_settings_are_reported(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("NEUROTUT_PROFILE", "huge")
    assert main(["doctor"]) == 1
    assert "  - profile: NEUROTUT_PROFILE='huge' is not a profile" in capsys.readouterr().out
    monkeypatch.setenv("NEUROTUT_PROFILE", "quick")
    monkeypatch.setenv("NEUROTUT_DEVICE", "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["doctor"]) == 1
    assert "  - device: NEUROTUT_DEVICE='cuda:0'" in capsys.readouterr().out


def test_conv3d_check_is_exact_on_a_correct_device_and_catches_a_wrong_one(monkeypatch):
    # the CPU in float32 against the float64 reference: round-off only
    assert doctor.conv3d_max_error("cpu") < 1e-5
    # a device whose float32 convolution is slightly off must be caught
    real = F.conv3d

    def off_by_a_little(x, *args, **kwargs):
        out = real(x, *args, **kwargs)
        return out * 1.01 if x.dtype == torch.float32 else out

    monkeypatch.setattr(F, "conv3d", off_by_a_little)
    assert doctor.conv3d_max_error("cpu") > doctor.CUDA_CHECK_TOLERANCE


def test_a_wrong_gpu_result_fails_the_check(data_dir, monkeypatch):
    """Pretend a GPU is present and computes wrongly: the doctor reports it and fails."""

    class Props:
        name, total_memory, major, minor = "Fake GPU", 16 * 2**30, 8, 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (8 * 2**30, 16 * 2**30))
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(doctor, "conv3d_max_error", lambda device: 0.5)
    checks = {c.name: c for c in doctor.run_checks("full")}
    assert checks["torch"].status == doctor.OK and checks["cuda"].status == doctor.OK
    assert "Fake GPU" in checks["gpu"].detail and "16.0 GiB" in checks["gpu"].detail
    assert checks["cuda op"].status == doctor.FAIL and "5.0e-01" in checks["cuda op"].detail
    monkeypatch.setattr(doctor, "conv3d_max_error", lambda device: 1e-7)
    checks = {c.name: c for c in doctor.run_checks("full")}
    assert checks["cuda op"].status == doctor.OK
