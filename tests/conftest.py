"""Shared fixtures: an isolated data dir, a local HTTP server, the real crop when available."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

SHARED_DATA_ENV = "NEUROTUT_SHARED_DATA"


def shared_data_dir() -> Path:
    """The local copies of the public data: ``$NEUROTUT_SHARED_DATA``, else ``../shared/data``."""
    if os.environ.get(SHARED_DATA_ENV):
        return Path(os.environ[SHARED_DATA_ENV])
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh, empty NEUROTUT_DATA_DIR for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("NEUROTUT_DATA_DIR", str(path))
    return path


@pytest.fixture
def http_root(tmp_path):
    """Serve a folder over HTTP on 127.0.0.1; yields (folder, base_url, request_log)."""
    root = tmp_path / "www"
    root.mkdir()
    log: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean; remember paths served
            pass

        def do_GET(self):
            log.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def shared_data():
    """``shared_data(folder)``: a folder of the local data copies (a filled download cache), or a skip."""

    def folder(name: str) -> Path:
        path = shared_data_dir() / name
        if not path.is_dir():
            pytest.skip(f"no local copy of {name} at {path} (set {SHARED_DATA_ENV})")
        return path

    return folder


@pytest.fixture
def shared_crop(shared_data) -> Path:
    """The local copy of the crop's files, or a skip."""
    return shared_data("snemi3d_ffn_windows")


@pytest.fixture(scope="session")
def real_crop():
    """The real SNEMI3D crop (raw, labels, voxel size), or a skip saying why it is unavailable.

    Uses the user's cache (NEUROTUT_DATA_DIR) and fetches into it when needed.
    """
    from neurotut.data import load_snemi3d_crop

    try:
        return load_snemi3d_crop(progress=False)
    except (OSError, ValueError) as exc:
        pytest.skip(f"real SNEMI3D crop unavailable (cache empty and download failed: {exc})")


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread: tiny convolutions are fastest that way, and immune to a busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
