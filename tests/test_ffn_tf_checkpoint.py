"""google/ffn's TensorFlow checkpoints without TensorFlow: the reader, the mapping onto
ConvStack3DFFN (equal to TensorFlow's own logits), ``neurotut ffn convert`` and inference from a
TensorFlow prefix, and every kind of bad input on modified copies.

The checkpoints and TensorFlow's reference outputs are public files (see each folder's README);
:func:`ffn_checkpoint_dir` finds them and skips when they are not on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from neurotut.cli import main
from neurotut.ffn.model import count_parameters
from neurotut.ffn.tf_checkpoint import (
    TABLE_MAGIC,
    CheckpointError,
    checkpoint_prefix,
    list_variables,
    masked_crc32c,
    read_checkpoint,
    read_index,
)
from neurotut.ffn.checkpoints import convert_checkpoint
from neurotut.ffn.tf_model import ffn_from_tf_checkpoint

SNEMI3D_ARGS = '{"depth": 9, "fov_size": [33, 33, 17], "deltas": [8, 8, 4]}'
FIB25_ARGS = '{"depth": 12, "fov_size": [33, 33, 33], "deltas": [8, 8, 8]}'
#: reference case -> (data folder, checkpoint, model_args)
CASES = {
    "snemi3d_7M_fov": ("ffn_windows_models", "model.ckpt-7000000", SNEMI3D_ARGS),
    "snemi3d_7M_large": ("ffn_windows_models", "model.ckpt-7000000", SNEMI3D_ARGS),
    "fib25_fov": ("google_ffn_fib25", "model.ckpt-27465036", FIB25_ARGS),
}


def ffn_checkpoint_dir(name: str) -> Path:
    """The folder of a public FFN data set (``ffn_windows_models``, ``google_ffn_fib25``,
    ``ffn_reference``): under ``$NEUROTUT_SHARED_DATA``, else the project's shared ``data``
    folder beside a parent of this checkout; skips when neither has it."""
    if os.environ.get("NEUROTUT_SHARED_DATA"):
        roots = [Path(os.environ["NEUROTUT_SHARED_DATA"])]
    else:
        roots = [p / "shared" / "data" for p in Path(__file__).resolve().parents]
    for root in roots:
        if (root / name).is_dir():
            return root / name
    pytest.skip(f"{name} not found (set NEUROTUT_SHARED_DATA to the folder holding it)")


def prefix_of(case: str) -> Path:
    folder, ckpt, _ = CASES[case]
    return ffn_checkpoint_dir(folder) / ckpt


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(ffn_checkpoint_dir("ffn_reference") / "tensorflow_forward.npz"))


@pytest.fixture(scope="module")
def snemi3d_7m():
    return prefix_of("snemi3d_7M_fov")


def forward(model, ndhwc: np.ndarray) -> np.ndarray:
    """Run the network on TensorFlow's (1, Z, Y, X, 2) input; returns (1, Z, Y, X, 1) logits."""
    x = torch.from_numpy(ndhwc).permute(0, 4, 1, 2, 3)  # -> (N, C, Z, Y, X)
    with torch.no_grad():
        out = model(x[:, :1].contiguous(), x[:, 1:].contiguous())
    return out.permute(0, 2, 3, 4, 1).numpy()


# ---------------------------------------------------------------------------------------------
# a small tensor-bundle writer, to make modified copies (dropped layers, other dtypes, Snappy
# blocks, several blocks and shards) of the real checkpoints


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes, fixed32: bool = False) -> bytes:
    if fixed32:
        return _varint(number << 3 | 5) + struct.pack("<I", value)
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(items: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(items):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(last), len(key)) and last[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        last = key
    restarts = restarts or [0]
    return bytes(out + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts)))


