"""The FFN model and FIB-25 datasets: registry tables, fill-cache, the training_sample2 and
google/ffn result loaders, the restricted unpickler."""

import gzip
import io
import os
import pickle
import zipfile

import h5py
import numpy as np
import pytest
from numpy.lib import format as npy_format

from neurotut.cli import main
from neurotut.data import (
    REGISTRY,
    bodies_from_transforms,
    fetch,
    is_cached,
    load_google_result,
    load_training_sample2,
    read_ffn_npz,
    read_groundtruth,
    read_png_stack,
)
from neurotut.data import download
from neurotut.data.download import file_hash
from neurotut.ffn.storage import OriginInfo

# registry name -> (folder of the local copy, upstream repository, pinned commit, file count)
NEW_DATASETS = {
    "ffn-windows-models": ("ffn_windows_models", "urakubo/ffn_windows",
                           "5c3739e2d3f1d8667c994d9126eafa936c66e02b", 7),
    "google-ffn-fib25": ("google_ffn_fib25", "google/ffn", "6f61f6e4b1ba09208ecd01bc93fc43aa7437d3fa", 4),
    "fib25-training-sample2": ("fib25_training_sample2", "janelia-flyem/neuroproof_examples",
                               "ce839e17deaf4c01153827c6d028dfecfbb4b958", 251),
}


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network used although the cache is complete")

    monkeypatch.setattr(download.pooch, "create", refuse)


# --------------------------------------------------------------------------------------------
# registry


@pytest.mark.parametrize("name", NEW_DATASETS)
def test_registry_table_points_at_the_pinned_upstream_files(name):
    _, repo, commit, count = NEW_DATASETS[name]
    ds = REGISTRY[name]
    assert len(ds.files) == count and len({f.name for f in ds.files}) == count
    prefix = f"https://raw.githubusercontent.com/{repo}/{commit}/"
    for f in ds.files:
        assert f.url.startswith(prefix) and f.url.endswith("/" + f.name), f.url
        assert f.known_hash.startswith("sha256:") and len(f.known_hash) == 7 + 64
    assert ds.licence and ds.attribution and len(ds.voxel_size) == 3


def test_registry_file_sets():
    names = {f.name for f in REGISTRY["ffn-windows-models"].files}
    steps = (2013116, 4000000, 7000000)
    assert names == {"inference.pbtxt"} | {
        f"model.ckpt-{s}.{ext}" for s in steps for ext in ("index", "data-00000-of-00001")
    }
    sample = [f.name for f in REGISTRY["fib25-training-sample2"].files]
    assert sample[:-1] == [f"grayscale_maps/iso.{z}.png" for z in range(2600, 2850)]  # z order
    assert sample[-1] == "groundtruth.h5.gz"
    assert REGISTRY["fib25-training-sample2"].voxel_size == (10.0, 10.0, 10.0)
    assert REGISTRY["ffn-windows-models"].voxel_size == REGISTRY["snemi3d-crop"].voxel_size


@pytest.mark.parametrize("name", NEW_DATASETS)
def test_registry_hashes_match_the_shared_copies(name, shared_data):
    folder = shared_data(NEW_DATASETS[name][0])
    sums = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    ds = REGISTRY[name]
    assert {f.name for f in ds.files} == set(sums)
    for f in ds.files:
        assert f.known_hash == "sha256:" + sums[f.name] == "sha256:" + file_hash(folder / f.name)


# --------------------------------------------------------------------------------------------
# fill-cache and the loaders on the real data


