"""Inference speed of the two original FFNs: FOV steps per second and achieved GFLOP/s.

Usage::

    python benchmarks/ffn_original_networks.py --threads 2
    python benchmarks/ffn_original_networks.py --device cuda --json

The networks are the workshop's SNEMI3D network (7M steps; depth 9, FOV (z, y, x) 17 x 33 x 33)
and google/ffn's FIB-25 network (depth 12, FOV 33 x 33 x 33), read from the data cache
(``neurotut data fill-cache ffn-windows-models ...`` / ``google-ffn-fib25``). Each is evaluated
through :class:`neurotut.ffn.inference.TorchPredictor`, the object inference calls: at batch 1
(one FOV per call, as ``segment_at`` runs it) and batched (2, 4, 8 FOVs per call), on a random
normalised image and a seed of logit(0.05) with logit(0.95) at the centre.

Printed, all measured in this run: seconds per FOV step (the median over the timed calls after
one untimed call), FOV steps per second, achieved GFLOP/s (the convolutions' FLOPs, counted from
the model's Conv3d layers: 2 x in x out x kernel voxels x output voxels each; bias additions and
ReLUs are left out), and per network the ratio of the batch-1 time per step to the best batched
time per step. The ratio is the price of running objects one step at a time; the goal on a CPU is
<= 1.2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from neurotut.data.download import is_cached
from neurotut.ffn import originals
from neurotut.ffn.inference import TorchPredictor
from neurotut.ffn.model import logit

BATCHES = (1, 2, 4, 8)


def conv_flops(model: torch.nn.Module, fov_size: tuple[int, int, int]) -> int:
    """FLOPs of one FOV through every Conv3d of ``model`` (SAME padding, stride 1: the output
    has the FOV's voxels): 2 x in x out x kernel voxels x FOV voxels per layer."""
    voxels = int(np.prod(fov_size))
    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            out_ch, in_ch, *kernel = m.weight.shape
            total += 2 * in_ch * out_ch * int(np.prod(kernel)) * voxels
    return total


def inputs(batch: int, fov_size: tuple[int, int, int], rng: np.random.Generator):
    """A normalised image and a fresh seed ``(B, Z, Y, X) float32``."""
    images = rng.standard_normal((batch, *fov_size), dtype=np.float32)
    seeds = np.full((batch, *fov_size), logit(0.05), np.float32)
    seeds[(slice(None), *(s // 2 for s in fov_size))] = logit(0.95)
    return images, seeds


def seconds_per_step(predictor: TorchPredictor, batch: int, fov_size, steps: int, rng) -> float:
    """Median seconds per FOV over calls that evaluate about ``steps`` FOVs in all."""
    images, seeds = inputs(batch, fov_size, rng)
    predictor(images, seeds)  # untimed: allocations, kernel choice
    times = []
    for _ in range(max(2, -(-steps // batch))):
        t0 = time.perf_counter()
        predictor(images, seeds)
        times.append((time.perf_counter() - t0) / batch)
    return statistics.median(times)


def measure(name: str, model, device, steps: int, batches, rng) -> dict:
    fov = model.config.fov_size
    flops = conv_flops(model, fov)
    predictor = TorchPredictor(model, device)
    rows = []
    for b in batches:
        sec = seconds_per_step(predictor, b, fov, steps, rng)
        rows.append({"batch": b, "s_per_step": sec, "steps_per_s": 1 / sec, "gflops_per_s": flops / sec / 1e9})
    batched = [r["s_per_step"] for r in rows if r["batch"] > 1]
    single = [r["s_per_step"] for r in rows if r["batch"] == 1]
    ratio = single[0] / min(batched) if single and batched else None
    return {"network": name, "fov_zyx": list(fov), "depth": model.config.depth,
            "gflop_per_step": flops / 1e9, "rows": rows, "batch1_over_best_batched": ratio}


def print_table(results: list[dict], header: str) -> None:
    print(header)
    print(f"{'network':<28} {'FOV (z,y,x)':<13} {'batch':>5} {'s/step':>8} {'steps/s':>8} {'GFLOP/s':>8}")
    for res in results:
        fov = "x".join(str(s) for s in res["fov_zyx"])
        for r in res["rows"]:
            print(f"{res['network']:<28} {fov:<13} {r['batch']:>5} {r['s_per_step']:>8.3f} "
                  f"{r['steps_per_s']:>8.2f} {r['gflops_per_s']:>8.1f}")
    for res in results:
        ratio = res["batch1_over_best_batched"]
        text = "n/a (give batch 1 and a larger batch)" if ratio is None else f"{ratio:.2f}"
        print(f"{res['network']}: {res['gflop_per_step']:.1f} GFLOP per step; batch-1 time per step / "
              f"best batched time per step = {text} (goal on a CPU: <= 1.2)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=8, help="FOV steps timed per batch size (default 8)")
    parser.add_argument("--batches", type=int, nargs="+", default=BATCHES, help="batch sizes (default 1 2 4 8)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    missing = [d for d in (originals.WORKSHOP_DATASET, originals.FIB25_DATASET) if not is_cached(d)]
    if missing:
        print(f"ffn_original_networks: error: {', '.join(missing)} not in the data cache; run "
              "neurotut data fetch (or fill-cache) first", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if any(b < 1 for b in args.batches) or args.steps < 1:
        print("ffn_original_networks: error: batch sizes and --steps must be positive", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    networks = [("workshop SNEMI3D 7M", originals.workshop_network(7_000_000, device)[0]),
                ("google FIB-25 27.5M", originals.fib25_network(device)[0])]
    results = [measure(name, model, device, args.steps, sorted(set(args.batches)), rng) for name, model in networks]
    header = (f"torch {torch.__version__} on {device}, {torch.get_num_threads()} CPU threads; "
              f"median of about {args.steps} steps per batch size, one run")
    if args.json:
        print(json.dumps({"setup": header, "results": results}, indent=1))
    else:
        print_table(results, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