def _write_table(path: Path, items: list[tuple[bytes, bytes]], block_entries: int, snappy: bool) -> None:
    data = bytearray()

    def put(contents: bytes) -> bytes:
        kind = 0
        if snappy:
            import cramjam

            contents, kind = bytes(cramjam.snappy.compress_raw(contents)), 1
        handle = _varint(len(data)) + _varint(len(contents))
        data.extend(contents + bytes([kind]) + struct.pack("<I", masked_crc32c(contents + bytes([kind]))))
        return handle

    index = []
    for start in range(0, len(items), block_entries):
        chunk = items[start : start + block_entries]
        index.append((chunk[-1][0], put(_block(chunk))))
    footer = put(_block([])) + put(_block(index, restart_interval=1))
    path.write_bytes(bytes(data) + footer.ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC))


def rewrite(src: Path, dst: Path, drop=(), dtypes=None, shards: int = 1, block_entries: int = 1000,
            snappy: bool = False) -> Path:
    """Copy the checkpoint ``src`` to the prefix ``dst``, re-encoded: tensors in ``drop`` left
    out, ``dtypes`` (name -> enum) replaced, tensors spread round-robin over ``shards``."""
    header, entries = read_index(src)
    raw = Path(f"{src}.data-00000-of-00001").read_bytes()
    files = [bytearray() for _ in range(shards)]
    items = [(b"", _field(1, shards) + _field(2, 0) + _field(3, _field(1, 1)))]
    for n, (name, e) in enumerate(sorted(entries.items())):
        if name in drop:
            continue
        shard = n % shards
        offset = len(files[shard])
        files[shard] += raw[e.offset : e.offset + e.size]
        shape = b"".join(_field(2, _field(1, d)) for d in e.shape)
        dtype = (dtypes or {}).get(name, e.dtype)
        value = (_field(1, dtype) + _field(2, shape) + _field(3, shard) + _field(4, offset)
                 + _field(5, e.size) + _field(6, e.crc32c, fixed32=True))
        items.append((name.encode(), value))
    for shard, contents in enumerate(files):
        Path(f"{dst}.data-{shard:05d}-of-{shards:05d}").write_bytes(bytes(contents))
    _write_table(Path(f"{dst}.index"), items, block_entries, snappy)
    return dst


def copy_checkpoint(src: Path, folder: Path) -> Path:
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(f"{src}{suffix}", folder / f"{src.name}{suffix}")
        os.chmod(folder / f"{src.name}{suffix}", 0o644)
    return folder / src.name


# ---------------------------------------------------------------------------------------------
# reading


def test_list_variables_and_global_steps():
    snemi = list_variables(prefix_of("snemi3d_7M_fov"))
    fib = list_variables(prefix_of("fib25_fov"))
    conv = {f"seed_update/conv{i}_{ab}" for i in range(9) for ab in "ab"} | {"seed_update/conv_lom"}
    assert set(snemi) == {"global_step"} | {f"{c}/{k}" for c in conv for k in ("weights", "biases")}
    assert snemi["global_step"] == ("int32", ())
    assert snemi["seed_update/conv0_a/weights"] == ("float32", (3, 3, 3, 2, 32))
    assert snemi["seed_update/conv8_b/weights"] == ("float32", (3, 3, 3, 32, 32))
    assert snemi["seed_update/conv_lom/weights"] == ("float32", (1, 1, 1, 32, 1))
    assert snemi["seed_update/conv_lom/biases"] == ("float32", (1,))
    assert "seed_update/conv11_b/biases" in fib and "seed_update/conv12_a/weights" not in fib
    fractions = [n for n in fib if n.endswith("/fraction")]
    assert len(fractions) == 3 and all(fib[n] == ("int64", (2,)) for n in fractions)
    assert int(read_checkpoint(prefix_of("snemi3d_7M_fov"), ["global_step"])["global_step"]) == 7000000
    assert int(read_checkpoint(prefix_of("fib25_fov"))["global_step"]) == 27465036


