"""Everything neurotut measures on a GPU, in one run of at most a few minutes, written to one JSON.

Usage::

    python benchmarks/gpu.py --out results/gpu.json                # on a lent GPU (cuda)
    python benchmarks/gpu.py --device cpu --small --out /tmp/g.json  # a rehearsal on a CPU

Sections (each measured in this run, on the real SNEMI3D crop when it is cached, else on the
synthetic volume):

* ``table1``: base vs reversible vs checkpointed RSUNet, n = 1..4, at the paper's widths
  (28, 36, 48, 64, 80) on the full profile's patch: parameters, time per 100 iterations and the
  memory (CUDA peak above baseline on a GPU; bytes saved for backward on a CPU), with the goal
  ratios of :data:`neurotut.experiments.GOALS`;
* ``unet_train``: training steps/s of the paper's RSUNet with the full profile's patch and batch
  (real training steps: sampling, augmentation, loss, Adam, mixed precision where it is on);
* ``unet_predict``: sliding-window inference voxels/s on a validation block;
* ``ffn``: FOV steps/s of the workshop's 7M SNEMI3D network and google/ffn's FIB-25 network at
  batch 1 (as ``segment_at`` runs them) and batched, when their checkpoints are cached.

``--small`` shrinks every size so that the script can be rehearsed on a CPU; the figures are then
meaningless except that every section ran. The README's GPU column and the workshop times are
read from this JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neurotut import config, experiments, inference, train, train_config
from neurotut.data import load_tutorial_volume, train_val_split
from neurotut.data.download import is_cached
from neurotut.io import atomic_path

PAPER_WIDTHS = (28, 36, 48, 64, 80)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table1(raw, labels, device, small: bool) -> dict:
    """Table 1 at the paper's widths (no training): params, s / 100 it, memory, goal ratios."""
    full = config.PROFILES["full"]
    widths = (4, 6, 8, 12, 16) if small else PAPER_WIDTHS
    patch = (4, 32, 32) if small else tuple(full.table1_patch)
    cfg = train_config.train_config_for_profile(full, model={"widths": widths}, patch=patch,
                                         batch_size=full.table1_batch)
    rows = experiments.measure_variants(experiments.table1_variants(), cfg, raw, labels, device,
                                        repeats=2 if small else 3)
    return {
        "widths": list(widths), "patch": list(patch), "batch": cfg.batch_size,
        "rows": [{"network": r.network, "params": r.params, "time_per_100_s": r.time_per_100_s,
                  "memory_mib": r.memory_bytes / 2**20, "memory_method": r.memory_method,
                  "saved_for_backward_mib": r.saved_bytes / 2**20} for r in rows],
        "goal_ratios": experiments.goal_ratios(rows), "goals": dict(experiments.GOALS),
    }


def unet_train(raw, labels, device, small: bool) -> dict:
    """Steps/s of real training steps of the paper's RSUNet at the full profile's sizes."""
    full = config.PROFILES["full"]
    over = dict(model={"widths": (4, 6, 8, 12, 16)}, patch=(4, 32, 32)) if small else {}
    steps = 4 if small else 60
    cfg = train_config.train_config_for_profile(full, steps=steps, val_every=0, checkpoint_every=0,
                                         bn_calibration=0, **over)
    train.train(replace(cfg, steps=2), raw, labels, device=device, progress=False)  # warm-up
    _sync(device)
    start = time.perf_counter()
    train.train(cfg, raw, labels, device=device, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "patch": list(cfg.patch), "batch": cfg.batch_size, "widths": list(cfg.model.widths)}


def unet_predict(raw, labels, device, small: bool) -> dict:
    """Voxels/s of sliding-window inference of the paper's RSUNet on a block."""
    full = config.PROFILES["full"]
    cfg = train_config.train_config_for_profile(
        full, model={"widths": (4, 6, 8, 12, 16)} if small else {})
    from neurotut.models.rsunet import RSUNet

    torch.manual_seed(0)
    model = RSUNet(cfg.model).to(device).eval()
    window = (4, 32, 32) if small else tuple(full.unet_predict_window)
    block = raw[: window[0] * 2, : window[1] * 2, : window[2] * 2]
    inference.predict_volume(model, block[: window[0], : window[1], : window[2]], window,
                             device=device, progress=False)  # warm-up
    _sync(device)
    start = time.perf_counter()
    inference.predict_volume(model, block, window, device=device, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"block": list(block.shape), "window": list(window), "seconds": seconds,
            "voxels_per_s": block.size / seconds}


def ffn_steps(device, small: bool) -> dict:
    """FOV steps/s of both original FFNs at batch 1 and batched."""
    from neurotut.ffn import originals

    out = {}
    nets = []
    if is_cached(originals.WORKSHOP_DATASET):
        nets.append(("workshop_7M", lambda: originals.workshop_network(7_000_000, device)[0]))
    if is_cached(originals.FIB25_DATASET):
        nets.append(("fib25", lambda: originals.fib25_network(device)[0]))
    for name, load in nets:
        model = load()
        fov = model.config.fov_size
        result = {"fov_zyx": list(fov)}
        for batch in (1, 4) if small else (1, 4, 16):
            x = torch.randn(batch, 1, *fov, device=device)
            reps = 2 if small else 20
            with torch.inference_mode():
                model(x, x)
                _sync(device)
                start = time.perf_counter()
                for _ in range(reps):
                    model(x, x)
                _sync(device)
            result[f"batch_{batch}_steps_per_s"] = batch * reps / (time.perf_counter() - start)
        best = max(v for k, v in result.items() if k.startswith("batch_"))
        result["batch_1_over_best"] = best / result["batch_1_steps_per_s"]
        out[name] = result
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="tiny sizes: a rehearsal on a CPU")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--sections", nargs="+", default=["table1", "unet_train", "unet_predict", "ffn"])
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or rehearse with --device cpu --small")
    vol = load_tutorial_volume()
    train_raw, _ = train_val_split(vol.raw, 0.8)
    train_lab, _ = train_val_split(vol.labels, 0.8)
    report = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
                    "cpu_threads": torch.get_num_threads()},
        "data": vol.name, "small": args.small,
    }
    sections = {"table1": lambda: table1(train_raw, train_lab, device, args.small),
                "unet_train": lambda: unet_train(train_raw, train_lab, device, args.small),
                "unet_predict": lambda: unet_predict(train_raw, train_lab, device, args.small),
                "ffn": lambda: ffn_steps(device, args.small)}
    for name in args.sections:
        start = time.perf_counter()
        report[name] = sections[name]()
        report[name]["section_seconds"] = time.perf_counter() - start
        print(f"{name}: {report[name]['section_seconds']:.1f} s", flush=True)
    with atomic_path(args.out, overwrite=args.overwrite) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
