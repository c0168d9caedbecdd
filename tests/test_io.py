"""Volume specs, atomic writes, refusing to overwrite."""

import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurotut.io import (
    CorruptCheckpointError,
    OutputExistsError,
    add_datasets,
    atomic_path,
    load_torch_checkpoint,
    parse_volume_spec,
    read_volume,
    write_h5,
)


@pytest.mark.parametrize(
    "text, path, dataset",
    [
        ("img.h5:raw", "img.h5", "raw"),
        ("img.h5@raw", "img.h5", "raw"),
        ("/data/a.hdf5@group/raw", "/data/a.hdf5", "group/raw"),
        ("C:\\data\\img.h5:raw", "C:\\data\\img.h5", "raw"),
        ("C:\\data\\img.h5@af", "C:\\data\\img.h5", "af"),
        ("dir.h5/x.h5:raw", "dir.h5/x.h5", "raw"),
    ],
)
def test_parse_volume_spec(text, path, dataset):
    spec = parse_volume_spec(text)
    assert (str(spec.path), spec.dataset) == (str(Path(path)), dataset)


def test_spec_without_dataset_is_an_error_or_the_default():
    with pytest.raises(ValueError, match="file.h5:dataset"):
        parse_volume_spec("img.h5")
    assert parse_volume_spec("img.h5", default_dataset="raw").dataset == "raw"
    with pytest.raises(ValueError):
        parse_volume_spec("img.h5:")


def test_read_volume_errors_name_what_exists(tmp_path):
    write_h5(tmp_path / "a.h5", {"raw": np.zeros((2, 2, 2), np.uint8)})
    with pytest.raises(KeyError, match="raw"):
        read_volume(f"{tmp_path}/a.h5:labels")
    with pytest.raises(FileNotFoundError):
        read_volume(f"{tmp_path}/b.h5:raw")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    with pytest.raises(OutputExistsError):
        with atomic_path(target) as tmp:
            pass
    assert target.read_bytes() == b"whole"


def test_read_volume_checks_shape_and_dtype_before_reading(tmp_path):
    path = tmp_path / "a.h5"
    write_h5(path, {"raw": np.zeros((2, 3, 4), np.uint8), "flat": np.zeros((3, 4), np.float32)})
    assert read_volume(f"{path}:raw", ndim=3, kind="image").shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"shape \(3, 4\); expected \(Z, Y, X\)"):
        read_volume(f"{path}:flat", ndim=3)
    with pytest.raises(TypeError, match="uint8; expected floats"):
        read_volume(f"{path}:raw", kind="float")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(OSError, match="text.h5 is not a readable HDF5 file"):
        read_volume(f"{tmp_path}/text.h5:raw")


def test_add_datasets_keeps_the_other_objects_and_refuses_existing_names(tmp_path):
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.attrs["who"] = "me"
        f.create_dataset("g/a", data=np.arange(6).reshape(2, 3), compression="gzip")
        f["g/a"].attrs["unit"] = "nm"
        f["g/link"] = h5py.SoftLink("/g/a")
    add_datasets(path, {"b": np.ones((2, 2)), "g/c": np.zeros(3)}, attrs={"b": {"k": 1}})
    with h5py.File(path, "r") as f:
        assert f.attrs["who"] == "me" and f["g/a"].attrs["unit"] == "nm"
        assert f["g/a"].compression == "gzip" and np.array_equal(f["g/link"][...], np.arange(6).reshape(2, 3))
        assert f["b"].attrs["k"] == 1 and f["g/c"].shape == (3,)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="already holds dataset 'g/a'"):
        add_datasets(path, {"g/a": np.zeros(1)})
    with pytest.raises(ValueError, match="is a group"):
        add_datasets(path, {"g": np.zeros(1)}, overwrite=True)
    with pytest.raises(ValueError, match="'b' is a dataset"):
        add_datasets(path, {"b/x": np.zeros(1)})
    assert path.read_bytes() == before
    add_datasets(path, {"g/a": np.full(4, 7)}, overwrite=True)  # replaces g/a only
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["g/a"][...], np.full(4, 7)) and "unit" not in f["g/a"].attrs
        assert set(f) == {"b", "g"} and set(f["g"]) == {"a", "c", "link"}


def test_a_crash_while_adding_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "v.h5"
    add_datasets(path, {"raw": np.arange(10)})
    before = path.read_bytes()
    with pytest.raises(TypeError):  # h5py cannot store Python objects: fails mid-write
        add_datasets(path, {"new": np.array([object()], dtype=object)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.h5"]  # no temporary file left


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_h5(tmp_path / "a.h5", {"x": np.zeros(2)})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
        os.chmod(path, 0o640)
        write_h5(path, {"x": np.ones(2)}, overwrite=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # a replaced file keeps its mode
    finally:
        os.umask(umask)


def test_damaged_checkpoints_raise_one_error_naming_the_file(tmp_path):
    import torch

    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(100)}, good)
    assert torch.equal(load_torch_checkpoint(good)["w"], torch.arange(100))
    data = good.read_bytes()
    for name, payload in [("empty.pt", b""), ("text.pt", b"garbage\n"), ("half.pt", data[: len(data) // 2])]:
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(CorruptCheckpointError, match=name):
            load_torch_checkpoint(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_torch_checkpoint(tmp_path / "none.pt")
