"""The `neurotut data` command line."""

import numpy as np

from neurotut.cli import main
from neurotut.data import write_png_stack
from neurotut.io import read_volume


def test_png_to_h5_mean_std_and_refusal(tmp_path, capsys):
    volume = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    write_png_stack(volume, tmp_path / "png")
    out = f"{tmp_path}/img.h5@raw"
    assert main(["data", "png-to-h5", str(tmp_path / "png"), out]) == 0
    assert np.array_equal(read_volume(out), volume)
    assert main(["data", "mean-std", out]) == 0
    assert f"Mean {volume.mean():.3f}, Std {volume.std():.3f}" in capsys.readouterr().out
    assert main(["data", "png-to-h5", str(tmp_path / "png"), out]) == 2  # exists: refused
    assert "already holds dataset 'raw'" in capsys.readouterr().err
    assert main(["data", "mean-std", f"{tmp_path}/img.h5:nope"]) == 2
    assert "no dataset 'nope'" in capsys.readouterr().err


def test_fill_cache_and_list(tmp_path, data_dir, shared_crop, capsys):
    assert main(["data", "fill-cache", "snemi3d-crop", str(shared_crop)]) == 0
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "copied 200 verified files" in out
    assert "snemi3d-crop" in out and "cached" in out
