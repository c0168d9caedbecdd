"""Plain vs checkpointed vs reversible stacks of 1..16 blocks: activation memory and step time.

Every stack is the same :func:`neurotut.models.reversible.reversible_stack` (same parameters), run
in its three modes on one 3D feature map. For each depth it measures, in one run:

* bytes saved for backward (``saved_tensors`` method, every device),
* the CUDA peak above baseline (``cuda_peak`` method, only on a GPU),
* the time of one forward+backward step (fastest of several interleaved rounds; on a CPU the CPU
  time of this process on one thread, which other processes on a shared machine barely disturb),

and prints them with ratios against plain. The project's goals are checked at the end:
reversible saved memory at the deepest stack <= 1.05 x at 1 block, and reversible step time
<= 1.4 x plain (theory: about 1.33 x; memcnn's approach: about 1.67 x).

Usage::

    python benchmarks/reversible_blocks.py                  # CPU or the default GPU
    python benchmarks/reversible_blocks.py --device cuda --shape 16 64 64 --channels 64
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from neurotut.memory import measure_step
from neurotut.models.reversible import MODES, reversible_stack


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, default=32, help="stream channels C (each half C/2)")
    p.add_argument("--shape", type=int, nargs=3, default=[8, 32, 32], metavar=("Z", "Y", "X"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--norm", default="group", choices=["group", "batch", "instance"])
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per depth")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 with the CPU clock, so that spin-waits of "
                        "threads delayed by other processes are not counted; else torch's choice)")
    p.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto",
                   help="step timer: wall time, or CPU time of this process (robust on a shared "
                        "CPU); auto = cpu on a CPU, wall on a GPU")
    return p.parse_args(argv)


def measure_depth(depth: int, args, device: torch.device, clock) -> dict[str, dict[str, float]]:
    """Bytes (and CUDA peak) per mode for one depth, times as the minimum over rounds."""
    torch.manual_seed(args.seed)
    stack = reversible_stack(args.channels, depth, norm=args.norm).to(device)
    x = torch.randn(args.batch, args.channels, *args.shape, device=device)

    def step():
        return stack(x).square().mean()

    results: dict[str, dict[str, float]] = {m: {"time_s": float("inf")} for m in MODES}
    for round_ in range(args.rounds):
        for mode in MODES:  # interleaved, so a slow spell on a shared machine hits all modes
            stack.mode = mode
            rec = measure_step(step, stack.parameters(), method="saved_tensors", device=device,
                               warmup=1 if round_ == 0 else 0, repeats=1, clock=clock)
            results[mode]["time_s"] = min(results[mode]["time_s"], rec.time_s)
            results[mode]["saved"] = rec.bytes
            if device.type == "cuda" and round_ == 0:
                peak = measure_step(step, stack.parameters(), method="cuda_peak", device=device,
                                    warmup=1, repeats=1)
                results[mode]["peak"] = peak.bytes
            stack.zero_grad(set_to_none=True)
    return results


def print_table(title: str, rows: dict, key: str, scale: float, unit: str) -> None:
    """One quantity for every depth: plain, then checkpoint and reversible with their ratio."""
    print(f"\n{title}; (x) = ratio to plain")
    head = f"{'blocks':>6} | {'plain ' + unit:>12} | {'checkpoint ' + unit:>15} {'(x)':>6}"
    head += f" | {'reversible ' + unit:>15} {'(x)':>6}"
    print(head)
    print("-" * len(head))
    for depth, r in rows.items():
        plain, ckpt, rev = (r[m][key] for m in ("plain", "checkpoint", "reversible"))
        print(f"{depth:>6} | {plain / scale:>12.2f} | {ckpt / scale:>15.2f} {ckpt / plain:>6.3f}"
              f" | {rev / scale:>15.2f} {rev / plain:>6.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_cpu_clock = args.clock == "cpu" or (args.clock == "auto" and device.type == "cpu")
    clock = time.process_time if use_cpu_clock else time.perf_counter
    clock_name = "CPU time of this process" if use_cpu_clock else "wall time"
    if args.threads or use_cpu_clock:
        torch.set_num_threads(args.threads or 1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} | {device} ({name}) | threads {torch.get_num_threads()}")
    shape = (args.batch, args.channels, *args.shape)
    print(f"stream (N, C, Z, Y, X) = {shape} float32 | F, G = {args.norm}norm -> LeakyReLU -> "
          "Conv3d 3x3x3 on C/2 channels | no inplace ops | cudnn.benchmark False")
    rows = {d: measure_depth(d, args, device, clock) for d in args.depths}

    print_table("Bytes saved for backward (saved-tensor hooks + ctx stash)", rows, "saved", 2**20,
                "MiB")
    print_table(f"Time per forward+backward step ({clock_name}, fastest of {args.rounds} "
                "interleaved rounds)", rows, "time_s", 1e-3, "ms")
    if device.type == "cuda":
        print_table("CUDA peak allocated above baseline (after a warm-up step)", rows, "peak",
                    2**20, "MiB")

    first, last = min(args.depths), max(args.depths)
    growth = rows[last]["reversible"]["saved"] / rows[first]["reversible"]["saved"]
    slowdown = rows[last]["reversible"]["time_s"] / rows[last]["plain"]["time_s"]
    goals = [
        (f"reversible saved memory at {last} blocks / at {first} block", growth, 1.05),
        (f"reversible step time / plain at {last} blocks", slowdown, 1.4),
    ]
    if device.type == "cuda":
        peak_growth = rows[last]["reversible"]["peak"] / rows[first]["reversible"]["peak"]
        print(f"\n(info) reversible CUDA peak at {last} blocks / at {first} block: {peak_growth:.3f}")
    print("\nGoals")
    ok = True
    for label, value, limit in goals:
        passed = value <= limit
        ok &= passed
        print(f"  {label}: {value:.3f} (goal <= {limit}) {'PASS' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
