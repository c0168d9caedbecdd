"""The download code path against a real HTTP server on 127.0.0.1."""

import hashlib
import shutil

import pytest

from neurotut.data import REGISTRY, ChecksumError, RemoteFile, fetch, fetch_files, fill_cache, is_cached
from neurotut.data import download


def _entry(root, name, payload: bytes, base_url: str) -> RemoteFile:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return RemoteFile(name, "sha256:" + hashlib.sha256(payload).hexdigest(), f"{base_url}/{name}")


def test_every_registry_file_has_a_checksum_and_url():
    assert set(REGISTRY) >= {"snemi3d-crop", "snemi3d"}
    for ds in REGISTRY.values():
        assert ds.files, ds.name
        for f in ds.files:
            algorithm, _, digest = f.known_hash.partition(":")
            assert algorithm in ("sha256", "md5")
            assert len(digest) == {"sha256": 64, "md5": 32}[algorithm]
            int(digest, 16)
            assert f.url.startswith("https://")
    crop = REGISTRY["snemi3d-crop"]
    assert len(crop.files) == 200
    assert {f.name.split("/")[0] for f in crop.files} == {"images", "segment"}


def test_fetch_downloads_verifies_and_then_stays_offline(http_root, tmp_path):
    root, base, log = http_root
    files = [_entry(root, f"d/{i}.bin", bytes([i]) * (1000 + i), base) for i in range(3)]
    dest = tmp_path / "dest"
    paths = fetch_files(files, dest, progress=False)
    assert [p.read_bytes() for p in paths] == [bytes([i]) * (1000 + i) for i in range(3)]
    assert len(log) == 3
    fetch_files(files, dest, progress=False)  # complete cache: no request at all
    assert len(log) == 3
    assert not list(dest.rglob("*.tmp")) and not list(dest.rglob("tmp*"))


def test_corrupted_download_is_rejected_with_both_hashes(http_root, tmp_path):
    root, base, _ = http_root
    good = _entry(root, "a.bin", b"the real bytes", base)
    (root / "a.bin").write_bytes(b"something else")  # the server now serves a different file
    actual = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumError) as info:
        fetch_files([good], tmp_path / "dest", progress=False, retries=0)
    message = str(info.value)
    assert "a.bin" in message and good.known_hash in message and actual in message
    assert not (tmp_path / "dest" / "a.bin").exists()  # nothing unverified left in the cache


def test_truncated_cached_file_is_fetched_again(http_root, tmp_path):
    root, base, log = http_root
    entry = _entry(root, "big.bin", bytes(range(256)) * 400, base)
    dest = tmp_path / "dest"
    (path,) = fetch_files([entry], dest, progress=False)
    path.write_bytes(path.read_bytes()[:1000])  # an interrupted earlier download
    (path,) = fetch_files([entry], dest, progress=False)
    assert path.read_bytes() == bytes(range(256)) * 400
    assert len(log) == 2


def test_registered_dataset_through_a_local_mirror(http_root, data_dir, shared_crop):
    """The real registry code path (fetch by name) against a mirror holding the real files."""
    root, base, log = http_root
    names = ["images/0000.png", "segment/0007.png"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_crop / name, root / name)
    paths = fetch("snemi3d-crop", files=names, base_url=base, progress=False)
    assert sorted(log) == ["/images/0000.png", "/segment/0007.png"]
    assert [p.relative_to(data_dir / "snemi3d-crop").as_posix() for p in paths] == names


def test_fill_cache_copies_verified_files_only(tmp_path, data_dir):
    source = tmp_path / "usb"
    ds = REGISTRY["snemi3d-crop"]
    first = ds.files[0]
    (source / first.name).parent.mkdir(parents=True)
    (source / first.name).write_bytes(b"not the png")
    with pytest.raises(ChecksumError, match=first.known_hash):
        fill_cache("snemi3d-crop", source, progress=False)
    assert not (data_dir / "snemi3d-crop" / first.name).exists()
    with pytest.raises(FileNotFoundError):
        fill_cache("snemi3d-crop", tmp_path / "nowhere", progress=False)


def test_fill_cache_from_the_shared_copy_needs_no_network(data_dir, monkeypatch, shared_crop):
    assert fill_cache("snemi3d-crop", shared_crop, progress=False) == 200
    assert is_cached("snemi3d-crop")

    def no_network(*args, **kwargs):
        raise AssertionError("network used although the cache is complete")

    monkeypatch.setattr(download.pooch, "create", no_network)
    assert len(fetch("snemi3d-crop", progress=False)) == 200
    assert fill_cache("snemi3d-crop", shared_crop, progress=False) == 0


def test_unknown_dataset_names_the_known_ones(data_dir):
    with pytest.raises(KeyError, match="snemi3d-crop"):
        fetch("snemi4d")
