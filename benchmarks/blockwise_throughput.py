"""Blockwise prediction: throughput with 1 and 2 daisy workers, and a worker's peak memory on two
volume sizes (it must not grow with the volume). Not a test: prints numbers and ratios.

    OMP_NUM_THREADS=1 python benchmarks/blockwise_throughput.py [--small Z Y X] [--block Z Y X]

Uses the pretrained RSUNet on the SNEMI3D crop (its first sections, tiled in y and x to make the
larger volume when needed). Each worker runs torch on one thread; 2 workers need 2 free cores
to approach a ratio of 2.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotut.blockwise import schedule
from neurotut.blockwise.predict import PredictBlocks, input_grid
from neurotut.volumes import create_volume


@dataclass
class MeasuredPredict(PredictBlocks):
    """PredictBlocks that appends its process's peak RSS (KiB) after each block to a file."""

    record: str = ""

    def __call__(self, block) -> None:
        super().__call__(block)
        with open(self.record, "a") as f:
            f.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")


def run_once(model, raw: np.ndarray, window, block, workers: int, folder: Path) -> tuple[float, int]:
    """(voxels per second, peak worker RSS in MiB) of one blockwise prediction."""
    container = folder / f"b{raw.shape[1]}_{workers}.zarr"
    arr = create_volume(container, "raw", raw.shape, "uint8", block, (30, 6, 6), overwrite=True)
    arr[...] = raw
    shape, vs, off = input_grid(f"{container}:raw", None)
    schedule.prepare_output(container, "affs", shape=(3,) + shape, dtype="float32", chunks=block,
                            voxel_size=vs, offset=off, params={}, resume=False, overwrite=True,
                            steps=["predict"])
    record = folder / f"rss_{raw.shape[1]}_{workers}.txt"
    fn = MeasuredPredict(model, f"{container}:raw", (str(container), "affs"), tuple(window), 0.5, 2, 3,
                         "cpu", False, 1, record=str(record))
    task = schedule.make_task(f"bench-{raw.shape[1]}-{workers}", shape, block, fn, workers=workers)
    start = time.perf_counter()
    schedule.run(task, workers=workers, progress=False, log_dir=folder / "logs")
    seconds = time.perf_counter() - start
    peak = max(int(v) for v in record.read_text().split()) // 1024
    return raw.size / seconds, peak


def main() -> None:
    from neurotut.data import load_tutorial_volume
    from neurotut.pretrained import load_rsunet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, nargs=3, default=[16, 256, 256])
    ap.add_argument("--block", type=int, nargs=3, default=[16, 128, 128])
    args = ap.parse_args()
    model, cfg, _ = load_rsunet()
    vol = load_tutorial_volume(verbose=False)
    z, y, x = args.small
    small = np.ascontiguousarray(vol.raw[:z, :y, :x])
    large = np.tile(small, (1, 2, 2))  # 4x the voxels
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rate1, _ = run_once(model, small, cfg.patch, tuple(args.block), 1, folder)
        rate2, _ = run_once(model, small, cfg.patch, tuple(args.block), 2, folder)
        _, peak_small = run_once(model, small, cfg.patch, tuple(args.block), 1, folder)
        _, peak_large = run_once(model, large, cfg.patch, tuple(args.block), 1, folder)
    print(f"volume {small.shape}, blocks {tuple(args.block)}, window {tuple(cfg.patch)}")
    print(f"throughput 1 worker  {rate1:,.0f} voxels/s")
    print(f"throughput 2 workers {rate2:,.0f} voxels/s   ratio 2/1 = {rate2 / rate1:.2f}")
    print(f"worker peak memory {small.shape}: {peak_small} MiB, {large.shape}: {peak_large} MiB   "
          f"ratio large/small = {peak_large / peak_small:.2f} (volume ratio {large.size / small.size:.0f})")


if __name__ == "__main__":
    main()
