"""``neurotut ffn ...``: the FFN workflow steps on the command line, with the original's flags.

* ``neurotut ffn partitions`` mirrors google/ffn ``compute_partitions.py``
* ``neurotut ffn coordinates`` mirrors google/ffn ``build_coordinates.py``
* ``neurotut ffn train`` mirrors google/ffn ``train.py``
* ``neurotut ffn inference`` mirrors google/ffn ``run_inference.py``
* ``neurotut ffn convert`` turns a google/ffn TensorFlow checkpoint into a neurotut one

Volumes are named ``file.h5:dataset`` or ``file.h5@dataset`` (the ``@`` form works with Windows
drive letters). Flags the original takes in x, y, z order say so in their help and are converted
to z, y, x once, here.

Example (the ffn_windows SNEMI3D run; ``@`` or ``:`` separate file and dataset)::

    neurotut ffn train --train_coords coords.h5 \\
        --data_volumes train@images.h5@raw --label_volumes train@groundtruth.h5@stack \\
        --model_args '{"depth": 9, "fov_size": [33, 33, 17], "deltas": [8, 8, 4]}' \\
        --image_mean 131 --image_stddev 62 --train_dir runs/snemi3d --max_steps 1000000

Training resumes from the newest checkpoint in ``--train_dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from neurotut.ffn import coordinates as coords_mod
from neurotut.ffn import partitions as parts_mod
from neurotut.ffn import storage
from neurotut.ffn.checkpoints import (
    checkpoint_path,
    convert_checkpoint,
    latest_checkpoint,
    load_checkpoint,
)
from neurotut.ffn.coordinates import BalancedSampler, load_coordinates
from neurotut.ffn.inputs import TrainVolume
from neurotut.ffn.model import count_parameters, model_args_to_zyx
from neurotut.ffn.request import InferenceRequest, parse_bounding_box, run_request
from neurotut.ffn.summaries import SummaryLogger
from neurotut.ffn.tf_model import parse_model_args
from neurotut.ffn.train_config import TrainConfig
from neurotut.ffn.trainer import Trainer
from neurotut.geometry import xyz_to_zyx
from neurotut.io import VolumeSpec, atomic_path, check_can_write, parse_volume_spec, read_volume

MODEL_NAMES = ("convstack_3d.ConvStack3DFFNModel", "ConvStack3DFFNModel")

def _numbers(text: str, kind=float) -> list:
    items = [t for t in text.replace(";", ",").split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of {kind.__name__}s"
        ) from None


def _float_list(text: str) -> list[float]:
    values = _numbers(text, float)
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


def _int_list(text: str) -> list[int]:
    return _numbers(text, int)


def _int_triple(text: str) -> tuple[int, int, int]:
    values = _numbers(text, int)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} needs exactly 3 comma-separated integers")
    return values[0], values[1], values[2]


def _regions_xyz_to_zyx(flat: list[float]) -> list[tuple[float, float, float, float]]:
    """Flat x,y,z,r,x,y,z,r,... (the original's flag) -> [(z, y, x, r), ...]."""
    if len(flat) % 4:
        raise ValueError(
            f"--exclusion_regions needs groups of 4 numbers x,y,z,r; got {len(flat)} numbers"
        )
    return [(z, y, x, r) for x, y, z, r in zip(*[iter(flat)] * 4)]


def parse_named_volume(text: str) -> tuple[str, VolumeSpec]:
    """``name:file.h5:dataset`` or ``name@file.h5@dataset`` -> (name, VolumeSpec).

    The name ends at the first ``:`` or ``@``; the rest is a volume spec.
    """
    cut = min((i for i in (text.find(":"), text.find("@")) if i >= 0), default=-1)
    if cut <= 0:
        raise ValueError(
            f"{text!r} is not name:file.h5:dataset (or name@file.h5@dataset), e.g. "
            "validation1:af.h5:af"
        )
    return text[:cut], parse_volume_spec(text[cut + 1 :])


def _adjusted_bounding_boxes(dataset: h5py.Dataset, radius_xyz: np.ndarray) -> np.ndarray:
    """The original's ``bounding_boxes`` attribute: input boxes (start, size in x, y, z) from
    attributes named ``bounding_boxes*`` (the whole volume if none), shrunk by the radius on
    every side; boxes left empty are dropped. Returns (n, 2, 3) int64."""
    boxes = []
    for name, value in dataset.attrs.items():
        if name.startswith("bounding_boxes"):
            boxes.extend(np.asarray(value, dtype=np.int64).reshape(-1, 2, 3))
    if not boxes:
        boxes.append(np.array([[0, 0, 0], dataset.shape[::-1]], dtype=np.int64))
    out = []
    for start, size in boxes:
        start, size = start + radius_xyz, size - 2 * radius_xyz
        if np.all(size > 0):
            out.append((start, size))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2, 3)


