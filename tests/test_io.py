"""Volume specs, atomic writes, refusing to overwrite."""

from pathlib import Path

import numpy as np
import pytest

from neurotut.io import OutputExistsError, atomic_path, parse_volume_spec, read_volume, write_h5


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
