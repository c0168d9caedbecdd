"""Speed of ``neurotut.ffn.partitions.compute_partitions`` against a direct scipy approach.

The direct approach is what one writes first: for every object id, a whole-volume
``scipy.ndimage.uniform_filter`` of its binary mask gives the window mean around every voxel;
rounding ``mean * window_volume`` gives the exact count, which is quantised with the same rule.
Both run in this process on the same labels (the real 100 x 512 x 512 SNEMI3D crop when
``neurotut.data`` can load it, else a synthetic volume of that shape), the outputs are checked to
be identical, and the ratio of the times is printed. Goal: at least 3x.

    python benchmarks/ffn_partitions.py [--lom_radius 24,24,24] [--min_size 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from neurotut.ffn.partitions import (
    BACKGROUND,
    DEFAULT_THRESHOLDS,
    EXCLUDED,
    compute_partitions,
    quantize,
    valid_slices,
)


def load_labels() -> tuple[np.ndarray, str]:
    try:
        from neurotut.config import get_profile
        from neurotut.data import load_tutorial_volume

        vol = load_tutorial_volume(get_profile("quick"), verbose=False)  # the 100x512x512 crop
        if vol.labels.shape == (100, 512, 512):
            return vol.labels, vol.name
    except Exception as exc:  # noqa: BLE001 - fall back to synthetic data, say why
        print(f"(tutorial volume not available: {exc})")
    from neurotut.data import make_synthetic

    _, labels, _ = make_synthetic(shape=(100, 512, 512), seed=0)
    return labels, "synthetic"


def uniform_filter_partitions(labels, thresholds, radius_zyx, min_size):
    """The direct approach: one whole-volume uniform filter per object id."""
    ids, counts = np.unique(labels, return_counts=True)
    sizes = tuple(2 * r + 1 for r in radius_zyx)
    window_volume = int(np.prod(sizes))
    valid = valid_slices(labels.shape, radius_zyx)
    out = np.full(labels.shape, EXCLUDED, dtype=np.uint8)
    out[valid] = BACKGROUND
    inner_labels = labels[valid]
    inner_out = out[valid]
    for label, count in zip(ids, counts):
        if label == 0 or count < min_size:
            continue
        mask = labels == label
        mean = ndimage.uniform_filter(mask.astype(np.float64), size=sizes, mode="constant")
        window_count = np.rint(mean[valid] * window_volume).astype(np.int64)
        sel = inner_labels == label
        inner_out[sel] = quantize(window_count[sel] / np.int64(window_volume), thresholds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lom_radius", default="24,24,24", help="x,y,z as the original's flag")
    parser.add_argument("--min_size", type=int, default=10000)
    args = parser.parse_args()
    radius_zyx = tuple(int(v) for v in args.lom_radius.split(","))[::-1]

    labels, name = load_labels()
    print(f"labels: {name}, shape (z, y, x) {labels.shape}, lom_radius (z, y, x) {radius_zyx}, "
          f"min_size {args.min_size}")

    t0 = time.perf_counter()
    ours = compute_partitions(labels, DEFAULT_THRESHOLDS, radius_zyx, min_size=args.min_size)
    t_ours = time.perf_counter() - t0
    print(f"neurotut compute_partitions: {t_ours:8.2f} s")

    t0 = time.perf_counter()
    direct = uniform_filter_partitions(labels, DEFAULT_THRESHOLDS, radius_zyx, args.min_size)
    t_direct = time.perf_counter() - t0
    print(f"direct uniform_filter:       {t_direct:8.2f} s")

    identical = np.array_equal(ours, direct)
    print(f"identical output: {identical}")
    print(f"speed-up: {t_direct / t_ours:.1f}x (goal: >= 3x)")
    if not identical:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
