"""``neurotut data ...``: list, fetch and fill-cache datasets; png-to-h5; mean-std."""

from __future__ import annotations

import argparse

from neurotut import config
from neurotut.data.download import dataset_dir, fetch, fill_cache, is_cached
from neurotut.data.registry import REGISTRY
from neurotut.data.stacks import mean_std, stack_to_h5


def _list(args: argparse.Namespace) -> int:
    print(f"data dir: {config.data_dir()}")
    width = max(len(name) for name in REGISTRY)
    for name, ds in REGISTRY.items():
        state = "cached" if is_cached(name) else "not cached"
        print(f"{name:{width}s} {len(ds.files):4d} files  {state:10s}  {ds.description}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    paths = fetch(args.dataset, base_url=args.base_url, progress=not args.quiet,
                  retries=args.retries)
    print(f"{args.dataset}: {len(paths)} files verified in {dataset_dir(args.dataset)}")
    return 0


def _fill(args: argparse.Namespace) -> int:
    copied = fill_cache(args.dataset, args.source, progress=not args.quiet)
    print(f"{args.dataset}: copied {copied} verified files into {dataset_dir(args.dataset)}")
    return 0


def _png_to_h5(args: argparse.Namespace) -> int:
    spec = stack_to_h5(args.source, args.output, kind=args.kind, overwrite=args.overwrite,
                       progress=not args.quiet)
    print(f"wrote {spec}")
    return 0


def _mean_std(args: argparse.Namespace) -> int:
    mean, std = mean_std(args.volume)
    print(f"Mean {mean:.3f}, Std {std:.3f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="datasets: list, fetch, fill the cache, convert")
    sub = parser.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("list", help="registered datasets and whether they are cached")
    p.set_defaults(func=_list)

    p = sub.add_parser("fetch", help="download a dataset into the cache, verifying checksums")
    p.add_argument("dataset", choices=sorted(REGISTRY))
    p.add_argument("--base-url", help="a mirror serving the files under their dataset names")
    p.add_argument("--retries", type=int, default=3,
                   help="further attempts per file after a failed download (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("fill-cache", help="copy a dataset from a local folder into the cache (no network)")
    p.add_argument("dataset", choices=sorted(REGISTRY))
    p.add_argument("source", help="folder holding the dataset's files, e.g. images/0000.png ...")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fill)

    p = sub.add_parser(
        "png-to-h5", help="a PNG folder or multi-page TIFF to an HDF5 dataset (gzip)",
        description="Convert a folder of PNG slices (sorted by name) or a multi-page TIFF into "
        "one (Z, Y, X) HDF5 dataset. Several datasets can share one file: the dataset is added "
        "to an existing file, whose other datasets are kept. The existing file is never written "
        "in place: a new file with the old datasets and the new one is written beside it and "
        "renamed over it, so a crash leaves the old file intact (this needs disk space for a "
        "second copy while it runs).",
    )
    p.add_argument("source", help="folder of PNG slices (sorted by name) or a .tif file")
    p.add_argument("output", help="output as file.h5:dataset or file.h5@dataset (default dataset: "
                   "the --kind, raw or labels)")
    p.add_argument("--kind", choices=["raw", "labels"], default="raw",
                   help="raw: 8/16-bit greyscale EM; labels: integer ids, stored as uint32")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing dataset of that name (only that dataset)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_png_to_h5)

    p = sub.add_parser("mean-std", help="mean and standard deviation of an HDF5 volume (png_mean_std)")
    p.add_argument("volume", help="file.h5:dataset")
    p.set_defaults(func=_mean_std)

    from neurotut.volumes import h5_to_zarr_command

    p = sub.add_parser(
        "h5-to-zarr", help="an HDF5 dataset to a chunked zarr volume with voxel size and offset",
        description="Copy one HDF5 dataset ((Z, Y, X) or (C, Z, Y, X)) into a zarr array, a slab "
        "of sections at a time, with the attributes voxel_size, offset, axis_names and units "
        "(funlib.persistence's layout, so daisy-based tools open it). Blockwise prediction and "
        "segmentation read and write such volumes.",
    )
    p.add_argument("source", help="file.h5:dataset")
    p.add_argument("target", help="out.zarr:dataset (default dataset: the HDF5 dataset's name)")
    p.add_argument("--voxel-size", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None,
                   help="voxel size in nm (default: the dataset's voxel_size or resolution "
                   "attribute; SNEMI3D is 30 6 6)")
    p.add_argument("--offset", type=int, nargs=3, metavar=("Z", "Y", "X"), default=[0, 0, 0],
                   help="world position of voxel (0, 0, 0) in nm (default 0 0 0)")
    p.add_argument("--chunks", type=int, nargs=3, metavar=("Z", "Y", "X"), default=[16, 128, 128],
                   help="chunk shape in voxels (default 16 128 128)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing zarr dataset")
    p.set_defaults(func=h5_to_zarr_command)
