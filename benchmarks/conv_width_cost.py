"""Why a reversible RSUNet is slower than the base network at the quick profile's widths on a CPU.

A residual unit runs two 3x3x3 convolutions on ``C`` channels; a reversible block runs four on
``C/2`` (two in ``F``, two in ``G``) and recomputes them in the backward pass. Counting one
backward as two forwards, a training step costs

    residual unit:     2 convs x (1 forward + 2 backward)          = 6 t(C)
    reversible block:  4 convs x (1 forward + 1 recompute + 2 bw)  = 16 t(C/2)

so the reversible/base time ratio at equal ``n`` is ``(8/3) r`` with ``r = t(C/2) / t(C)``. In
arithmetic a half-width convolution costs a quarter (``r = 0.25``, ratio 0.67: the reversible block
would be *cheaper*), but at a few channels a CPU convolution costs about the same whatever its
width (``r`` near 1, ratio near 2.7). This benchmark measures ``r`` with the real layers at every
level of the quick profile's and the paper's networks (the level's width, its y/x size halved per
level), prints the ratio it predicts next to it, and the same for forward+backward time directly.

Usage::

    python benchmarks/conv_width_cost.py                 # CPU, the quick profile's patch and batch
    python benchmarks/conv_width_cost.py --patch 8 64 64 --batch 2
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from neurotut import config

QUICK_WIDTHS = (8, 12, 16, 24, 32)
PAPER_WIDTHS = (28, 36, 48, 64, 80)


def step_time(channels: int, shape: tuple[int, int, int], batch: int, rounds: int) -> float:
    """Fastest forward+backward CPU time (s) of this process for one 3x3x3 convolution
    (``channels`` in and out) on a ``(batch, channels, *shape)`` float32 input. CPU time on one
    thread is what other processes on a shared machine barely disturb."""
    conv = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
    x = torch.randn(batch, channels, *shape, requires_grad=True)
    best = float("inf")
    for _ in range(rounds + 1):  # the first round warms up
        start = time.process_time()
        conv(x).sum().backward()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    quick = config.get_profile("quick")
    p.add_argument("--patch", type=int, nargs=3, default=list(quick.table1_patch), metavar=("Z", "Y", "X"))
    p.add_argument("--batch", type=int, default=quick.table1_batch)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time is then wall time)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} threads, patch {tuple(args.patch)}, batch {args.batch}; "
          "t(C) = fastest forward+backward of one 3x3x3 convolution, C in and out")
    print("| widths | level | C | y, x | t(C/2) ms | t(C) ms | r = t(C/2)/t(C) | predicted RevNet/base |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, widths in (("quick", QUICK_WIDTHS), ("paper", PAPER_WIDTHS)):
        total_half = total_full = 0.0
        for level, c in enumerate(widths):
            shape = (args.patch[0], max(1, args.patch[1] >> level), max(1, args.patch[2] >> level))
            half, full = (step_time(k, shape, args.batch, args.rounds) for k in (c // 2, c))
            total_half, total_full = total_half + half, total_full + full
            r = half / full
            print(f"| {name} | {level} | {c} | {shape[1]} | {1e3 * half:.2f} | {1e3 * full:.2f} | "
                  f"{r:.2f} | {8 / 3 * r:.2f} |")
        summary[name] = total_half / total_full
    for name, r in summary.items():
        print(f"{name} widths, all levels: r = {r:.2f} -> predicted RevNet/base time of the modules "
              f"{8 / 3 * r:.2f} (arithmetic: r = 0.25 -> 0.67)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
