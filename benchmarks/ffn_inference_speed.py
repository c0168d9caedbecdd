"""FFN inference throughput: voxels per second, and where the time goes.

Usage::

    python benchmarks/ffn_inference_speed.py                       # CPU, quick-sized model
    python benchmarks/ffn_inference_speed.py --checkpoint work/ffn/model.ckpt-2000.pt
    python benchmarks/ffn_inference_speed.py --device cuda --crop 100 512 512 --mixed-precision

The network is a trained checkpoint (``--checkpoint``) or, by default, a small ConvStack3D FFN
trained for ``--train-steps`` steps on the first slices of the volume, in this run (a randomly
initialised network does not flood-fill like a trained one: its objects die after one step or
never stop). The crop to segment is taken from the last slices (not used for training) of the
real SNEMI3D crop when it is cached, otherwise of the synthetic volume.

It then segments the crop with the whole inference (PolicyPeaks seeds, face-maximum moves,
first-come ownership) and prints, measured in this run:

* voxels per second of the whole ``segment_all`` (seed policy included);
* the share of that time spent inside the network calls (``time-network-s``) and the rest,
  the bookkeeping (seed policy, crops, bias, moves, ownership), per step in milliseconds;
* for every ``--batch-sizes`` value: network calls, wall time and whether the segmentation is
  identical to batch size 1 (it must be: positions are only batched when that cannot change it);
* with ``--mixed-precision``: the speed of the autocast network and how many voxels change owner.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def load_volume():
    from neurotut import config
    from neurotut.data import load_tutorial_volume

    vol = load_tutorial_volume(config.get_profile(), verbose=False)
    return vol.raw, vol.labels, vol.name


def train_quickly(raw, labels, args, device):
    from neurotut.ffn.model import FFNModelConfig
    from neurotut.ffn.inputs import TrainVolume, make_sampler
    from neurotut.ffn.train_config import TrainConfig
    from neurotut.ffn.trainer import Trainer

    model_cfg = FFNModelConfig(depth=args.depth, fov_size=tuple(args.fov), deltas=tuple(args.deltas),
                               features=args.features)
    cfg = TrainConfig(model=model_cfg, batch_size=4, optimizer="adam", learning_rate=1e-3, seed=0)
    volume = TrainVolume("train", raw, labels)
    sampler = make_sampler([volume], cfg, min_size=1000)
    trainer = Trainer(cfg, [volume], sampler, device=device)
    t0 = time.perf_counter()
    rows = trainer.train(args.train_steps, summary_every=None, progress=False)
    print(f"trained {args.train_steps} steps in {time.perf_counter() - t0:.1f} s "
          f"(mean loss {rows[-1]['loss']:.3f}, F1 {rows[-1].get('f1', float('nan')):.3f})")
    return trainer.model.eval(), volume.image_mean, volume.image_stddev


def run(image, predictor, model_cfg, batch_size, options):
    from neurotut.ffn.inference import Canvas

    canvas = Canvas(image, predictor, model_cfg.fov_size, model_cfg.deltas, options, batch_size=batch_size)
    t0 = time.perf_counter()
    canvas.segment_all("PolicyPeaks", progress=False)
    return canvas, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a neurotut FFN checkpoint (model.ckpt-<step>.pt)")
    parser.add_argument("--crop", type=int, nargs=3, default=(20, 160, 160), help="Z Y X of the crop to segment")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--fov", type=int, nargs=3, default=(9, 17, 17), help="z y x")
    parser.add_argument("--deltas", type=int, nargs=3, default=(2, 4, 4), help="z y x")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=(1, 8))
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--min-segment-size", type=int, default=100)
    args = parser.parse_args()

    import torch

    from neurotut import config
    from neurotut.ffn.inference import InferenceOptions, TorchPredictor, normalize_image
    from neurotut.ffn.checkpoints import model_from_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else config.get_device(verbose=False)
    raw, labels, name = load_volume()
    z, y, x = args.crop
    if z > raw.shape[0] // 2:
        raise SystemExit(f"--crop z={z} must leave the first half of the {raw.shape[0]} slices for training")
    crop = raw[-z:, :y, :x]
    print(f"volume {name} {raw.shape}; segmenting its last {z} slices, crop {crop.shape} (z, y, x); "
          f"device {device}, torch threads {torch.get_num_threads()}")

    if args.checkpoint:
        model, train_cfg = model_from_checkpoint(args.checkpoint, device)
        train_slices = raw[: raw.shape[0] - z].astype(np.float64)  # normalised as in training
        mean, std = float(train_slices.mean()), float(train_slices.std())
        pad, move = train_cfg.seed_pad, train_cfg.threshold
    else:
        train_part = (slice(0, raw.shape[0] - z), slice(0, 256), slice(0, 256))
        model, mean, std = train_quickly(raw[train_part], labels[train_part], args, device)
        pad, move = 0.05, 0.9
    model_cfg = model.config
    print(f"model: depth {model_cfg.depth}, fov {model_cfg.fov_size}, deltas {model_cfg.deltas}, "
          f"features {model_cfg.features}")
    image = normalize_image(crop, mean, std)
    options = InferenceOptions(pad_value=pad, move_threshold=move, min_segment_size=args.min_segment_size)

    results = {}
    for bs in args.batch_sizes:
        predictor = TorchPredictor(model, device)
        canvas, wall = run(image, predictor, model_cfg, bs, options)
        results[bs] = (canvas, wall)
        c = canvas.counters
        steps = c["network-positions"]
        net = c["time-network-s"]
        rest = wall - net
        print(f"\nbatch size {bs}: {wall:.1f} s, {crop.size / wall:,.0f} voxels/s, "
              f"{int(steps)} network steps in {int(c['network-calls'])} calls, "
              f"{int(c['segments-created'])} segments")
        print(f"  network {net:.1f} s ({100 * net / wall:.1f} %), bookkeeping {rest:.1f} s "
              f"({100 * rest / wall:.1f} %; {1000 * rest / max(steps, 1):.2f} ms per step, "
              f"seed policy {c['time-seed-policy-s']:.2f} s)")
        print(f"  seeds: weak {int(c['seeds-weak'])}, too small {int(c['seeds-too-small'])}, too close "
              f"{int(c['seeds-too-close'])}, already segmented {int(c['seeds-invalid'])}")
    base, base_wall = results[args.batch_sizes[0]]
    for bs in args.batch_sizes[1:]:
        canvas, wall = results[bs]
        same = np.array_equal(canvas.segmentation, base.segmentation)
        print(f"batch size {bs} vs {args.batch_sizes[0]}: {base_wall / wall:.2f}x faster, "
              f"{base.counters['network-calls'] / canvas.counters['network-calls']:.2f}x fewer calls, "
              f"identical segmentation: {same}")

    if args.mixed_precision:
        canvas, wall = run(image, TorchPredictor(model, device, mixed_precision=True), model_cfg,
                           args.batch_sizes[0], options)
        changed = float(np.mean(canvas.segmentation != base.segmentation))
        from neurotut.metrics import adapted_rand_error

        agree = adapted_rand_error(np.maximum(base.segmentation, 0), np.maximum(canvas.segmentation, 0))
        print(f"\nmixed precision ({TorchPredictor(model, device, True).amp_dtype}): {wall:.1f} s, "
              f"{base_wall / wall:.2f}x the float32 speed; {100 * changed:.2f} % of voxels differ; "
              f"ARAND of the autocast result against the float32 one {agree.error:.4f}")


if __name__ == "__main__":
    main()
