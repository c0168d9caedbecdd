"""FFN training speed: global steps/s of neurotut's trainer against the original's 3.8 steps/s.

Usage::

    python benchmarks/ffn_train_speed.py                  # CPU (and every CUDA variant if a GPU is there)
    python benchmarks/ffn_train_speed.py --steps 200 --device cuda
    python benchmarks/ffn_train_speed.py --device cpu --threads 1

The reference is the ffn_windows hands-on PDF: about 3.8 global steps/s on a GTX 1080 Ti-class
GPU for the SNEMI3D model (depth 9, FOV 33 x 33 x 17 (x, y, z), deltas 8, 8, 4, batch 4), i.e.
15.2 FOVs/s. Here the same model trains on a synthetic SNEMI3D-like volume with the real trainer
(balanced centres, augmentation, fixed moves with canvas write-back, SGD with clipping), so the
time includes the per-step data work, not just the network. Each variant runs ``--warmup`` steps
first (not timed). Printed: steps/s, FOVs/s (steps/s x batch) and both as ratios to the original.

Variants: on the CPU, float32 with the default and the channels-last memory format; on CUDA,
float32, bfloat16 autocast (``amp``), channels-last, and larger batches. The project's goal on a
modern GPU is >= 10x the original's FOV throughput.
"""

from __future__ import annotations

import argparse
import time

import torch

from neurotut.data import make_synthetic
from neurotut.ffn.model import FFNModelConfig, count_parameters
from neurotut.ffn.inputs import TrainVolume, make_sampler
from neurotut.ffn.train_config import TrainConfig
from neurotut.ffn.trainer import Trainer

ORIGINAL_STEPS_PER_SEC = 3.8  # GTX 1080 Ti, batch 4 (ffn_windows hands-on PDF p.17)
ORIGINAL_BATCH = 4


def measure(trainer: Trainer, steps: int, warmup: int) -> float:
    """Global steps per second over ``steps`` steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        trainer.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 8 CPU, 200 CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 2 CPU, 20 CUDA)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: both when CUDA exists)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = FFNModelConfig(depth=9, fov_size=(17, 33, 33), deltas=(4, 8, 8))  # 33 x 33 x 17 (x, y, z)
    base = TrainConfig(model=model, batch_size=ORIGINAL_BATCH)
    raw, labels, _ = make_synthetic((48, 160, 160), seed=0)
    volume = TrainVolume("synthetic", raw, labels)
    sampler_seed = 0
    sampler = make_sampler([volume], base, min_size=1000, seed=sampler_seed)

    devices = [args.device] if args.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"model: depth {model.depth}, fov (z, y, x) {model.fov_size}, "
          f"{count_parameters(Trainer(base, [volume], sampler, 'cpu').model):,} parameters; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"original: {ORIGINAL_STEPS_PER_SEC} steps/s at batch {ORIGINAL_BATCH} "
          f"({ORIGINAL_STEPS_PER_SEC * ORIGINAL_BATCH:.1f} FOVs/s) on a GTX 1080 Ti")
    header = f"{'device':<28} {'variant':<26} {'batch':>5} {'steps/s':>9} {'FOVs/s':>9} {'x steps':>8} {'x FOVs':>8}"
    print(header)
    print("-" * len(header))
    for device in devices:
        on_cuda = device.startswith("cuda")
        name = torch.cuda.get_device_name(0) if on_cuda else "CPU"
        steps = args.steps or (200 if on_cuda else 8)
        warmup = args.warmup if args.warmup is not None else (20 if on_cuda else 2)
        if on_cuda:
            variants = [("float32", 4, False, False), ("bf16 amp", 4, True, False),
                        ("bf16 amp + channels-last", 4, True, True), ("float32", 16, False, False),
                        ("bf16 amp", 16, True, False), ("bf16 amp + channels-last", 16, True, True),
                        ("bf16 amp", 32, True, False)]
        else:
            variants = [("float32", 4, False, False), ("float32 channels-last", 4, False, True)]
        for label, batch, amp, channels_last in variants:
            cfg = TrainConfig(model=model, batch_size=batch, amp=amp, channels_last=channels_last)
            sampler = make_sampler([volume], cfg, min_size=1000, seed=sampler_seed)
            trainer = Trainer(cfg, [volume], sampler, device)
            rate = measure(trainer, steps, warmup)
            fovs = rate * batch
            print(f"{name:<28} {label:<26} {batch:>5} {rate:>9.2f} {fovs:>9.1f} "
                  f"{rate / ORIGINAL_STEPS_PER_SEC:>8.2f} {fovs / (ORIGINAL_STEPS_PER_SEC * ORIGINAL_BATCH):>8.2f}",
                  flush=True)
            del trainer
            if on_cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
