"""Koyama et al.'s Table 1 with neurotut: base vs reversible RSUNet (n = 1..4) vs base with
gradient checkpointing, under one training budget.

Usage::

    python benchmarks/table1.py --out results/table1            # sizes of the active profile
    NEUROTUT_PROFILE=full python benchmarks/table1.py --out results/table1_gpu
    python benchmarks/table1.py --steps 0 --out /tmp/t1         # params, time, memory only
    python benchmarks/table1.py --steps 0 --widths 28 36 48 64 80 --out /tmp/t1_paper

Writes ``OUT.csv`` and ``OUT.md`` (refusing to overwrite without ``--overwrite``) and prints the
table, Koyama et al.'s Table 1 and the project's goal ratios, measured in this run:

* reversible memory at the largest n / at n = 1 (goal <= 1.05),
* reversible / base memory at the largest n (goal <= 0.6),
* the largest reversible / base time ratio at equal n (goal <= 1.4).

Memory is the CUDA peak on a GPU and the bytes saved for backward on a CPU (the latter misses
the transient recompute inside reversible and checkpointed backward passes; the table says which).
Accuracy: best ARAND over the agglomeration thresholds on a centre crop of the validation slices
(the profile's ``unet_val_crop``), VOI at that threshold and boundary accuracy with its
no-boundary baseline; the raw-image baseline's ARAND is printed beside it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from neurotut import config
from neurotut.data import load_tutorial_volume, train_val_split
from neurotut.experiments import (
    GOALS,
    baseline_affinities,
    goal_ratios,
    run_table1,
    score_affinities,
    koyama_table_markdown,
    table1_variants,
    to_markdown,
    write_csv,
)
from neurotut.io import atomic_path, check_can_write
from neurotut.geometry import center_crop
from neurotut.train_config import train_config_for_profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output stem: writes OUT.csv and OUT.md")
    parser.add_argument("--steps", type=int, default=None, help="training steps per network "
                        "(default: the profile's table1_steps; 0 = no training)")
    parser.add_argument("--depths", type=int, nargs="+", default=None, help="n values (default 1 2 3 4)")
    parser.add_argument("--no-checkpointing", action="store_true", help="leave out base+checkpointing")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="channels per scale (default: the profile's unet_widths)")
    parser.add_argument("--patch", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                        help="training patch (default: the profile's table1_patch)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default: table1_batch)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per network (fastest counts)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    out = Path(args.out)
    for suffix in (".csv", ".md"):
        check_can_write(out.with_suffix(suffix), args.overwrite)
    profile = config.get_profile()
    device = config.get_device(args.device)
    print(config.describe())
    vol = load_tutorial_volume()
    tr_raw, va_raw = train_val_split(vol.raw, profile.train_fraction)
    tr_lab, va_lab = train_val_split(vol.labels, profile.train_fraction)
    crop = center_crop(va_raw.shape, profile.unet_val_crop)
    va_raw, va_lab = va_raw[crop], va_lab[crop]
    model = {"widths": tuple(args.widths)} if args.widths else {}
    cfg = train_config_for_profile(profile, patch=tuple(args.patch or profile.table1_patch),
                                   batch_size=args.batch or profile.table1_batch,
                                   steps=profile.table1_steps, model=model)
    steps = profile.table1_steps if args.steps is None else args.steps
    depths = tuple(args.depths or profile.table1_depths)
    print(f"profile {profile.name}: widths {cfg.model.widths}, patch {cfg.patch}, batch "
          f"{cfg.batch_size}, {steps} steps per network, validation crop {va_raw.shape}, "
          f"torch threads {torch.get_num_threads()}, device {device}")
    start = time.perf_counter()
    rows = run_table1(cfg, tr_raw, tr_lab, va_raw, va_lab,
                      variants=table1_variants(depths, not args.no_checkpointing),
                      train_steps=steps, device=device, repeats=args.repeats)
    elapsed = time.perf_counter() - start
    base = score_affinities(baseline_affinities(va_raw), va_lab, cfg.val_thresholds)
    md = to_markdown(rows)
    ratios = goal_ratios(rows)
    goals = GOALS
    lines = [
        f"Measured with neurotut on {rows[0].device} ({config.describe()}); {elapsed:.0f} s in all.",
        f"Widths {cfg.model.widths}, patch {cfg.patch}, batch {cfg.batch_size}, {steps} training "
        f"steps per network (same seed and data), validation crop {va_raw.shape} of {vol.name}.",
        "",
        md,
        "",
        f"Raw-image baseline (the image as boundary map): ARAND {base['arand']:.3f} at threshold "
        f"{base['threshold']}; boundary accuracy {base['boundary_accuracy']:.1%}.",
        "",
        "Goal ratios (measured / goal):",
    ]
    for k, v in ratios.items():
        ok = "n/a" if math.isnan(v) else ("met" if v <= goals[k] else "NOT met")
        lines.append(f"- {k}: {v:.3f} (goal <= {goals[k]}; {ok})")
    lines += ["", "Koyama et al.'s Table 1 (their GPU, their network; quoted):", "", koyama_table_markdown()]
    text = "\n".join(lines) + "\n"
    write_csv(rows, out.with_suffix(".csv"), overwrite=args.overwrite)
    with atomic_path(out.with_suffix(".md"), overwrite=args.overwrite) as tmp:
        tmp.write_text(text)
    print()
    print(text)
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
