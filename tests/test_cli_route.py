"""The affinity route from the shell on a user's own volume, and clear one-line errors.

``data png-to-h5`` (raw and labels into one file) -> ``train`` -> ``predict`` -> ``segment`` ->
``evaluate --json``, then every subcommand once with each kind of bad input.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from neurotut.affinity import SUPERHUMAN_OFFSETS
from neurotut.cli import main
from neurotut.data import make_synthetic, write_png_stack

SHAPE = (10, 48, 48)
WINDOW = ("8", "48", "48")  # two windows along z: blending is exercised, the run stays short
EVALUATE_KEYS = {
    "arand", "rand_precision", "rand_recall", "voi_split", "voi_merge", "voi",
    "boundary_accuracy", "boundary_baseline_accuracy", "boundary_fraction", "boundary_precision",
    "boundary_recall", "boundary_f1", "boundary_tolerance", "n_predicted", "n_true",
    "segmentation", "labels", "shape",
}


def _ok(argv: list[str]) -> None:
    assert main(argv) == 0, argv


@pytest.fixture(scope="module")
def route(tmp_path_factory):
    """Run the whole chain once on a synthetic volume written as PNG slices."""
    root = tmp_path_factory.mktemp("route")
    raw, labels, _ = make_synthetic(SHAPE, seed=0)
    write_png_stack(raw, root / "png" / "raw")
    write_png_stack(labels.astype(np.uint16), root / "png" / "labels")
    vol = root / "vol.h5"
    _ok(["data", "png-to-h5", str(root / "png" / "raw"), f"{vol}:raw", "--quiet"])
    _ok(["data", "png-to-h5", str(root / "png" / "labels"), f"{vol}:labels", "--kind", "labels",
         "--quiet"])
    torch.manual_seed(0)
    _ok(["train", "--raw", f"{vol}:raw", "--labels", f"{vol}:labels", "--out", str(root / "run"),
         "--widths", "4", "6", "8", "--patch", "4", "16", "16", "--steps", "3", "--batch-size", "1",
         "--val-every", "0", "--checkpoint-every", "0", "--no-augment", "--device", "cpu",
         "--quiet"])
    _ok(["predict", "--checkpoint", str(root / "run" / "last.pt"), "--raw", f"{vol}:raw",
         "--output", f"{root / 'affs.h5'}:affinities", "--device", "cpu", "--window", *WINDOW, "--quiet"])
    _ok(["segment", f"{root / 'affs.h5'}:affinities", f"{root / 'seg.h5'}:segmentation",
         "--thresholds", "0.3", "0.5", "--fill", "--voxel-size", "30", "6", "6", "--quiet"])
    _ok(["segment", f"{root / 'affs.h5'}:affinities", f"{root / 'seg.h5'}:single",
         "--threshold", "0.5", "--quiet"])
    _ok(["evaluate", f"{root / 'seg.h5'}:segmentation_0.50", f"{vol}:labels",
         "--json", str(root / "scores.json")])
    return root, raw, labels


def test_png_to_h5_puts_raw_and_labels_into_one_file(route):
    root, raw, labels = route
    with h5py.File(root / "vol.h5", "r") as f:
        assert sorted(f) == ["labels", "raw"]
        assert f["raw"].dtype == np.uint8 and np.array_equal(f["raw"][...], raw)
        assert f["labels"].dtype == np.uint32 and np.array_equal(f["labels"][...], labels)


def test_predict_writes_affinities_with_their_offsets(route):
    root, raw, _ = route
    with h5py.File(root / "affs.h5", "r") as f:
        affs = f["affinities"]
        assert affs.shape == (12,) + SHAPE and affs.dtype == np.float32
        values = affs[...]
        assert 0.0 <= values.min() and values.max() <= 1.0
        assert [tuple(o) for o in affs.attrs["offsets"]] == list(SUPERHUMAN_OFFSETS)
        assert affs.attrs["tta"] == 1


def test_predict_with_tta_is_the_library_mean(route):
    """`neurotut predict --tta 4` writes what predict_volume(tta=4) computes with the same model."""
    from neurotut.inference import predict_volume
    from neurotut.train import load_model

    root, raw, _ = route
    out = root / "affs_tta.h5"
    _ok(["predict", "--checkpoint", str(root / "run" / "last.pt"), "--raw", f"{root / 'vol.h5'}:raw",
         "--output", f"{out}:affinities", "--device", "cpu", "--tta", "4", "--window", *WINDOW,
         "--quiet"])
    model, cfg = load_model(root / "run" / "last.pt", device="cpu")
    window = tuple(int(w) for w in WINDOW)
    want = predict_volume(model, raw, window, tta=4, offsets=cfg.offsets, progress=False)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["affinities"][...], want, rtol=1e-5, atol=1e-6)
        assert f["affinities"].attrs["tta"] == 4


def test_segment_writes_one_dataset_per_threshold(route):
    root, _, _ = route
    with h5py.File(root / "seg.h5", "r") as f:
        assert sorted(f) == ["segmentation_0.30", "segmentation_0.50", "single"]
        counts = {}
        for name in ("segmentation_0.30", "segmentation_0.50"):
            seg = f[name][...]
            assert seg.shape == SHAPE and seg.dtype == np.uint32
            assert seg.min() > 0  # --fill: no unassigned voxel left
            assert f[name].attrs["filled"] and list(f[name].attrs["voxel_size"]) == [30, 6, 6]
            counts[name] = np.unique(seg).size
        assert f["segmentation_0.50"].attrs["threshold"] == 0.5
        # one agglomeration pass: a higher threshold only merges more
        assert counts["segmentation_0.50"] <= counts["segmentation_0.30"]
        single = f["single"][...]
        assert not f["single"].attrs["filled"]
        # the same agglomeration without filling: equal wherever the filled one was not filled
        filled = f["segmentation_0.50"][...]
        assigned = single != 0
        assert np.array_equal(single[assigned], filled[assigned])


def test_evaluate_json_holds_every_score(route):
    root, _, labels = route
    report = json.loads((root / "scores.json").read_text())
    assert set(report) == EVALUATE_KEYS
    assert 0.0 <= report["arand"] <= 1.0
    assert report["voi_split"] >= 0 and report["voi_merge"] >= 0
    assert report["n_true"] == np.unique(labels[labels != 0]).size
    with h5py.File(root / "seg.h5", "r") as f:
        assert report["n_predicted"] == np.unique(f["segmentation_0.50"][...]).size
    assert report["boundary_baseline_accuracy"] == pytest.approx(1 - report["boundary_fraction"])
    assert report["shape"] == list(SHAPE)


def test_evaluate_labels_against_themselves_is_perfect(route, tmp_path, capsys):
    root, _, labels = route
    out = tmp_path / "self.json"
    vol = root / "vol.h5"
    assert main(["evaluate", f"{vol}:labels", f"{vol}:labels", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "ARAND (SNEMI3D)" in table and "no-boundary baseline" in table
    report = json.loads(out.read_text())
    assert report["arand"] == 0.0 and report["voi_split"] == 0.0 and report["voi_merge"] == 0.0
    assert report["boundary_accuracy"] == 1.0 and report["n_predicted"] == report["n_true"]
    # the JSON is never replaced silently
    assert main(["evaluate", f"{vol}:labels", f"{vol}:labels", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    out.write_text("old")
    assert main(["evaluate", f"{vol}:labels", f"{vol}:labels", "--json", str(out),
                 "--overwrite"]) == 0
    assert json.loads(out.read_text())["arand"] == 0.0


def test_png_to_h5_adds_and_replaces_one_dataset_only(route, tmp_path, capsys):
    root, raw, labels = route
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:  # a user's file with a group, attributes and a dataset
        f.attrs["note"] = "mine"
        f.create_dataset("meta/mask", data=np.ones(SHAPE, np.uint8))
        f["meta"].attrs["kept"] = 1
    png = str(root / "png" / "raw")
    assert main(["data", "png-to-h5", png, f"{path}:raw", "--quiet"]) == 0
    before = path.read_bytes()
    assert main(["data", "png-to-h5", png, f"{path}:raw", "--quiet"]) == 2
    assert "already holds dataset 'raw'" in capsys.readouterr().err
    assert path.read_bytes() == before  # refused: untouched
    labels_png = str(root / "png" / "labels")
    assert main(["data", "png-to-h5", labels_png, f"{path}:raw", "--kind", "labels", "--quiet",
                 "--overwrite"]) == 0
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["raw"][...], labels)  # replaced
        assert f.attrs["note"] == "mine" and f["meta"].attrs["kept"] == 1
        assert np.array_equal(f["meta/mask"][...], np.ones(SHAPE, np.uint8))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------
# bad input: every subcommand, each kind once


@pytest.fixture(scope="module")
def bad(route, tmp_path_factory):
    """Paths of bad inputs, for str.format in the cases below."""
    root, raw, labels = route
    d = tmp_path_factory.mktemp("bad")
    with h5py.File(d / "bad.h5", "w") as f:
        f["float3d"] = np.random.default_rng(0).random(SHAPE).astype(np.float32)
        f["int32"] = np.zeros(SHAPE, np.int32)
        f["flat"] = np.zeros(SHAPE[1:], np.uint8)
        f["small"] = np.ones((SHAPE[0], 40, SHAPE[2]), np.uint32)
        f["empty"] = np.zeros(SHAPE, np.uint32)
        f["affs_no_offsets"] = np.full((3,) + SHAPE, 0.5, np.float32)
        nn = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        f.create_dataset("affs_uint8", data=np.zeros((3,) + SHAPE, np.uint8)).attrs["offsets"] = nn
        f.create_dataset("affs_big", data=np.full((3,) + SHAPE, 2, np.float32)).attrs["offsets"] = nn
    (d / "not_hdf5.h5").write_text("not HDF5\n")
    (d / "corrupt.pt").write_bytes(b"garbage\n")
    whole = (root / "run" / "last.pt").read_bytes()
    (d / "truncated.pt").write_bytes(whole[: len(whole) // 3])
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    (d / "resume").mkdir()
    (d / "resume" / "last.pt").write_bytes(b"garbage\n")
    rgb = d / "rgb"
    rgb.mkdir()
    iio.imwrite(rgb / "0000.png", np.zeros((8, 8, 3), np.uint8))
    mixed = d / "mixed"
    mixed.mkdir()
    iio.imwrite(mixed / "0000.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(mixed / "0001.png", np.zeros((8, 9), np.uint8))
    # FFN inputs: partitions, coordinates, a run folder with a corrupt checkpoint, requests
    vol = root / "vol.h5"
    _ok(["ffn", "partitions", "--input_volume", f"{vol}:labels", "--output_volume",
         f"{d / 'af.h5'}:af", "--lom_radius", "2,2,1", "--min_size", "10", "--quiet"])
    _ok(["ffn", "coordinates", "--partition_volumes", f"train:{d / 'af.h5'}:af",
         "--coordinate_output", str(d / "coords.h5"), "--margin", "1,2,2", "--quiet"])
    (d / "ffn_run").mkdir()
    (d / "ffn_run" / "model.ckpt-5.pt").write_bytes(b"garbage\n")
    for name, image, ckpt in [("req_corrupt", f"{vol}:raw", d / "corrupt.pt"),
                              ("req_no_image", f"{d}/none.h5:raw", d / "corrupt.pt"),
                              ("req_no_ckpt", f"{vol}:raw", d / "none.pt")]:
        (d / f"{name}.yml").write_text(
            f"image: {image}\nimage_mean: 128\nimage_stddev: 33\nmodel_checkpoint_path: {ckpt}\n"
            f"segmentation_output_dir: {d / 'ffn_out'}\n"
        )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    return {"d": d, "vol": vol, "root": root, "ckpt": root / "run" / "last.pt",
            "affs": root / "affs.h5", "seg": root / "seg.h5", "json": root / "scores.json",
            "png": root / "png" / "raw", "closed": closed_port}


TRAIN = ("--out {d}/run_new --widths 4 6 8 --patch 4 16 16 --steps 1 --batch-size 1 "
         "--val-every 0 --no-augment --device cpu --quiet")
PREDICT = "--output {d}/new_affs.h5 --device cpu --quiet"
FFN_TRAIN = ("--model_args {{\"depth\":1,\"fov_size\":[9,9,5],\"deltas\":[2,2,1]}} --max_steps 1 "
             "--batch_size 1 --device cpu --quiet --image_mean 128 --image_stddev 33")
FFN_DATA = "--data_volumes train:{vol}:raw --label_volumes train:{vol}:labels"

CASES = [
    # data png-to-h5
    ("png missing source", "data png-to-h5 {d}/none {d}/o.h5:raw --quiet", "does not exist"),
    ("png wrong shape", "data png-to-h5 {d}/rgb {d}/o.h5:raw --quiet", "2D greyscale"),
    ("png mixed shapes", "data png-to-h5 {d}/mixed {d}/o.h5:raw --quiet", "same size"),
    ("png existing dataset", "data png-to-h5 {png} {vol}:raw --quiet", "already holds dataset 'raw'"),
    ("png output not hdf5", "data png-to-h5 {png} {d}/not_hdf5.h5:raw --quiet", "not a readable HDF5"),
    ("png output no dataset", "data png-to-h5 {png} {d}/out.txt --quiet", "file.h5:dataset"),
    # data mean-std
    ("mean-std missing file", "data mean-std {d}/none.h5:raw", "no such HDF5 file"),
    ("mean-std missing dataset", "data mean-std {vol}:nope", "no dataset 'nope'"),
    ("mean-std not hdf5", "data mean-std {d}/not_hdf5.h5:raw", "not a readable HDF5"),
    # data fill-cache
    ("fill-cache missing folder", "data fill-cache snemi3d-crop {d}/none --quiet", "not a folder"),
    ("fill-cache wrong folder", "data fill-cache snemi3d-crop {d}/rgb --quiet", "is missing"),
    # data fetch without internet
    ("fetch closed port", "data fetch snemi3d --base-url http://127.0.0.1:{closed}/ --retries 0 --quiet",
     "cannot reach 127.0.0.1:{closed}"),
    ("fetch unresolvable", "data fetch snemi3d --base-url http://nonexistent.invalid/ --quiet",
     "cannot reach nonexistent.invalid"),
    # train
    ("train missing file", "train --raw {d}/none.h5:raw --labels {vol}:labels " + TRAIN, "no such HDF5 file"),
    ("train missing dataset", "train --raw {vol}:nope --labels {vol}:labels " + TRAIN, "no dataset 'nope'"),
    ("train shape mismatch", "train --raw {vol}:raw --labels {d}/bad.h5:small " + TRAIN, "differ in shape"),
    ("train float labels", "train --raw {vol}:raw --labels {d}/bad.h5:float3d " + TRAIN, "expected integer"),
    ("train int32 raw", "train --raw {d}/bad.h5:int32 --labels {vol}:labels " + TRAIN, "expected uint8"),
    ("train 2d raw", "train --raw {d}/bad.h5:flat --labels {vol}:labels " + TRAIN, "expected (Z, Y, X)"),
    ("train existing run", "train --raw {vol}:raw --labels {vol}:labels --out {root}/run --device cpu --quiet",
     "already holds a training run"),
    ("train corrupt resume", "train --raw {vol}:raw --labels {vol}:labels --out {d}/resume --resume --quiet",
     "cannot read the training checkpoint"),
    # predict
    ("predict missing checkpoint", "predict --checkpoint {d}/none.pt --raw {vol}:raw " + PREDICT,
     "no training checkpoint"),
    ("predict corrupt checkpoint", "predict --checkpoint {d}/corrupt.pt --raw {vol}:raw " + PREDICT,
     "cannot read the training checkpoint"),
    ("predict truncated checkpoint", "predict --checkpoint {d}/truncated.pt --raw {vol}:raw " + PREDICT,
     "truncated"),
    ("predict foreign checkpoint", "predict --checkpoint {d}/foreign.pt --raw {vol}:raw " + PREDICT,
     "not a neurotut training checkpoint"),
    ("predict missing raw", "predict --checkpoint {ckpt} --raw {d}/none.h5:raw " + PREDICT, "no such HDF5 file"),
    ("predict missing dataset", "predict --checkpoint {ckpt} --raw {vol}:nope " + PREDICT, "no dataset 'nope'"),
    ("predict int32 raw", "predict --checkpoint {ckpt} --raw {d}/bad.h5:int32 " + PREDICT, "expected uint8"),
    ("predict 2d raw", "predict --checkpoint {ckpt} --raw {d}/bad.h5:flat " + PREDICT, "expected (Z, Y, X)"),
    ("predict existing output", "predict --checkpoint {ckpt} --raw {vol}:raw --output {affs} --quiet",
     "already exists"),
    # segment
    ("segment missing file", "segment {d}/none.h5 {d}/s.h5", "no such HDF5 file"),
    ("segment missing dataset", "segment {affs}:nope {d}/s.h5", "no dataset 'nope'"),
    ("segment no offsets", "segment {d}/bad.h5:affs_no_offsets {d}/s.h5", "no 'offsets' attribute"),
    ("segment 3d input", "segment {d}/bad.h5:float3d {d}/s.h5", "expected (C, Z, Y, X)"),
    ("segment uint8", "segment {d}/bad.h5:affs_uint8 {d}/s.h5", "divide by 255"),
    ("segment outside [0, 1]", "segment {d}/bad.h5:affs_big {d}/s.h5", "must lie in [0, 1]"),
    ("segment threshold", "segment {affs} {d}/s.h5 --threshold 1.5", "thresholds must lie in [0, 1]"),
    ("segment existing dataset", "segment {affs} {seg}:single", "already holds dataset 'single'"),
    ("segment existing datasets", "segment {affs} {seg}:segmentation --thresholds 0.3 0.4",
     "already holds dataset 'segmentation_0.30'"),
    ("segment output not hdf5", "segment {affs} {d}/not_hdf5.h5:s", "not a readable HDF5"),
    # evaluate
    ("evaluate missing file", "evaluate {d}/none.h5:s {vol}:labels", "no such HDF5 file"),
    ("evaluate missing dataset", "evaluate {seg}:nope {vol}:labels", "no dataset 'nope'"),
    ("evaluate shape mismatch", "evaluate {seg}:single {d}/bad.h5:small", "has shape (10, 48, 48) but"),
    ("evaluate float", "evaluate {d}/bad.h5:float3d {vol}:labels", "expected integer labels"),
    ("evaluate 4d", "evaluate {affs}:affinities {vol}:labels", "expected (Z, Y, X)"),
    ("evaluate empty labels", "evaluate {seg}:single {d}/bad.h5:empty", "all 0"),
    ("evaluate existing json", "evaluate {seg}:single {vol}:labels --json {json}", "already exists"),
    # ffn partitions
    ("partitions missing file", "ffn partitions --input_volume {d}/none.h5:l --output_volume {d}/p.h5:af "
     "--lom_radius 2,2,1 --quiet", "no such HDF5 file"),
    ("partitions missing dataset", "ffn partitions --input_volume {vol}:nope --output_volume {d}/p.h5:af "
     "--lom_radius 2,2,1 --quiet", "no dataset 'nope'"),
    ("partitions float labels", "ffn partitions --input_volume {d}/bad.h5:float3d --output_volume "
     "{d}/p.h5:af --lom_radius 2,2,1 --quiet", "integer dtype"),
    ("partitions existing output", "ffn partitions --input_volume {vol}:labels --output_volume "
     "{d}/af.h5:af --lom_radius 2,2,1 --quiet", "already exists"),
    # ffn coordinates
    ("coordinates missing file", "ffn coordinates --partition_volumes train:{d}/none.h5:af "
     "--coordinate_output {d}/c.h5 --margin 1,2,2 --quiet", "no such HDF5 file"),
    ("coordinates missing dataset", "ffn coordinates --partition_volumes train:{d}/af.h5:nope "
     "--coordinate_output {d}/c.h5 --margin 1,2,2 --quiet", "no dataset 'nope'"),
    ("coordinates existing output", "ffn coordinates --partition_volumes train:{d}/af.h5:af "
     "--coordinate_output {d}/coords.h5 --margin 1,2,2 --quiet", "already exists"),
    # ffn train
    ("ffn train missing coords", "ffn train --train_coords {d}/none.h5 " + FFN_DATA
     + " --train_dir {d}/ffn_new " + FFN_TRAIN, "no such coordinate file"),
    ("ffn train coords not hdf5", "ffn train --train_coords {d}/not_hdf5.h5 " + FFN_DATA
     + " --train_dir {d}/ffn_new " + FFN_TRAIN, "not a readable HDF5"),
    ("ffn train missing dataset", "ffn train --train_coords {d}/coords.h5 --data_volumes "
     "train:{vol}:nope --label_volumes train:{vol}:labels --train_dir {d}/ffn_new " + FFN_TRAIN,
     "no dataset 'nope'"),
    ("ffn train shape mismatch", "ffn train --train_coords {d}/coords.h5 --data_volumes "
     "train:{vol}:raw --label_volumes train:{d}/bad.h5:small --train_dir {d}/ffn_new " + FFN_TRAIN,
     "differ in shape"),
    ("ffn train corrupt checkpoint", "ffn train --train_coords {d}/coords.h5 " + FFN_DATA
     + " --train_dir {d}/ffn_run " + FFN_TRAIN, "cannot read the FFN checkpoint"),
    # ffn inference
    ("ffn inference missing request", "ffn inference --inference_request {d}/none.yml --quiet",
     "no such inference request"),
    ("ffn inference corrupt checkpoint", "ffn inference --inference_request {d}/req_corrupt.yml "
     "--device cpu --quiet", "cannot read the FFN checkpoint"),
    ("ffn inference missing checkpoint", "ffn inference --inference_request {d}/req_no_ckpt.yml "
     "--device cpu --quiet", "no such checkpoint"),
    ("ffn inference missing image", "ffn inference --inference_request {d}/req_no_image.yml "
     "--device cpu --quiet", "no such HDF5 file"),
    # usage errors are one line too
    ("doctor bad profile", "doctor --profile nope", "invalid choice"),
    ("segment no arguments", "segment", "the following arguments are required"),
]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return exc.code


@pytest.mark.parametrize("case, command, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_a_non_zero_exit(bad, data_dir, capsys, case, command, expected):
    argv = command.format(**bad).split()
    rc = _run(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc not in (0, None), case
    assert "Traceback" not in captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("neurotut "), lines[0]
    assert expected.format(**bad) in lines[0], lines[0]
    if command.startswith("data fetch"):  # says how to do without the network
        assert lines[0].endswith("neurotut data fill-cache snemi3d FOLDER")


def test_unusable_data_folder_is_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("NEUROTUT_DATA_DIR", str(blocker))
    assert main(["data", "list"]) == 2
    assert "NEUROTUT_DATA_DIR" in capsys.readouterr().err


def test_the_real_command_prints_one_line_or_with_neurotut_debug_the_traceback(bad):
    argv = [sys.executable, "-m", "neurotut", "predict", "--checkpoint", str(bad["d"] / "corrupt.pt"),
            "--raw", f"{bad['vol']}:raw", "--output", str(bad["d"] / "x.h5"), "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k != "NEUROTUT_DEBUG"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"neurotut predict: error: cannot read the training checkpoint {bad['d'] / 'corrupt.pt'}: the "
        "file is truncated, damaged or not a PyTorch checkpoint (torch.load raised "
        "UnpicklingError); use another copy or train again"
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env={**env, "NEUROTUT_DEBUG": "1"},
                          timeout=300)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "CorruptCheckpointError" in done.stderr
