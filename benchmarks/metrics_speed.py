"""Time neurotut's SNEMI3D scores against scikit-image and waterz on one synthetic pair.

Usage::

    python benchmarks/metrics_speed.py                 # 100 x 1024 x 1024, the SNEMI3D size
    python benchmarks/metrics_speed.py --shape 50 512 512

Builds an SNEMI3D-like pair in the same run: ground truth = an anisotropic Voronoi tessellation
(cells elongated across sections as neurites are, voxel size 30 x 6 x 6 nm) with 0-labelled
membranes; prediction = the tessellation without membranes (no predicted 0, so waterz's numbers
must agree exactly) with some objects merged and some split. Then it times, each on inputs in the
dtype the implementation needs (conversions are not timed):

* ``neurotut.metrics.adapted_rand_error`` (ARAND alone) and ``neurotut.metrics.evaluate``
  (ARAND + VOI from one table),
* ``skimage.metrics.adapted_rand_error(gt, pred, ignore_labels=(0,))`` (ARAND only; pair counts,
  so it differs from the challenge definition in the 3rd-4th decimal),
* ``waterz.evaluate(pred, gt)`` (Rand split/merge + VOI, uint64 inputs; treats predicted 0 as an
  ordinary label),

and prints the ratios (> 1: neurotut is faster), whether the numbers agree, and the peak memory
each Python implementation allocates (tracemalloc; waterz's C++ memory is not visible to it).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy import ndimage

from neurotut import metrics
from neurotut.agglomerate import native_output_suppressed


def make_pair(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gt uint32 with 0 membranes, pred uint32 without 0) of the given shape."""
    rng = np.random.default_rng(seed)
    factor = 4  # tessellate at 1/4 of the in-plane resolution, then upsample (fast, same statistics)
    low = (shape[0], -(-shape[1] // factor), -(-shape[2] // factor))
    n_cells = max(40, int(np.prod(shape) / 5e4))  # about 2000 cells in 100 x 1024 x 1024
    seeds = np.zeros(low, dtype=bool)
    seeds[tuple(rng.integers(0, n, n_cells) for n in low)] = True
    ids = np.zeros(low, dtype=np.uint32)
    ids[seeds] = np.arange(1, int(seeds.sum()) + 1, dtype=np.uint32)
    _, idx = ndimage.distance_transform_edt(~seeds, sampling=(30.0, 24.0, 24.0), return_indices=True)
    cells = ids[tuple(idx)]
    del idx
    cells = np.repeat(np.repeat(cells, factor, axis=1), factor, axis=2)[:, : shape[1], : shape[2]]
    cells = np.ascontiguousarray(cells)
    gt = cells.copy()
    gt[metrics.boundary_map(cells)] = 0  # 2-pixel membranes between cells, in-plane
    n = int(cells.max())
    lut = np.arange(n + 1, dtype=np.uint32)
    merge = rng.choice(np.arange(2, n + 1), size=n // 20, replace=False)
    lut[merge] = lut[merge - 1]  # ~5% of the objects merged into a neighbour id
    pred = lut[cells]
    split = rng.choice(np.arange(1, n + 1), size=n // 20, replace=False)
    top = pred[: shape[0] // 2]
    top[np.isin(cells[: shape[0] // 2], split)] += np.uint32(n + 1)  # ~5% split in z
    return gt, pred


def timed(fn, *args, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_mib(fn, *args) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(100, 1024, 1024), metavar=("Z", "Y", "X"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs per method")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    args = parser.parse_args()

    import waterz
    from skimage.metrics import adapted_rand_error as sk_are

    shape = tuple(args.shape)
    t0 = time.perf_counter()
    gt, pred = make_pair(shape, args.seed)
    print(
        f"pair {shape}: {np.unique(gt).size - 1} true objects, {np.unique(pred).size} predicted, "
        f"{(gt == 0).mean():.1%} membrane; built in {time.perf_counter() - t0:.1f} s"
    )
    gt64, pred64 = gt.astype(np.uint64), pred.astype(np.uint64)

    def run_waterz(p, g):
        with native_output_suppressed():
            return waterz.evaluate(p, g)

    t_ours_rand, ours_rand = timed(metrics.adapted_rand_error, gt, pred, repeat=args.repeat)
    t_ours_all, ours = timed(metrics.evaluate, gt, pred, repeat=args.repeat)
    t_sk, (sk_error, _, _) = timed(lambda g, p: sk_are(g, p, ignore_labels=(0,)), gt, pred, repeat=args.repeat)
    t_wz, wz = timed(run_waterz, pred64, gt64, repeat=args.repeat)

    s, m = wz["rand_split"], wz["rand_merge"]
    wz_error = 1 - 2 * s * m / (s + m)
    print(f"ARAND: neurotut {ours.arand:.6f} | waterz {wz_error:.6f} | skimage (pair counts) {sk_error:.6f}")
    print(
        f"agreement with waterz (no predicted 0): |dARAND| {abs(ours.arand - wz_error):.1e}, "
        f"|dVOI split| {abs(ours.voi_split - wz['voi_split']):.1e}, "
        f"|dVOI merge| {abs(ours.voi_merge - wz['voi_merge']):.1e}"
    )
    print(f"time: neurotut ARAND {t_ours_rand:.2f} s, neurotut ARAND+VOI {t_ours_all:.2f} s, "
          f"skimage ARAND {t_sk:.2f} s, waterz ARAND+VOI {t_wz:.2f} s")
    print(f"ratio skimage / neurotut (ARAND):          {t_sk / t_ours_rand:.2f}x")
    print(f"ratio waterz / neurotut (ARAND+VOI):       {t_wz / t_ours_all:.2f}x")
    print(f"ratio fastest other / neurotut (ARAND+VOI): {min(t_sk, t_wz) / t_ours_all:.2f}x")
    if not args.no_memory:
        mem_ours = peak_mib(metrics.evaluate, gt, pred)
        mem_sk = peak_mib(lambda g, p: sk_are(g, p, ignore_labels=(0,)), gt, pred)
        print(f"peak extra memory (tracemalloc): neurotut evaluate {mem_ours:.0f} MiB, "
              f"skimage ARAND {mem_sk:.0f} MiB; the pair itself is {(gt.nbytes + pred.nbytes) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
