"""``neurotut ffn ...``: the FFN workflow steps on the command line, with the original's flags.

* ``neurotut ffn partitions`` mirrors google/ffn ``compute_partitions.py``
* ``neurotut ffn coordinates`` mirrors google/ffn ``build_coordinates.py``
* ``neurotut ffn convert`` turns a google/ffn TensorFlow checkpoint into a neurotut one

Volumes are named ``file.h5:dataset`` or ``file.h5@dataset`` (the ``@`` form works with Windows
drive letters). Flags the original takes in x, y, z order say so in their help and are converted
to z, y, x once, here.
"""

from __future__ import annotations

import argparse
import os
import sys

import h5py
import numpy as np

from neurotut.ffn import coordinates as coords_mod
from neurotut.ffn import partitions as parts_mod
from neurotut.io import VolumeSpec, atomic_path, check_can_write, parse_volume_spec, read_volume


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


def xyz_to_zyx(values):
    """(x, y, z) -> (z, y, x)."""
    return tuple(values)[::-1]


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
    from neurotut.ffn.tf_model import convert_checkpoint, parse_model_args

    path, config, step = convert_checkpoint(args.prefix, args.output, args.model_args, args.overwrite)
    print(f"wrote {path}: ConvStack3D depth {config.depth}, {config.features} features, "
          f"fov (z, y, x) {config.fov_size}, deltas {config.deltas}, global_step {step}")
    if not {"fov_size", "deltas"} <= set(parse_model_args(args.model_args)):
        print("note: the TensorFlow checkpoint holds no fov_size / deltas and --model_args gave "
              "not both; the defaults above were used", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut ffn`` with its ``partitions`` and ``coordinates`` subcommands."""
    ffn = subparsers.add_parser(
        "ffn",
        help="Flood-Filling Network workflow steps (partitions, coordinates, train, inference, convert)",
        description="Flood-Filling Network workflow steps, with the flags of google/ffn.",
    )
    steps = ffn.add_subparsers(dest="ffn_command", required=True, metavar="STEP")

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

    from neurotut.ffn.inference import register_cli as register_inference

    register_inference(steps)  # neurotut ffn inference (run_inference.py)

    from neurotut.ffn.train_cli import register_train

    register_train(steps)  # neurotut ffn train (train.py)

