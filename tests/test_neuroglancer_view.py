"""Neuroglancer on local arrays: the server listens on 127.0.0.1 only and serves the viewer's state,
the web client and each volume's info (no internet); ``neurotut view`` on HDF5 files; bad input."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from neurotut import io, viz
from neurotut.cli import main

neuroglancer = pytest.importorskip("neuroglancer", reason="the neuroglancer package is not installed")

VOXEL = (30.0, 6.0, 6.0)


def _volumes():
    raw = np.random.default_rng(0).integers(0, 255, (8, 32, 40), dtype=np.uint8)
    seg = np.zeros(raw.shape, np.int64)
    seg[:, :16], seg[:, 16:] = 3, 5
    return raw, seg


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read()


def _shared_state(port: int, token: str) -> dict:
    """The first viewer state the server streams to a client (Neuroglancer's event stream)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/events/{token}?c=test&gc=-1&gs=-1")
        response = conn.getresponse()
        assert response.status == 200
        buffer = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            buffer += response.read1(65536)
            for event in buffer.split(b"\n\n"):
                if event.startswith(b"data: "):
                    message = json.loads(event[len(b"data: "):])
                    if message["k"] == "s":
                        return message["s"]
        raise AssertionError("the server sent no viewer state")
    finally:
        conn.close()


@pytest.fixture
def stop_server():
    yield
    neuroglancer.stop()


def test_viewer_serves_state_client_and_info_on_loopback_only(stop_server):
    raw, seg = _volumes()
    viewer = viz.neuroglancer_viewer(raw, {"segmentation": seg}, VOXEL)
    url = viewer.get_viewer_url()
    assert url.startswith("http://127.0.0.1:")
    sockets = neuroglancer.server.global_server.http_server._sockets.values()
    assert {s.getsockname()[0] for s in sockets} == {"127.0.0.1"}
    port = int(url.split(":")[2].split("/")[0])

    assert b"<title>neuroglancer</title>" in _get(url)  # the client the package ships, offline
    state = _shared_state(port, viewer.token)
    assert state["dimensions"] == {"z": [3e-08, "m"], "y": [6e-09, "m"], "x": [6e-09, "m"]}
    assert [(layer["name"], layer["type"]) for layer in state["layers"]] == [
        ("image", "image"), ("segmentation", "segmentation")]
    assert state["position"] == [4.0, 16.0, 20.0]  # the middle of the volume

    infos = []
    for layer in state["layers"]:
        key = layer["source"][0]["url"].rsplit("/", 1)[1]
        infos.append(json.loads(_get(f"http://127.0.0.1:{port}/neuroglancer/info/{key}")))
    assert [(i["dataType"], i["volumeType"], i["shape"]) for i in infos] == [
        ("uint8", "image", [8, 32, 40]), ("uint64", "segmentation", [8, 32, 40])]
    assert infos[0]["coordinateSpace"] == state["dimensions"]


def test_viewer_refuses_bad_layers():
    raw, seg = _volumes()
    with pytest.raises(ValueError, match=r"segmentation has shape \(8, 32, 39\) but image has \(8, 32, 40\)"):
        viz.neuroglancer_viewer(raw, {"segmentation": seg[..., :39]}, VOXEL)
    with pytest.raises(ValueError, match="nothing to show"):
        viz.neuroglancer_viewer(None, {}, VOXEL)
    with pytest.raises(ValueError, match="negative ids"):
        viz.neuroglancer_viewer(raw, {"s": seg - 4}, VOXEL)
    with pytest.raises(TypeError, match="integer ids"):
        viz.neuroglancer_viewer(raw, {"s": seg.astype(float)}, VOXEL)
    with pytest.raises(ValueError, match="voxel_size"):
        viz.neuroglancer_viewer(raw, {}, (30.0, 6.0))


def _write(tmp_path):
    raw, seg = _volumes()
    io.write_h5(tmp_path / "img.h5", {"raw": raw})
    io.write_h5(tmp_path / "seg.h5", {"segmentation": seg.astype(np.uint32), "small": seg[:4].astype(np.uint32)})
    return tmp_path / "img.h5", tmp_path / "seg.h5"


def test_view_command_serves_the_files_until_interrupted(tmp_path):
    img, seg = _write(tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurotut", "view", f"{img}:raw", f"{seg}:segmentation", "--voxel-size", "40", "4", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Neuroglancer: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(": ", 1)[1].strip()
        assert "voxel size 40 x 4 x 4 nm" in proc.stdout.readline()
        assert "127.0.0.1 only" in proc.stdout.readline()
        port, token = int(url.split(":")[2].split("/")[0]), url.rstrip("/").rsplit("/", 1)[1]
        state = _shared_state(port, token)
        assert state["dimensions"]["z"] == [4e-08, "m"]
        assert [layer["name"] for layer in state["layers"]] == ["img:raw", "seg:segmentation"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out


@pytest.mark.parametrize("args, message", [
    (["{img}:raw", "{seg}:small"], r"has shape \(4, 32, 40\) but .*img\.h5:raw has \(8, 32, 40\)"),
    (["{img}:raw", "{seg}:labels"], r"has no dataset 'labels'; it holds \['segmentation', 'small'\]"),
    (["{img}:nope"], r"has no dataset 'nope'"),
    (["{tmp}/missing.h5:raw"], r"no such HDF5 file"),
    (["{seg}:segmentation"], r"holds uint32; expected uint8 or float images"),
    (["{img}:raw", "--voxel-size", "30", "-1", "6"], r"voxel_size must be three positive numbers"),
])
def test_view_command_bad_input_is_one_line(tmp_path, capsys, args, message):
    img, seg = _write(tmp_path)
    argv = ["view"] + [a.format(img=img, seg=seg, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neurotut view: error: ")
    import re

    assert re.search(message, err), err
