"""Command lines: ``neurotut predict --blockwise`` and ``neurotut blockwise segment``."""

from __future__ import annotations

import argparse


def predict_command(args: argparse.Namespace) -> int:
    """``neurotut predict --blockwise``: affinities into zarr, block by block."""
    from neurotut import config as nt_config
    from neurotut.blockwise.predict import predict_blockwise
    from neurotut.checkpoints import load_model

    if args.tta != 1:
        raise ValueError("--tta is not available with --blockwise (flipping needs the whole volume)")
    if not args.block_size:
        raise ValueError("--blockwise needs --block-size Z Y X")
    device = str(nt_config.get_device(args.device))
    model, train_config = load_model(args.checkpoint, device="cpu")  # the settings; workers load their own
    window = tuple(args.window) if args.window else tuple(train_config.patch)
    n_out = len(train_config.offsets)
    n_channels = args.channels if args.channels else n_out
    arr = predict_blockwise(
        str(args.checkpoint), args.raw, args.output, window, args.block_size, overlap=args.overlap,
        batch_size=args.batch_size or 2, channels=args.channels, n_channels=n_channels,
        offsets=train_config.offsets, voxel_size=args.voxel_size, workers=args.num_workers,
        threads=args.threads_per_worker, device=device, amp=not args.no_amp, resume=args.resume,
        overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {args.output} {arr.shape} float32 (C, Z, Y, X)")
    return 0


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--blockwise`` options of ``neurotut predict``."""
    g = p.add_argument_group("blockwise (volumes larger than memory; --output is OUT.zarr:dataset)")
    g.add_argument("--blockwise", action="store_true",
                   help="predict block by block into zarr with daisy workers; equal to the in-memory "
                   "result voxel for voxel; resumable")
    g.add_argument("--block-size", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="write block (and zarr chunk) size in voxels")
    g.add_argument("--num-workers", type=int, default=1,
                   help="daisy worker processes (default 1; 0 runs the blocks in this process)")
    g.add_argument("--threads-per-worker", type=int, default=1, help="torch threads per worker (default 1)")
    g.add_argument("--voxel-size", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size in nm of an HDF5 --raw without a voxel_size attribute")
    g.add_argument("--resume", action="store_true",
                   help="finish an interrupted run with the same settings (done blocks are skipped)")


def _segment_command(args: argparse.Namespace) -> int:
    from neurotut.blockwise.relabel import segment_blockwise

    if not all(0.0 <= t <= 1.0 for t in args.thresholds):
        raise ValueError(f"thresholds must lie in [0, 1], got {args.thresholds}")
    names = segment_blockwise(
        args.affinities, args.output, args.thresholds, args.block_size, db=args.db,
        workers=args.num_workers, aff_low=args.aff_low, aff_high=args.aff_high, context=args.context,
        resume=args.resume,
        overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        for t, name in names.items():
            print(f"threshold {t:g} -> {name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut blockwise``."""
    parser = subparsers.add_parser("blockwise", help="blockwise segmentation of zarr volumes (daisy)")
    sub = parser.add_subparsers(dest="blockwise_command", required=True)
    p = sub.add_parser(
        "segment", help="affinities -> fragments, graph database, agglomeration, segmentation",
        description="Per block: waterz watershed fragments (ids unique across blocks) and the region "
        "adjacency graph with mean-affinity statistics, stored in SQLite (default OUT.zarr/graph.db) "
        "or PostgreSQL (--db postgresql://user:pw@host/db); then the whole graph agglomerated at each "
        "threshold (merge while 1 - mean affinity < threshold), and the segmentation written block by "
        "block. Writes OUT.zarr:fragments, OUT.zarr:luts/NAME and OUT.zarr:NAME (NAME_<t> for "
        "several thresholds).")
    p.add_argument("affinities", help="IN.zarr:dataset (C, Z, Y, X) float with an 'offsets' attribute")
    p.add_argument("output", help="OUT.zarr:dataset (default dataset 'segmentation')")
    p.add_argument("--threshold", "--thresholds", dest="thresholds", type=float, nargs="+",
                   default=[0.5], metavar="T", help="agglomeration threshold(s) (default 0.5)")
    p.add_argument("--block-size", type=int, nargs=3, required=True, metavar=("Z", "Y", "X"))
    p.add_argument("--num-workers", type=int, default=1, help="daisy workers (0: in this process)")
    p.add_argument("--db", default=None, help="graph store: an SQLite file or a postgresql:// URL")
    p.add_argument("--aff-low", type=float, default=0.0001, help="watershed low threshold")
    p.add_argument("--aff-high", type=float, default=0.9999, help="watershed high threshold")
    p.add_argument("--context", type=int, nargs=3, default=[8, 32, 32], metavar=("Z", "Y", "X"),
                   help="voxels each block's watershed sees beyond the block on every side, so that "
                   "basins cut by block faces are rejoined as in memory (default 8 32 32)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="start afresh, replacing the outputs")
    p.add_argument("--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=_segment_command)