def test_values_and_prefix_forms(snemi3d_7m):
    header, entries = read_index(snemi3d_7m)
    assert (header.num_shards, header.big_endian) == (1, False)
    biases = entries["seed_update/conv0_a/biases"]  # the spec's worked example
    assert (biases.offset, biases.size, biases.crc32c) == (4, 128, 0x8AC941FB)
    by_prefix = read_checkpoint(snemi3d_7m)
    by_index = read_checkpoint(f"{snemi3d_7m}.index")
    assert checkpoint_prefix(f"{snemi3d_7m}.data-00000-of-00001") == snemi3d_7m
    assert by_prefix.keys() == by_index.keys() and len(by_prefix) == 39
    raw = Path(f"{snemi3d_7m}.data-00000-of-00001").read_bytes()
    np.testing.assert_array_equal(by_prefix["seed_update/conv0_a/biases"], np.frombuffer(raw[4:132], "<f4"))
    assert all(a.flags.writeable for a in by_prefix.values())


def test_reencoded_copy_snappy_blocks_and_shards_read_the_same(snemi3d_7m, tmp_path):
    pytest.importorskip("cramjam")
    copy = rewrite(snemi3d_7m, tmp_path / "m", shards=3, block_entries=5, snappy=True)
    assert Path(f"{copy}.data-00002-of-00003").exists()
    original, again = read_checkpoint(snemi3d_7m), read_checkpoint(copy)
    assert original.keys() == again.keys()
    for name in original:
        np.testing.assert_array_equal(original[name], again[name])


# ---------------------------------------------------------------------------------------------
# the networks


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_tensorflow(case, reference, one_torch_thread):
    model, config, step = ffn_from_tf_checkpoint(prefix_of(case), CASES[case][2])
    logits = forward(model, reference[f"{case}_input"])
    expected = reference[f"{case}_logits"]
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    assert np.abs(expected).max() > 5  # a real, non-trivial output


def test_configs_from_weights_and_model_args():
    _, snemi, step = ffn_from_tf_checkpoint(prefix_of("snemi3d_7M_fov"), SNEMI3D_ARGS)
    assert (snemi.depth, snemi.features, snemi.fov_size, snemi.deltas) == (9, 32, (17, 33, 33), (4, 8, 8))
    assert step == 7000000
    model, fib, step = ffn_from_tf_checkpoint(f"{prefix_of('fib25_fov')}.index", json.loads(FIB25_ARGS))
    assert (fib.depth, fib.fov_size, fib.deltas, step) == (12, (33, 33, 33), (8, 8, 8), 27465036)
    assert count_parameters(model) == 638433
    # depth and features come from the weights alone; fov and deltas default without model_args
    _, plain, _ = ffn_from_tf_checkpoint(prefix_of("fib25_fov"))
    assert (plain.depth, plain.features) == (12, 32)


