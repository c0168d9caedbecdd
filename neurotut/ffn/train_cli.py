"""``neurotut ffn train``: FFN training with the flags of google/ffn's ``train.py``.

Example (the ffn_windows SNEMI3D run; ``@`` or ``:`` separate file and dataset)::

    neurotut ffn train --train_coords coords.h5 \\
        --data_volumes train@images.h5@raw --label_volumes train@groundtruth.h5@stack \\
        --model_args '{"depth": 9, "fov_size": [33, 33, 17], "deltas": [8, 8, 4]}' \\
        --image_mean 131 --image_stddev 62 --train_dir runs/snemi3d --max_steps 1000000

``fov_size`` and ``deltas`` in ``--model_args`` are x, y, z as in the original and are converted
to z, y, x once, here. Training resumes from the newest checkpoint in ``--train_dir``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from neurotut.ffn.coordinates import BalancedSampler, load_coordinates
from neurotut.ffn.model import count_parameters, model_args_to_zyx
from neurotut.ffn.train import (
    SummaryLogger,
    Trainer,
    TrainConfig,
    TrainVolume,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
)
from neurotut.io import parse_volume_spec, read_volume

MODEL_NAMES = ("convstack_3d.ConvStack3DFFNModel", "ConvStack3DFFNModel")


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
    """The run's :class:`TrainConfig` from parsed flags (``--model_args`` converted to z, y, x)."""
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


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from neurotut import config as nt_config

    device = nt_config.get_device(args.device)
    if config.amp and device.type != "cuda":
        raise ValueError("--amp needs a CUDA device; the CPU trains in float32")
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
    sampler = BalancedSampler(index, seed=args.seed)

    train_dir = Path(args.train_dir)
    train_dir.mkdir(parents=True, exist_ok=True)
    latest = latest_checkpoint(train_dir)
    if latest is not None:
        state = load_checkpoint(latest)  # on the CPU; the trainer moves what it needs
        trainer = Trainer(TrainConfig.from_dict(state["config"]), volumes, sampler, device)
        if trainer.config != config:
            raise ValueError(
                f"{train_dir} holds a run with another configuration ({latest.name}); use a new "
                f"--train_dir.\n  checkpoint: {state['config']}\n  flags:      {config.as_dict()}"
            )
        trainer.load_state_dict(state)
        print(f"resuming from {latest} at step {trainer.global_step}")
    else:
        trainer = Trainer(config, volumes, sampler, device)
    m = config.model
    print(f"model: ConvStack3D depth {m.depth}, fov (z, y, x) {m.fov_size}, deltas (z, y, x) "
          f"{m.deltas}, {count_parameters(trainer.model):,} parameters; patch (z, y, x) "
          f"{config.patch_size}; batch {config.batch_size}; {config.optimizer} lr "
          f"{config.learning_rate}; device {device}")

    writer = SummaryLogger(train_dir)

    def report(row: dict) -> None:
        print(
            f"step {row['step']}: loss {row['loss']:.4f}, precision {row['precision']:.3f}, "
            f"recall {row['recall']:.3f}, F1 {row['f1']:.3f} (all-inside F1 "
            f"{row['f1_all_inside']:.3f}) over {int(row['examples'])} examples "
            f"({row['steps_per_example']:.1f} steps each); "
            f"global_step/sec: {row['steps_per_sec']:.2f}",
            flush=True,
        )

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
            callback=report,
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


def register_train(steps: argparse._SubParsersAction) -> None:
    """Add the ``train`` step to the ``neurotut ffn`` subcommands."""
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
