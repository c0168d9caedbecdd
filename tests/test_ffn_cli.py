"""Tests for ``neurotut ffn partitions`` and ``neurotut ffn coordinates``."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from neurotut.cli import build_parser, main
from neurotut.ffn.cli import parse_named_volume
from neurotut.ffn.coordinates import load_coordinates
from neurotut.ffn.partitions import DEFAULT_THRESHOLDS, compute_partitions


@pytest.fixture
def labels_file(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(7, 12, 16)).astype(np.uint32)
    labels[:, :6] = np.where(labels[:, :6] > 0, 1, 0)
    path = tmp_path / "seg.h5"
    with h5py.File(path, "w") as f:
        f["stack"] = labels
    return path, labels


def run(*argv):
    return main(["ffn", *argv, "--quiet"])


def test_partitions_converts_xyz_flags_once(labels_file, tmp_path):
    path, labels = labels_file
    out = tmp_path / "af.h5"
    rc = run(
        "partitions", "--input_volume", f"{path}@stack", "--output_volume", f"{out}:af",
        "--lom_radius", "3,2,1", "--min_size", "10",
        "--exclusion_regions", "8,5,3,1.2",
    )
    assert rc == 0
    expected = compute_partitions(
        labels, DEFAULT_THRESHOLDS, (1, 2, 3), min_size=10, exclusion_regions=[(3, 5, 8, 1.2)]
    )
    with h5py.File(out, "r") as f:
        ds = f["af"]
        np.testing.assert_array_equal(ds[...], expected)
        assert ds.dtype == np.uint8
        np.testing.assert_array_equal(ds.attrs["lom_radius_zyx"], [1, 2, 3])
        # the original's bounding box attribute, in x, y, z: whole volume shrunk by the radius
        np.testing.assert_array_equal(ds.attrs["bounding_boxes"], [[[3, 2, 1], [10, 8, 5]]])
        values, counts = ds.attrs["partition_counts"]
        assert counts.sum() == 5 * 8 * 10  # the valid region only
    assert expected[3, 5, 8] == 255  # the exclusion sphere landed at x=8, y=5, z=3


def test_partitions_errors(labels_file, tmp_path, capsys):
    path, labels = labels_file
    out = tmp_path / "af.h5"
    common = ["--output_volume", f"{out}:af", "--lom_radius", "1,1,1"]
    assert run("partitions", "--input_volume", f"{path}:nope", *common) == 2
    assert "no dataset 'nope'" in capsys.readouterr().err

    with h5py.File(tmp_path / "float.h5", "w") as f:
        f["stack"] = labels.astype(np.float32)
    assert run("partitions", "--input_volume", f"{tmp_path / 'float.h5'}:stack", *common) == 2
    assert "integer dtype" in capsys.readouterr().err

    too_big = ["--output_volume", f"{out}:af", "--lom_radius", "1,1,4"]
    assert run("partitions", "--input_volume", f"{path}:stack", *too_big) == 2
    assert "too large" in capsys.readouterr().err

    same_file = ["--output_volume", f"{path}:af", "--lom_radius", "1,1,1"]
    assert run("partitions", "--input_volume", f"{path}:stack", *same_file) == 2
    assert "lose the labels" in capsys.readouterr().err
    with h5py.File(path, "r") as f:
        assert list(f) == ["stack"]

    assert not out.exists()
    out.write_bytes(b"keep me")
    assert run("partitions", "--input_volume", f"{path}:stack", *common) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert run("partitions", "--input_volume", f"{path}:stack", *common, "--overwrite") == 0


def test_coordinates_end_to_end(labels_file, tmp_path):
    path, labels = labels_file
    af1, af2 = tmp_path / "af1.h5", tmp_path / "af2.h5"
    for out in (af1, af2):
        assert run("partitions", "--input_volume", f"{path}:stack", "--output_volume",
                   f"{out}:af", "--lom_radius", "1,1,1", "--min_size", "0") == 0
    coords = tmp_path / "coords.h5"
    rc = run(
        "coordinates", "--partition_volumes", f"train@{af1}@af,validation1:{af2}:af",
        "--coordinate_output", str(coords), "--margin", "1,2,3", "--write_records",
    )
    assert rc == 0
    index = load_coordinates(coords)
    assert index.volume_names == ("train", "validation1")
    assert index.margin == (1, 2, 3)  # z, y, x as given: the original's margin is z, y, x
    with h5py.File(af1, "r") as f:
        crop = f["af"][1:-1, 2:-2, 3:-3]
    expected = {int(v): 2 * int(np.count_nonzero(crop == v)) for v in np.unique(crop) if v != 255}
    assert index.summary() == expected
    with h5py.File(coords, "r") as f:
        assert f["records/center_zyx"].shape == (index.n_partitions * index.max_count, 3)


def test_parse_named_volume_accepts_both_separators_and_drive_letters():
    name, spec = parse_named_volume("validation1@C:\\data\\af.h5@af")
    assert name == "validation1" and spec.dataset == "af"
    assert str(spec.path).endswith("af.h5") and str(spec.path).startswith("C:")
    name, spec = parse_named_volume("v:/tmp/x.h5:group/af")
    assert (name, spec.path, spec.dataset) == ("v", Path("/tmp/x.h5"), "group/af")
    with pytest.raises(ValueError, match="name:file.h5:dataset"):
        parse_named_volume("/tmp/x.h5")


def test_help_says_which_flags_are_xyz():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["ffn"]
    steps = sub._subparsers._group_actions[0].choices
    text = steps["partitions"].format_help()
    assert "x,y,z" in text and "converted to z,y,x" in text
    assert "z,y,x" in steps["coordinates"].format_help()