@pytest.mark.parametrize("name", NEW_DATASETS)
def test_fill_cache_command_and_list(name, data_dir, shared_data, capsys):
    folder = shared_data(NEW_DATASETS[name][0])
    assert main(["data", "fill-cache", name, str(folder)]) == 0
    assert f"copied {NEW_DATASETS[name][3]} verified files" in capsys.readouterr().out
    assert is_cached(name)
    assert main(["data", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == set(REGISTRY)
    assert lines[name].split()[3] == "cached"
    assert len({line.index(" files ") for line in lines.values()}) == 1  # one column, long names too


def test_training_sample2_from_the_filled_cache(data_dir, shared_data, monkeypatch):
    folder = shared_data("fib25_training_sample2")
    main(["data", "fill-cache", "fib25-training-sample2", str(folder)])
    _no_network(monkeypatch)
    volume = load_training_sample2(progress=False)
    assert volume.raw.shape == volume.labels.shape == (250, 250, 250)
    assert volume.raw.dtype == np.uint8 and volume.labels.dtype == np.uint32
    assert np.array_equal(volume.raw[[0, 249]], read_png_stack(
        [folder / "grayscale_maps/iso.2600.png", folder / "grayscale_maps/iso.2849.png"]))
    bodies = np.unique(volume.labels)
    assert bodies[0] == 0 and len(bodies) - 1 == 525  # the README's count
    assert (volume.labels == 0).sum() == 250
    assert volume.voxel_size == (10.0, 10.0, 10.0)
    assert volume.name == "fib25-training-sample2" and "FlyEM" in volume.attribution
    # the bodies are the table applied to the supervoxels: one body per supervoxel
    stack, transforms = read_groundtruth(folder / "groundtruth.h5.gz")
    body_of = dict(transforms.tolist())
    for sv in (1, 2, 500, 21316):
        assert set(np.unique(volume.labels[stack == sv]).tolist()) == {body_of[sv]}


def test_google_result_from_the_filled_cache(data_dir, shared_data, monkeypatch):
    main(["data", "fill-cache", "google-ffn-fib25", str(shared_data("google_ffn_fib25"))])
    _no_network(monkeypatch)
    result = load_google_result(progress=False)
    seg = result.segmentation
    assert seg.shape == (250, 250, 250) and seg.dtype == np.uint64
    ids = set(np.unique(seg).tolist()) - {0}
    assert len(ids) == 254 and set(result.origins) == ids
    for sid, info in result.origins.items():
        assert type(info) is OriginInfo and all(type(v) is int for v in info.start_zyx)
        assert type(info.iters) is int and info.iters >= 1 and type(info.walltime_sec) is float
        assert seg[info.start_zyx] == sid  # every segment holds its own seed
    assert result.origins[1] == OriginInfo((16, 18, 109), 1884, pytest.approx(26.2428550720))
    assert result.counters["predict-calls"] == 25799
    assert b"PolicyPeaks" in result.request and len(result.request) == 400


def test_download_of_a_new_dataset_through_a_local_mirror(http_root, data_dir, shared_data):
    root, base, log = http_root
    name = "inference_training_sample2.pbtxt"
    payload = (shared_data("google_ffn_fib25") / name).read_bytes()
    (root / name).write_bytes(payload)
    (path,) = fetch("google-ffn-fib25", files=[name], base_url=base, progress=False)
    assert log == [f"/{name}"]
    assert path == data_dir / "google-ffn-fib25" / name and path.read_bytes() == payload


# --------------------------------------------------------------------------------------------
# ground truth: supervoxels -> bodies


def test_bodies_from_transforms_maps_every_listed_supervoxel():
    stack = np.array([[[0, 1, 2], [3, 7, 7]]], np.int32)
    transforms = np.array([[0, 0], [1, 10], [2, 10], [3, 4], [7, 100], [3, 4]], np.int64)
    out = bodies_from_transforms(stack, transforms)
    assert out.dtype == np.uint32 and out.shape == stack.shape
    assert out.tolist() == [[[0, 10, 10], [4, 100, 100]]]


def test_bodies_from_transforms_unlisted_supervoxels_are_unlabelled():
    stack = np.array([5, 6, 9, 1000], np.int64)
    out = bodies_from_transforms(stack, np.array([[6, 2], [1000, 3]]))
    assert out.tolist() == [0, 2, 0, 3]
    assert bodies_from_transforms(stack, np.zeros((0, 2), np.int64)).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("stack, transforms, error", [
    (np.array([1]), np.array([[1, 2], [1, 3]]), "two bodies"),
    (np.array([-1]), np.array([[1, 2]]), ">= 0"),
    (np.array([1]), np.array([[1, -2]]), ">= 0"),
    (np.array([1]), np.array([1, 2]), r"\(N, 2\)"),
    (np.array([1]), np.array([[1, 2**40]]), "uint32"),
])
def test_bodies_from_transforms_bad_tables(stack, transforms, error):
    with pytest.raises(ValueError, match=error):
        bodies_from_transforms(stack, transforms)


def _gzipped_h5(path, **datasets):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for key, value in datasets.items():
            f[key] = value
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


def test_read_groundtruth_and_its_errors(tmp_path):
    stack = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    transforms = np.stack([np.arange(24), np.arange(24) // 2], axis=1)
    got_stack, got_transforms = read_groundtruth(_gzipped_h5(tmp_path / "gt.h5.gz", stack=stack,
                                                             transforms=transforms))
    assert np.array_equal(got_stack, stack) and np.array_equal(got_transforms, transforms)

    with pytest.raises(FileNotFoundError, match="nope.h5.gz"):
        read_groundtruth(tmp_path / "nope.h5.gz")
    good = (tmp_path / "gt.h5.gz").read_bytes()
    (tmp_path / "cut.h5.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable gzip file"):
        read_groundtruth(tmp_path / "cut.h5.gz")
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"not an HDF5 file"))
    with pytest.raises(ValueError, match="does not hold a readable HDF5 file"):
        read_groundtruth(tmp_path / "text.gz")
    with pytest.raises(ValueError, match="holds no transforms"):
        read_groundtruth(_gzipped_h5(tmp_path / "half.h5.gz", stack=stack))


# --------------------------------------------------------------------------------------------
# google/ffn results: the restricted unpickler


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _pickle_npy(pickled: bytes) -> bytes:
    """A .npy file whose (0-d object) array is the given pickle, as np.save writes one."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buffer.getvalue() + pickled


def _google_origins(origins: dict) -> bytes:
    """Pickle ``origins`` as google/ffn does: a 0-d object array, OriginInfo in its own module."""
    holder = np.empty((), object)
    holder[()] = origins
    pickled = pickle.dumps(holder, protocol=3)
    ours = f"c{OriginInfo.__module__}\nOriginInfo\n".encode()
    assert ours in pickled
    return pickled.replace(ours, b"cffn.inference.storage\nOriginInfo\n")


def _call_pickle(module: str, name: str, argument: str) -> bytes:
    """Protocol-2 opcodes for ``module.name(argument)``."""
    arg = argument.encode()
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + len(arg).to_bytes(4, "little")
            + arg + b"\x85R.")


def _result_npz(path, origins: bytes, **members):
    seg = np.zeros((2, 3, 4), np.uint8)
    seg[0, 1, 2] = 1
    seg[1, 2, 3] = 7
    plain = {"segmentation": seg, "counters": np.array(b'{"predict-calls": 3}'),
             "request": np.array(b"\x08\x01proto\x00")}
    plain.update(members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in plain.items():
            if value is not None:
                zf.writestr(f"{key}.npy", _npy_bytes(value))
        zf.writestr("origins.npy", origins)
    return path


ORIGINS = {1: OriginInfo((np.int64(0), np.int64(1), np.int64(2)), 5, 0.25),
           7: OriginInfo((np.int64(1), np.int64(2), np.int64(3)), 1, 0.5)}


def test_read_ffn_npz_rebuilds_google_origins(tmp_path):
    path = _result_npz(tmp_path / "seg-0_0_0.npz", _pickle_npy(_google_origins(ORIGINS)))
    result = read_ffn_npz(path)
    assert result.origins == {1: OriginInfo((0, 1, 2), 5, 0.25), 7: OriginInfo((1, 2, 3), 1, 0.5)}
    assert all(type(v) is int for info in result.origins.values() for v in info.start_zyx)
    assert result.segmentation.dtype == np.uint64 and result.segmentation[1, 2, 3] == 7
    assert result.counters == {"predict-calls": 3}
    assert result.request == b"\x08\x01proto\x00"  # the trailing NUL is kept


def test_read_ffn_npz_accepts_python3_text_counters(tmp_path):
    path = _result_npz(tmp_path / "r.npz", _pickle_npy(_google_origins(ORIGINS)),
                       counters=np.array('{"predict-calls": 4}'))
    assert read_ffn_npz(path).counters == {"predict-calls": 4}


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("subprocess", "getoutput"),
    ("numpy", "load"), ("neurotut.ffn.storage", "OriginInfo"),
])
def test_a_pickle_naming_another_global_is_refused_without_running(tmp_path, module, name):
    marker = tmp_path / "ran"
    command = f"touch {marker}" if name != "eval" else f"open({str(marker)!r}, 'w')"
    path = _result_npz(tmp_path / "evil.npz", _pickle_npy(_call_pickle(module, name, command)))
    with pytest.raises(pickle.UnpicklingError, match=rf"refused .*{module}\.{name}") as info:
        read_ffn_npz(path)
    assert "evil.npz" in str(info.value)
    assert not marker.exists()


class _RunsACommand:
    """Pickles as a call of os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_forbidden_global_inside_genuine_origins_is_refused_too(tmp_path):
    marker = tmp_path / "ran"
    origins = {**ORIGINS, 99: _RunsACommand(f"touch {marker}")}
    pickled = _google_origins(origins)
    assert b"OriginInfo" in pickled and b"\nsystem\n" in pickled
    with pytest.raises(pickle.UnpicklingError, match=rf"refused .*{os.system.__module__}\.system"):
        read_ffn_npz(_result_npz(tmp_path / "r.npz", _pickle_npy(pickled)))
    assert not marker.exists()


@pytest.mark.parametrize("corrupt, error, message", [
    (lambda b: b[: len(b) // 2], ValueError, "not a readable .npz"),
    (lambda b: b"PK\x03\x04" + bytes(200), ValueError, "not a readable .npz"),
    (lambda b: b"plain text, no zip", ValueError, "not a readable .npz"),
])
def test_corrupted_npz_files(tmp_path, corrupt, error, message):
    good = _result_npz(tmp_path / "good.npz", _pickle_npy(_google_origins(ORIGINS))).read_bytes()
    (tmp_path / "bad.npz").write_bytes(corrupt(good))
    with pytest.raises(error, match=message):
        read_ffn_npz(tmp_path / "bad.npz")


def test_bad_result_contents(tmp_path):
    origins = _pickle_npy(_google_origins(ORIGINS))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_ffn_npz(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="lacks request"):
        read_ffn_npz(_result_npz(tmp_path / "a.npz", origins, request=None))
    with pytest.raises(pickle.UnpicklingError, match="origins"):
        read_ffn_npz(_result_npz(tmp_path / "b.npz", origins[:-40]))  # truncated pickle
    with pytest.raises(ValueError, match="not a pickle"):
        read_ffn_npz(_result_npz(tmp_path / "c.npz", _npy_bytes(np.arange(3))))
    with pytest.raises(ValueError, match="magic"):
        read_ffn_npz(_result_npz(tmp_path / "d.npz", b"garbage"))
    with pytest.raises(ValueError, match="counters"):
        read_ffn_npz(_result_npz(tmp_path / "e.npz", origins, counters=np.array(b"{not json")))
    with pytest.raises(ValueError, match="segmentation"):
        read_ffn_npz(_result_npz(tmp_path / "f.npz", origins, segmentation=np.zeros((3, 4), np.uint8)))
    not_a_dict = np.empty((), object)
    not_a_dict[()] = [1, 2]
    with pytest.raises(ValueError, match="expected a dict"):
        read_ffn_npz(_result_npz(tmp_path / "g.npz", _pickle_npy(pickle.dumps(not_a_dict, protocol=4))))


def test_the_real_result_needs_no_unsafe_global(shared_data):
    """The published file loads with exactly numpy's globals and OriginInfo (and nothing else)."""
    path = shared_data("google_ffn_fib25") / "sample-training2.npz"
    with zipfile.ZipFile(path) as zf:
        data = zf.read("origins.npy")
    assert b"google3.research.neuromancer.segmentation.ffn.storage\nOriginInfo" in data
    assert len(read_ffn_npz(path).origins) == 254