def run_partitions(args: argparse.Namespace) -> int:
    src = parse_volume_spec(args.input_volume)
    dst = parse_volume_spec(args.output_volume)
    if dst.path.exists() and src.path.exists() and os.path.samefile(src.path, dst.path):
        raise ValueError(
            f"--output_volume is in the input file {src.path}; writing it would replace the file "
            "and lose the labels. Write the partitions to another file."
        )
    check_can_write(dst.path, args.overwrite)  # fail before the long computation
    radius_zyx = xyz_to_zyx(args.lom_radius)
    regions = _regions_xyz_to_zyx(args.exclusion_regions) if args.exclusion_regions else None
    mask = read_volume(args.mask_volume).astype(bool) if args.mask_volume else None

    labels = read_volume(src)
    print(f"labels {src}: shape (z, y, x) {labels.shape}, {labels.dtype}")
    print(f"lom_radius (z, y, x) = {radius_zyx}, {len(args.thresholds)} thresholds, "
          f"min_size {args.min_size}")
    partitions = parts_mod.compute_partitions(
        labels,
        args.thresholds,
        radius_zyx,
        min_size=args.min_size,
        id_whitelist=args.id_whitelist,
        exclusion_regions=regions,
        mask=mask,
        progress=not args.quiet,
    )
    counts = parts_mod.partition_counts(partitions, radius_zyx)
    with h5py.File(src.path, "r") as f:
        boxes = _adjusted_bounding_boxes(f[src.dataset], np.asarray(args.lom_radius))
    with atomic_path(dst.path, args.overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(
                dst.dataset, data=partitions, chunks=True, compression="gzip", fillvalue=255
            )
            ds.attrs["bounding_boxes"] = boxes
            ds.attrs["partition_counts"] = np.array(
                [list(counts.keys()), list(counts.values())], dtype=np.int64
            )
            ds.attrs["lom_radius_zyx"] = np.asarray(radius_zyx, dtype=np.int64)
            ds.attrs["thresholds"] = np.asarray(args.thresholds, dtype=np.float64)
            ds.attrs["min_size"] = args.min_size
    print(f"wrote {dst} (uint8, shape {partitions.shape})")
    print("partition counts (valid region): " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def run_coordinates(args: argparse.Namespace) -> int:
    specs = []
    for chunk in args.partition_volumes:
        specs.extend(parse_named_volume(t.strip()) for t in chunk.split(",") if t.strip())
    check_can_write(args.coordinate_output, args.overwrite)
    volumes = []
    for name, spec in specs:
        volumes.append((name, read_volume(spec)))
        print(f"{name}: {spec}, shape (z, y, x) {volumes[-1][1].shape}")
    index = coords_mod.index_partitions(volumes, args.margin, progress=not args.quiet)
    records = coords_mod.balanced_records(index, args.seed) if args.write_records else None
    coords_mod.save_coordinates(args.coordinate_output, index, records=records,
                                overwrite=args.overwrite)
    print("voxels per partition: " + ", ".join(f"{k}: {v}" for k, v in index.summary().items()))
    print(
        f"wrote {args.coordinate_output}: {index.flat_index.size} centres grouped in "
        f"{index.n_partitions} partitions (the original would write "
        f"{index.n_partitions * index.max_count} records"
        + (", also stored under records/)" if records is not None else ")")
    )
    return 0


def run_convert(args: argparse.Namespace) -> int:
    path, config, step = convert_checkpoint(args.prefix, args.output, args.model_args, args.overwrite)
    print(f"wrote {path}: ConvStack3D depth {config.depth}, {config.features} features, "
          f"fov (z, y, x) {config.fov_size}, deltas {config.deltas}, global_step {step}")
    if not {"fov_size", "deltas"} <= set(parse_model_args(args.model_args)):
        print("note: the TensorFlow checkpoint holds no fov_size / deltas and --model_args gave "
              "not both; the defaults above were used", file=sys.stderr)
    return 0


def _named_specs(values: list[str], flag: str) -> dict:
    """``name:file.h5:dataset`` items (comma-separated and/or repeated) -> {name: VolumeSpec}."""
    out = {}
    for chunk in values:
        for text in (t.strip() for t in chunk.split(",")):
            if not text:
                continue
            cut = min((i for i in (text.find(":"), text.find("@")) if i >= 0), default=-1)
            if cut <= 0:
                raise ValueError(
                    f"{flag} item {text!r} is not name:file.h5:dataset (or name@file.h5@dataset)"
                )
            name = text[:cut]
            if name in out:
                raise ValueError(f"{flag} names volume {name!r} twice")
            out[name] = parse_volume_spec(text[cut + 1 :])
    return out


def _offset_scale_map(values: list[str] | None) -> dict[str, tuple[float, float]]:
    """``name:mean:stddev`` items -> {name: (mean, stddev)}."""
    out = {}
    for chunk in values or []:
        for text in (t.strip() for t in chunk.split(",")):
            if not text:
                continue
            parts = text.replace("@", ":").split(":")
            if len(parts) != 3:
                raise ValueError(f"--image_offset_scale_map item {text!r} is not name:mean:stddev")
            out[parts[0]] = (float(parts[1]), float(parts[2]))
    return out


def _axes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of axes") from None


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's :class:`~neurotut.ffn.train_config.TrainConfig` from parsed flags (``--model_args`` converted to z, y, x)."""
    if args.model_name not in MODEL_NAMES:
        raise ValueError(f"--model_name must be one of {MODEL_NAMES}, got {args.model_name!r}")
    try:
        model_args = json.loads(args.model_args)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model_args is not valid JSON: {exc}") from None
    if not isinstance(model_args, dict):
        raise ValueError("--model_args must be a JSON object, e.g. '{\"depth\": 9}'")
    return TrainConfig(
        model=model_args_to_zyx(model_args),
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        learning_rate_decay_factor=args.learning_rate_decay_factor,
        decay_steps=args.decay_steps,
        max_gradient_entry_mag=args.max_gradient_entry_mag,
        fov_policy=args.fov_policy,
        fov_moves=args.fov_moves,
        threshold=args.threshold,
        seed_pad=args.seed_pad,
        shuffle_moves=args.shuffle_moves,
        permutable_axes=args.permutable_axes,
        reflectable_axes=args.reflectable_axes,
        seed=args.seed,
        amp=args.amp,
        channels_last=args.channels_last,
    )


def _train_volumes(args: argparse.Namespace):
    """The coordinates' index and its volumes (read and normalised) from the flags."""
    data = _named_specs(args.data_volumes, "--data_volumes")
    labels = _named_specs(args.label_volumes, "--label_volumes")
    if set(data) != set(labels):
        raise ValueError(
            f"--data_volumes names {sorted(data)} and --label_volumes names {sorted(labels)} differ"
        )
    scale_map = _offset_scale_map(args.image_offset_scale_map)
    index = load_coordinates(args.train_coords)
    missing = [n for n in index.volume_names if n not in data]
    if missing:
        raise ValueError(f"--train_coords uses volumes {missing} that --data_volumes does not name")

    volumes = []
    for name in index.volume_names:
        mean, std = scale_map.get(name, (args.image_mean, args.image_stddev))
        image, lab = read_volume(data[name]), read_volume(labels[name])
        vol = TrainVolume(name, image, lab, mean, std)
        volumes.append(vol)
        print(f"volume {name}: image {data[name]} {image.shape} {image.dtype}, labels {labels[name]} "
              f"{lab.dtype}; normalised with mean {vol.image_mean:.2f}, stddev {vol.image_stddev:.2f}")
    return index, volumes


def _trainer(config: TrainConfig, volumes, sampler, device, train_dir: Path) -> Trainer:
    """A trainer resumed from the newest checkpoint of ``train_dir`` (same config), or new."""
    latest = latest_checkpoint(train_dir)
    if latest is None:
        return Trainer(config, volumes, sampler, device)
    state = load_checkpoint(latest)  # on the CPU; the trainer moves what it needs
    trainer = Trainer(TrainConfig.from_dict(state["config"]), volumes, sampler, device)
    if trainer.config != config:
        raise ValueError(
            f"{train_dir} holds a run with another configuration ({latest.name}); use a new "
            f"--train_dir.\n  checkpoint: {state['config']}\n  flags:      {config.as_dict()}"
        )
    trainer.load_state_dict(state)
    print(f"resuming from {latest} at step {trainer.global_step}")
    return trainer


def _report(row: dict) -> None:
    print(
        f"step {row['step']}: loss {row['loss']:.4f}, precision {row['precision']:.3f}, "
        f"recall {row['recall']:.3f}, F1 {row['f1']:.3f} (all-inside F1 "
        f"{row['f1_all_inside']:.3f}) over {int(row['examples'])} examples "
        f"({row['steps_per_example']:.1f} steps each); "
        f"global_step/sec: {row['steps_per_sec']:.2f}",
        flush=True,
    )


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from neurotut import config as nt_config

    device = nt_config.get_device(args.device)
    if config.amp and device.type != "cuda":
        raise ValueError("--amp needs a CUDA device; the CPU trains in float32")
    index, volumes = _train_volumes(args)
    sampler = BalancedSampler(index, seed=args.seed)

    train_dir = Path(args.train_dir)
    train_dir.mkdir(parents=True, exist_ok=True)
    trainer = _trainer(config, volumes, sampler, device, train_dir)
    m = config.model
    print(f"model: ConvStack3D depth {m.depth}, fov (z, y, x) {m.fov_size}, deltas (z, y, x) "
          f"{m.deltas}, {count_parameters(trainer.model):,} parameters; patch (z, y, x) "
          f"{config.patch_size}; batch {config.batch_size}; {config.optimizer} lr "
          f"{config.learning_rate}; device {device}")

    writer = SummaryLogger(train_dir)
    start, t0 = trainer.global_step, time.perf_counter()
    try:
        trainer.train(
            args.max_steps,
            summary_every=None,
            summary_secs=args.summary_rate_secs,
            writer=writer,
            checkpoint_dir=train_dir,
            checkpoint_secs=args.save_checkpoint_secs,
            keep_checkpoints=args.keep_checkpoints,
            progress=not args.quiet,
            callback=_report,
        )
    except KeyboardInterrupt:
        path = trainer.save(checkpoint_path(train_dir, trainer.global_step), overwrite=True)
        print(f"interrupted: saved {path}; run the same command to resume")
        return 130
    finally:
        writer.close()
    elapsed = time.perf_counter() - t0
    done = trainer.global_step - start
    if done:
        print(f"trained {done} steps in {elapsed:.1f} s: {done / elapsed:.2f} global steps/s "
              f"({done * config.batch_size / elapsed:.1f} FOVs/s)")
    print(f"checkpoint: {latest_checkpoint(train_dir)}")
    return 0


def run_inference(args: argparse.Namespace) -> int:
    request = InferenceRequest.load(args.inference_request)
    if args.output_dir:
        request = replace(request, segmentation_output_dir=args.output_dir)
    if args.batch_size is not None:
        request = replace(request, batch_size=args.batch_size)
    if args.mixed_precision:
        request = replace(request, mixed_precision=True)
    box = parse_bounding_box(args.bounding_box) if args.bounding_box else None
    path = run_request(request, box, overwrite=args.overwrite, device=args.device,
                       progress=not args.quiet)
    counters = storage.load_json_field(path, "counters")
    print(f"wrote {path} ({int(counters.get('segments-created', 0))} segments; "
          f"{int(counters.get('voxels-segmented', 0))} voxels segmented)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut ffn`` with its workflow steps."""
    ffn = subparsers.add_parser(
        "ffn",
        help="Flood-Filling Network workflow steps (partitions, coordinates, train, inference, convert)",
        description="Flood-Filling Network workflow steps, with the flags of google/ffn.",
    )
    steps = ffn.add_subparsers(dest="ffn_command", required=True, metavar="STEP")

    _add_partitions(steps)
    _add_coordinates(steps)
    _add_convert(steps)
    _add_inference(steps)
    _add_train(steps)


def _add_partitions(steps: argparse._SubParsersAction) -> None:
    """``neurotut ffn partitions`` (compute_partitions.py)."""
    p = steps.add_parser(
        "partitions",
        help="label volume -> partition volume (compute_partitions.py)",
        description=(
            "For every labelled voxel, the fraction of its (2r+1)^3 box with the same label, "
            "quantised with --thresholds: 0 background/dust, 1..len(thresholds)+1 partitions, "
            "255 excluded and the border of width lom_radius. Output: uint8, same shape as the "
            "input."
        ),
    )
    p.add_argument("--input_volume", required=True,
                   help="label volume (integer ids) as file.h5:dataset or file.h5@dataset")
    p.add_argument("--output_volume", required=True,
                   help="where to write the partitions, file.h5:dataset or file.h5@dataset "
                        "(a new file; must not be the input file)")
    p.add_argument("--thresholds", type=_float_list,
                   default=list(parts_mod.DEFAULT_THRESHOLDS),
                   help="comma-separated active-fraction thresholds (default: the README's "
                        "0.025,0.05,0.075,0.1,0.2,...,0.9)")
    p.add_argument("--lom_radius", type=_int_triple, required=True,
                   help="local object mask radius in voxels as x,y,z (the original's order; "
                        "converted to z,y,x internally), e.g. 24,24,24")
    p.add_argument("--min_size", type=int, default=10000,
                   help="ids with fewer voxels in the whole volume count as background "
                        "(default 10000)")
    p.add_argument("--id_whitelist", type=_int_list, default=None,
                   help="comma-separated ids; only these get partitions, other ids read 0")
    p.add_argument("--exclusion_regions", type=_float_list, default=None,
                   help="spheres to mark 255, as x,y,z,r groups in voxels (the original's "
                        "order; converted to z,y,x), e.g. 100,100,50,10,300,200,60,8")
    p.add_argument("--mask_volume", default=None,
                   help="optional mask file.h5:dataset (non-zero = masked, same shape); voxels "
                        "whose window holds a masked voxel read 255 (replaces the original's "
                        "--mask_configs proto)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (the whole file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_partitions)


def _add_coordinates(steps: argparse._SubParsersAction) -> None:
    """``neurotut ffn coordinates`` (build_coordinates.py)."""
    c = steps.add_parser(
        "coordinates",
        help="partition volumes -> balanced training centres (build_coordinates.py)",
        description=(
            "Groups every voxel inside the margin by partition value (all values but 255), so "
            "that training can draw every partition equally often. Writes a small HDF5 file "
            "that neurotut.ffn.coordinates.load_coordinates reads; --write_records also stores "
            "the original's resampled list of n_partitions x max_count centres."
        ),
    )
    c.add_argument("--partition_volumes", required=True, action="append",
                   help="name:file.h5:dataset (or name@file.h5@dataset), comma-separated or "
                        "repeated; the name is the volume name training uses")
    c.add_argument("--coordinate_output", required=True, help="output HDF5 file (new)")
    c.add_argument("--margin", type=_int_triple, required=True,
                   help="voxels to leave out at every border as z,y,x (z,y,x as in the "
                        "original; no conversion), normally the training patch radius, e.g. "
                        "24,24,24; 0 keeps the whole axis")
    c.add_argument("--seed", type=int, default=0,
                   help="random seed of the --write_records shuffle (default 0)")
    c.add_argument("--write_records", action="store_true",
                   help="also store the original's n_partitions x max_count shuffled list")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_coordinates)


def _add_convert(steps: argparse._SubParsersAction) -> None:
    """``neurotut ffn convert``: a TensorFlow checkpoint -> a neurotut one."""
    v = steps.add_parser(
        "convert",
        help="google/ffn TensorFlow checkpoint -> neurotut FFN checkpoint (.pt)",
        description=(
            "Reads a TensorFlow checkpoint of google/ffn's ConvStack3DFFNModel (PREFIX.index + "
            "PREFIX.data-*; no TensorFlow needed), checks every checksum and writes the network "
            "as a neurotut FFN checkpoint for neurotut ffn inference. Depth and features come "
            "from the weights, fov_size and deltas from --model_args."
        ),
    )
    v.add_argument("prefix", help="checkpoint prefix, e.g. training_results/model.ckpt-7000000 "
                                  "(or its .index file)")
    v.add_argument("output", help="the neurotut checkpoint to write, e.g. model.ckpt-7000000.pt")
    v.add_argument("--model_args", default=None,
                   help="the original's JSON with fov_size and deltas in x, y, z, e.g. "
                        "'{\"depth\": 9, \"fov_size\": [33, 33, 17], \"deltas\": [8, 8, 4]}'; "
                        "a depth given must match the weights")
    v.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    v.set_defaults(func=run_convert)


def _add_inference(steps: argparse._SubParsersAction) -> None:
    """``neurotut ffn inference`` (mirrors google/ffn ``run_inference.py``)."""
    p = steps.add_parser(
        "inference",
        help="segment a subvolume with a trained FFN (run_inference.py)",
        description=(
            "Flood-fill a subvolume with a trained FFN, as google/ffn's run_inference.py: the "
            "request (YAML, or the original's text proto fields image, image_mean, image_stddev, "
            "model_checkpoint_path, model_args, segmentation_output_dir, seed_policy, "
            "inference_options, checkpoint_interval) and the bounding box. The checkpoint may "
            "be a neurotut .pt file or a google/ffn TensorFlow checkpoint prefix. Writes "
            "<out>/<x>/<y>/seg-<x>_<y>_<z>.npz and .prob; refuses to replace them without "
            "--overwrite; resumes from a .cpoint checkpoint of an interrupted run."
        ),
    )
    p.add_argument("--inference_request", required=True,
                   help="request file: .yml/.yaml, or text proto (.pbtxt) with the original's fields")
    p.add_argument("--bounding_box", default=None,
                   help="subvolume as the original's text proto 'start { x: 0 y: 0 z: 0 } size "
                        "{ x: 512 y: 512 z: 100 }' or x,y,z:x,y,z (start:size, x, y, z order); "
                        "default: the whole image")
    p.add_argument("--output_dir", default=None, help="overrides segmentation_output_dir")
    p.add_argument("--batch_size", type=int, default=None,
                   help="most FOV positions per network call (the segmentation does not change)")
    p.add_argument("--mixed_precision", action="store_true",
                   help="autocast the network (float16 on CUDA, bfloat16 on CPU); slightly different results")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: CUDA if present)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result for this corner")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_inference)


def _add_train(steps: argparse._SubParsersAction) -> None:
    """``neurotut ffn train`` (train.py)."""
    t = steps.add_parser(
        "train",
        help="train an FFN (train.py)",
        description=(
            "Train a ConvStack3D Flood-Filling Network with field-of-view moves, as google/ffn's "
            "train.py. Resumes from the newest model.ckpt-<step>.pt in --train_dir; writes "
            "TensorBoard summaries there."
        ),
    )
    t.add_argument("--train_coords", required=True,
                   help="coordinate file from `neurotut ffn coordinates` (HDF5)")
    t.add_argument("--data_volumes", required=True, action="append",
                   help="name:file.h5:dataset (or name@file.h5@dataset) of the EM images, "
                        "comma-separated or repeated; names as in the coordinates")
    t.add_argument("--label_volumes", required=True, action="append",
                   help="name:file.h5:dataset (or name@file.h5@dataset) of the integer labels")
    t.add_argument("--model_name", default="convstack_3d.ConvStack3DFFNModel",
                   help="only convstack_3d.ConvStack3DFFNModel exists (the default)")
    t.add_argument("--model_args", default='{"depth": 9, "fov_size": [33, 33, 17], "deltas": [8, 8, 4]}',
                   help="JSON with depth, fov_size, deltas (and features, default 32); fov_size "
                        "and deltas are x, y, z as in the original, converted to z, y, x here. "
                        "Default: the SNEMI3D model "
                        "'{\"depth\": 9, \"fov_size\": [33, 33, 17], \"deltas\": [8, 8, 4]}'")
    t.add_argument("--image_mean", type=float, default=None,
                   help="image mean for normalisation (default: measured on each volume)")
    t.add_argument("--image_stddev", type=float, default=None,
                   help="image standard deviation (default: measured on each volume)")
    t.add_argument("--image_offset_scale_map", action="append", default=None,
                   help="per-volume name:mean:stddev, comma-separated or repeated (overrides "
                        "--image_mean/--image_stddev for those volumes)")
    t.add_argument("--train_dir", required=True,
                   help="folder for checkpoints (model.ckpt-<step>.pt) and TensorBoard logs")
    t.add_argument("--max_steps", type=int, default=10000, help="total steps to reach (default 10000)")
    t.add_argument("--batch_size", type=int, default=4, help="example streams per step (default 4)")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="default sgd")
    t.add_argument("--learning_rate", type=float, default=0.001, help="default 0.001")
    t.add_argument("--learning_rate_decay_factor", type=float, default=None,
                   help="staircase decay: lr * factor ** (step // decay_steps) (default: none)")
    t.add_argument("--decay_steps", type=int, default=None,
                   help="steps per decay stair (needs --learning_rate_decay_factor)")
    t.add_argument("--max_gradient_entry_mag", type=float, default=0.7,
                   help="clip every gradient entry to +-this (default 0.7; 0 disables)")
    t.add_argument("--fov_policy", choices=("fixed", "max_pred_moves"), default="fixed",
                   help="how the FOV moves inside an example (default fixed)")
    t.add_argument("--fov_moves", type=int, default=1, help="moves per axis the patch allows (default 1)")
    t.add_argument("--shuffle_moves", type=_bool, default=True,
                   help="shuffle the 26 fixed-policy shifts once at the start (default true)")
    t.add_argument("--threshold", type=float, default=0.9,
                   help="canvas probability a move needs; also the evaluation threshold (default 0.9)")
    t.add_argument("--seed_pad", type=float, default=0.05,
                   help="canvas probability away from the centre (default 0.05)")
    t.add_argument("--permutable_axes", type=_axes, default=(1, 2),
                   help="array axes as z=0, y=1, x=2 that may be permuted (default 1,2: a y/x "
                        "transpose)")
    t.add_argument("--reflectable_axes", type=_axes, default=(0, 1, 2),
                   help="array axes as z=0, y=1, x=2 flipped with p=1/2 each (default 0,1,2)")
    t.add_argument("--summary_rate_secs", type=float, default=120.0,
                   help="seconds between summaries and console reports (default 120)")
    t.add_argument("--save_checkpoint_secs", type=float, default=300.0,
                   help="seconds between checkpoints (default 300; one is also written at the end)")
    t.add_argument("--keep_checkpoints", type=int, default=5,
                   help="keep the newest N checkpoints of --train_dir, delete older ones (default 5, "
                        "as TensorFlow's saver; 0 keeps all)")
    t.add_argument("--seed", type=int, default=0,
                   help="random seed: initialisation, centres, augmentation, move order (default 0)")
    t.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: CUDA if present)")
    t.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (CUDA only)")
    t.add_argument("--channels_last", action="store_true",
                   help="channels-last 3-D memory format (can be faster on CUDA)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)