def test_convert_and_load_round_trip(snemi3d_7m, reference, tmp_path, capsys, one_torch_thread):
    from neurotut.ffn.checkpoints import model_from_checkpoint
    from neurotut.ffn.train_config import TrainConfig

    out = tmp_path / "model.ckpt-7000000.pt"
    assert main(["ffn", "convert", str(snemi3d_7m), str(out), "--model_args", SNEMI3D_ARGS]) == 0
    assert "global_step 7000000" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)
    assert state["step"] == 7000000
    loaded, train_config = model_from_checkpoint(out)
    tf_model, config, _ = ffn_from_tf_checkpoint(snemi3d_7m, SNEMI3D_ARGS)
    assert train_config == TrainConfig(model=config)
    assert TrainConfig.from_dict(train_config.as_dict()) == train_config
    x = reference["snemi3d_7M_fov_input"]
    np.testing.assert_array_equal(forward(loaded, x), forward(tf_model, x))
    # an existing output is refused, replaced only with --overwrite
    assert main(["ffn", "convert", str(snemi3d_7m), str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert main(["ffn", "convert", str(snemi3d_7m), str(out), "--overwrite"]) == 0
    assert "note: " in capsys.readouterr().err  # no model_args: the defaults are said


def test_converted_checkpoint_cannot_resume_training(snemi3d_7m, tmp_path):
    from neurotut.ffn.checkpoints import load_checkpoint
    from neurotut.ffn.trainer import Trainer

    out, _, _ = convert_checkpoint(snemi3d_7m, tmp_path / "c.pt", SNEMI3D_ARGS)
    with pytest.raises(ValueError, match="cannot resume"):
        Trainer.load_state_dict(None, load_checkpoint(out))


def test_inference_request_with_a_tensorflow_prefix(reference, tmp_path, capsys, one_torch_thread):
    import h5py

    from neurotut.ffn import storage
    from neurotut.ffn.request import InferenceRequest, load_predictor

    snemi = ffn_checkpoint_dir("ffn_windows_models")
    fib = ffn_checkpoint_dir("google_ffn_fib25")
    # google's own request: fov and deltas from its model_args
    request = InferenceRequest.load(fib / "inference_training_sample2.pbtxt")
    request = replace(request, model_checkpoint_path=str(fib / "model.ckpt-27465036"))
    _, config = load_predictor(request, "cpu")
    assert (config.depth, config.fov_size, config.deltas) == (12, (33, 33, 33), (8, 8, 8))
    # the workshop's request, run end to end on the reference FOV (the image as uint8 again)
    x = reference["snemi3d_7M_fov_input"]
    raw = np.clip(np.rint(x[0, ..., 0] * 62 + 131), 0, 255).astype(np.uint8)
    with h5py.File(tmp_path / "img.h5", "w") as f:
        f["raw"] = raw
    text = (snemi / "inference.pbtxt").read_text()
    text = text.replace("preprocessed_files/images_for_inference.h5@raw", f"{tmp_path / 'img.h5'}@raw")
    text = text.replace("training_results/model.ckpt-7000000", str(snemi / "model.ckpt-7000000"))
    text = text.replace('"inference_results"', f'"{tmp_path / "out"}"')
    (tmp_path / "inference.pbtxt").write_text(text)
    predictor, config = load_predictor(InferenceRequest.load(tmp_path / "inference.pbtxt"), "cpu")
    assert config.fov_size == (17, 33, 33)
    np.testing.assert_allclose(predictor(x[..., 0], x[..., 1])[..., None], reference["snemi3d_7M_fov_logits"],
                               rtol=0, atol=1e-4)
    argv = ["ffn", "inference", "--inference_request", str(tmp_path / "inference.pbtxt"), "--quiet",
            "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    assert storage.segmentation_path(tmp_path / "out", (0, 0, 0)).exists()
    # a depth in model_args that contradicts the weights
    (tmp_path / "inference.pbtxt").write_text(text.replace('\\"depth\\": 9', '\\"depth\\": 8'))
    assert main(argv + ["--overwrite"]) == 2
    assert "model_args depth = 8" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# bad input: each one clear error


def _cli_error(capsys, prefix: Path, tmp_path: Path, *extra: str) -> str:
    """Run ``neurotut ffn convert`` expecting failure; returns its single stderr line."""
    assert main(["ffn", "convert", str(prefix), str(tmp_path / "out.pt"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.pt").exists()
    return err


def test_missing_and_truncated_files(snemi3d_7m, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint index"):
        read_checkpoint(tmp_path / "nothing")
    assert "no TensorFlow checkpoint index" in _cli_error(capsys, tmp_path / "nothing", tmp_path)
    copy = copy_checkpoint(snemi3d_7m, tmp_path)
    index, data = Path(f"{copy}.index"), Path(f"{copy}.data-00000-of-00001")
    full_index, full_data = index.read_bytes(), data.read_bytes()
    for cut in (10, 200, len(full_index) - 20):  # footer, index block, data block
        index.write_bytes(full_index[:-cut])
        with pytest.raises(CheckpointError, match="truncated|magic"):
            read_index(copy)
    index.write_bytes(full_index)
    data.write_bytes(full_data[:-50])
    with pytest.raises(CheckpointError, match="'seed_update/conv_lom/weights'.*truncated"):
        read_checkpoint(copy)
    assert "truncated" in _cli_error(capsys, copy, tmp_path, "--model_args", SNEMI3D_ARGS)
    data.unlink()
    with pytest.raises(FileNotFoundError, match="data-00000-of-00001"):
        read_checkpoint(copy)
    list_variables(copy)  # the index alone still lists
    assert "no data file" in _cli_error(capsys, copy, tmp_path)


def test_flipped_bytes_are_caught_by_the_checksums(snemi3d_7m, tmp_path, capsys):
    copy = copy_checkpoint(snemi3d_7m, tmp_path)
    entry = read_index(copy)[1]["seed_update/conv3_a/weights"]
    data = Path(f"{copy}.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 1000] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="'seed_update/conv3_a/weights': checksum mismatch"):
        read_checkpoint(copy)
    read_checkpoint(copy, ["seed_update/conv3_b/weights"])  # the other tensors are intact
    assert "seed_update/conv3_a/weights" in _cli_error(capsys, copy, tmp_path)
    index = Path(f"{copy}.index")
    raw = bytearray(index.read_bytes())
    raw[100] ^= 0x40  # inside the data block
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="data block 0: checksum mismatch"):
        read_index(copy)


def test_unsupported_dtype_names_the_tensor(snemi3d_7m, tmp_path, capsys):
    copy = rewrite(snemi3d_7m, tmp_path / "m", dtypes={"seed_update/conv0_a/biases": 19})  # DT_HALF
    assert list_variables(copy)["seed_update/conv0_a/biases"] == ("DT_HALF", (32,))
    with pytest.raises(CheckpointError, match="'seed_update/conv0_a/biases' has dtype DT_HALF"):
        read_checkpoint(copy)
    read_checkpoint(copy, ["seed_update/conv0_b/biases"])
    err = _cli_error(capsys, copy, tmp_path)
    assert "DT_HALF" in err and "conv0_a/biases" in err


def test_not_a_convstack(snemi3d_7m, tmp_path, capsys):
    no_b = rewrite(snemi3d_7m, tmp_path / "a", drop={"seed_update/conv4_b/weights"})
    with pytest.raises(ValueError, match="seed_update/conv4_b/weights is missing"):
        ffn_from_tf_checkpoint(no_b)
    assert "conv4_b/weights is missing" in _cli_error(capsys, no_b, tmp_path)
    no_lom = rewrite(snemi3d_7m, tmp_path / "b", drop={"seed_update/conv_lom/biases"})
    with pytest.raises(ValueError, match="conv_lom/biases is missing"):
        ffn_from_tf_checkpoint(no_lom)
    only_step = rewrite(snemi3d_7m, tmp_path / "c",
                        drop={n for n in list_variables(snemi3d_7m) if n != "global_step"})
    with pytest.raises(ValueError, match="not a google/ffn ConvStack3D"):
        ffn_from_tf_checkpoint(only_step)
    # the last module gone entirely looks like a shallower stack; model_args' depth catches it
    last = {f"seed_update/conv8_{ab}/{k}" for ab in "ab" for k in ("weights", "biases")}
    shallow = rewrite(snemi3d_7m, tmp_path / "d", drop=last)
    assert ffn_from_tf_checkpoint(shallow)[1].depth == 8
    err = _cli_error(capsys, shallow, tmp_path, "--model_args", SNEMI3D_ARGS)
    assert "model_args depth = 9" in err and "depth 8" in err


def test_model_args_contradicting_the_weights(snemi3d_7m, tmp_path, capsys):
    with pytest.raises(ValueError, match="model_args depth = 12 but .* has depth 9"):
        ffn_from_tf_checkpoint(snemi3d_7m, {"depth": 12})
    with pytest.raises(ValueError, match="model_args features = 64"):
        ffn_from_tf_checkpoint(snemi3d_7m, {"features": 64, "fov_size": [33, 33, 17]})
    with pytest.raises(ValueError, match="unknown model_args"):
        ffn_from_tf_checkpoint(snemi3d_7m, {"dept": 9})
    assert "not valid JSON" in _cli_error(capsys, snemi3d_7m, tmp_path, "--model_args", "{depth: 9")
    assert "model_args depth = 12" in _cli_error(capsys, snemi3d_7m, tmp_path, "--model_args", FIB25_ARGS)
