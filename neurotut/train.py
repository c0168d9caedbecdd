"""Training an affinity network (RSUNet) on an EM volume with ground-truth labels: the loop.

One training step (``specs/superhuman_revnet.md`` A3):

1. draw ``batch_size`` random patches from the training volume (:class:`PatchSampler`): the
   labels come with enough context around the patch that every long-range edge inside the patch
   has both ends; image, labels and the valid mask are misaligned and flipped/transposed together,
   then the affinities are computed from the augmented labels and cropped to the patch; the image
   alone gets missing sections, blur and greyscale changes;
2. predict affinity logits and compute the class-rebalanced, masked binary cross-entropy
   (:func:`affinity_loss`);
3. one Adam step (mixed precision on CUDA only).

At intervals the loss on fixed validation patches and the adapted Rand error of a waterz
segmentation of a validation crop are recorded; scalars and images go to TensorBoard when the
``tensorboard`` package is installed; checkpoints hold the model, the optimizer, the step, the
configuration and every random state, so a resumed run continues exactly as an uninterrupted one
(bit for bit on the CPU).

:func:`train` is a sequence of named steps: build (``_build_data``, ``_build_run``), resume
(``_resume_checkpoint``, ``_restore``), one step (``_train_step``), validate and log
(``_record_validation``), checkpoint (``_save``). The pieces live where their
names say: :mod:`neurotut.train_config`, :mod:`neurotut.patches`, :mod:`neurotut.loss`,
:mod:`neurotut.batchnorm`, :mod:`neurotut.checkpoints`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from neurotut import config as nt_config
from neurotut.affinity import SUPERHUMAN_OFFSETS, affinities
from neurotut.augment import AugmentConfig
from neurotut.batchnorm import norm_buffers, recalibrate_batchnorm
from neurotut.checkpoints import checkpoint_state, load_checkpoint, restore_rng, save_checkpoint
from neurotut.geometry import center_crop
from neurotut.inference import autocast, predict_volume, raw_to_input
from neurotut.io import OutputExistsError
from neurotut.loss import affinity_loss
from neurotut.models.rsunet import RSUNet
from neurotut.patches import PatchSampler, Sample
from neurotut.train_config import TrainConfig, train_config_for_profile

# kept for one edition: the previous edition's chapters took these from neurotut.train (as they
# did center_crop, load_checkpoint, PatchSampler, TrainConfig and train_config_for_profile)
from neurotut.checkpoints import export_weights, load_model  # noqa: F401
from neurotut.loss import class_balance_weights  # noqa: F401

# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained network as it trains (train mode; its BatchNorm running averages).
        eval_model: a copy in eval mode with recalibrated BatchNorm statistics: use it to predict.
        config: the run's configuration.
        step: steps done.
        losses: training loss of every step, from step 1.
        history: one dict per validation: step, train_loss (mean since the previous record),
            val_loss, val_arand (best over the thresholds), val_threshold, seconds (wall time
            since the run started; not part of exact resumption).
        checkpoint: the last checkpoint written (None without ``out_dir``).
    """

    model: RSUNet
    eval_model: RSUNet
    config: TrainConfig
    step: int
    losses: list[float]
    history: list[dict]
    checkpoint: Path | None = None


class _Logger:
    """TensorBoard scalars and images when ``tensorboard`` is installed, else nothing."""

    def __init__(self, log_dir: Path | None, purge_step: int | None):
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is optional
            print("neurotut: `pip install tensorboard` for TensorBoard logs; training goes on")
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and value is not None and np.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, np.clip(image, 0, 1)[None], step, dataformats="CHW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _batch(samples: list[Sample], device: torch.device, channels_last: bool):
    x = torch.from_numpy(np.stack([s.raw for s in samples])).to(device)
    t = torch.from_numpy(np.stack([s.target for s in samples])).to(device)
    m = torch.from_numpy(np.stack([s.mask for s in samples])).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x, t, m


def validate(
    model: RSUNet,
    config: TrainConfig,
    val_samples: list[Sample],
    val_raw: np.ndarray | None,
    val_labels: np.ndarray | None,
    device: torch.device,
) -> dict:
    """Validation loss on fixed patches and best ARAND of a waterz segmentation of the
    validation crop (``val_crop``), with the model in eval mode. Returns a dict."""
    from neurotut.agglomerate import sweep

    was_training = model.training
    model.eval()
    out: dict = {"val_loss": None, "val_arand": None, "val_threshold": None}
    try:
        if val_samples:
            total = 0.0
            with torch.no_grad():
                for i in range(0, len(val_samples), config.batch_size):
                    x, t, m = _batch(val_samples[i : i + config.batch_size], device, config.channels_last)
                    with autocast(device, config.amp):
                        logits = model(x)
                    total += float(affinity_loss(logits, t, m, config.absent_class_weight)) * len(x)
            out["val_loss"] = total / len(val_samples)
        if val_raw is not None and config.val_crop != (0, 0, 0):
            crop = center_crop(val_raw.shape, config.val_crop)
            raw, gt = val_raw[crop], val_labels[crop]
            affs = predict_volume(model, raw, config.eval_window(raw.shape), device=device, amp=config.amp, progress=False,
                                  batch_size=config.batch_size)
            scores = sweep(affs, gt, config.val_thresholds, config.offsets)
            best_t = min(scores, key=lambda t: scores[t].arand)
            out["val_arand"], out["val_threshold"] = float(scores[best_t].arand), float(best_t)
            out["_affs"], out["_raw"], out["_gt"] = affs, raw, gt
    finally:
        model.train(was_training)
    return out


def _check_resume_config(saved: TrainConfig, given: TrainConfig) -> None:
    a, b = saved.to_dict(), given.to_dict()
    differ = [k for k in a if k not in ("steps",) and a[k] != b[k]]
    if differ:
        raise ValueError(
            f"the checkpoint was trained with a different configuration ({', '.join(differ)} "
            "differ); resume with the same configuration (only `steps` may change)"
        )


@dataclass
class _Data:
    """What a run reads: the training sampler, fixed validation patches, the validation volume
    and fixed calibration batches for BatchNorm (all built before the model)."""

    sampler: PatchSampler
    val_samples: list[Sample]
    val_raw: np.ndarray | None
    val_labels: np.ndarray | None
    calib: list[Tensor]


@dataclass
class _Run:
    """What a checkpoint holds of a run, and the evaluation model of the current step."""

    model: RSUNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    rng: np.random.Generator
    step: int = 0
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    _eval: tuple[int, RSUNet] | None = None

    def evaluation_model(self, calib: list[Tensor]) -> RSUNet:
        """The model with evaluation statistics, computed once per step."""
        if self._eval is None or self._eval[0] != self.step:
            self._eval = (self.step, recalibrate_batchnorm(self.model, calib))
        return self._eval[1]


def _resume_checkpoint(config: TrainConfig, out_path: Path | None, resume, overwrite: bool,
                       device: torch.device) -> dict | None:
    """The checkpoint to resume from (checked against ``config``), or None for a new run; refuses
    to start a new run over an old one unless ``overwrite``."""
    if resume:
        resume_path = (out_path / "last.pt") if resume is True else Path(resume)
        if resume is True and out_path is None:
            raise ValueError("resume=True needs out_dir")
        ckpt = load_checkpoint(resume_path, map_location=device)
        if not ckpt.get("optimizer"):
            raise ValueError(f"{resume_path} holds exported weights only (no optimizer state); "
                             "it can be evaluated or fine-tuned from, not resumed")
        _check_resume_config(ckpt["config"], config)
        return ckpt
    if out_path is not None and (out_path / "last.pt").exists() and not overwrite:
        raise OutputExistsError(
            f"{out_path} already holds a training run (last.pt); pass resume=True to continue it, "
            "overwrite=True to start again over it, or choose another out_dir"
        )
    return None


def _build_data(config: TrainConfig, train_raw, train_labels, val_raw, val_labels,
                device: torch.device) -> _Data:
    """The sampler and the fixed patches; validation and calibration patches have their own
    generators, so they never touch the training random stream."""
    sampler = PatchSampler(train_raw, train_labels, config.patch, config.offsets, config.augment)
    val_samples: list[Sample] = []
    if val_raw is not None:
        if val_labels is None:
            raise ValueError("val_raw needs val_labels")
        val_patch = (min(config.patch[0], np.shape(val_raw)[0]),) + config.patch[1:]
        val_sampler = PatchSampler(val_raw, val_labels, val_patch, config.offsets, None)
        vrng = np.random.default_rng([config.seed, 1])
        val_samples = [val_sampler.sample(vrng, augment=False) for _ in range(config.val_patches)]
    calib: list[Tensor] = []
    if config.bn_calibration:
        crng = np.random.default_rng([config.seed, 2])
        for _ in range(config.bn_calibration):
            x, _, _ = _batch([sampler.sample(crng, augment=False) for _ in range(config.batch_size)],
                             device, config.channels_last)
            calib.append(x)
    return _Data(sampler, val_samples, val_raw, val_labels, calib)


def _load_init_weights(model: RSUNet, config: TrainConfig) -> None:
    """Start ``model`` from the training weights of ``config.init_weights`` (fine-tuning)."""
    ckpt = load_checkpoint(config.init_weights)
    if ckpt["config"].model != config.model:
        raise ValueError(
            f"{config.init_weights} holds a different network ({ckpt['config'].model}) than the "
            f"run's ({config.model}); fine-tune with the same widths, depth and outputs"
        )
    model.load_state_dict(ckpt["model"])


def _build_run(config: TrainConfig, device: torch.device) -> _Run:
    """A new run: the seeded model, Adam, the CUDA gradient scaler and the sampling generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RSUNet(config.model)
    if config.init_weights is not None:
        _load_init_weights(model, config)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps)
    use_amp = device.type == "cuda" and config.amp
    scaler = torch.amp.GradScaler(
        "cuda", enabled=use_amp and not torch.cuda.is_bf16_supported()
    ) if device.type == "cuda" else None
    return _Run(model, optimizer, scaler, np.random.default_rng(config.seed))


def _restore(run: _Run, ckpt: dict) -> None:
    """Continue ``run`` where the checkpoint left off (weights, optimiser, scaler, random states)."""
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.rng = restore_rng(ckpt["rng"])
    run.step, run.losses, run.history = int(ckpt["step"]), list(ckpt["losses"]), list(ckpt["history"])


def _train_step(run: _Run, sampler: PatchSampler, config: TrainConfig, device: torch.device) -> float:
    """One Adam step on a fresh batch of augmented patches; returns the loss."""
    samples = [sampler.sample(run.rng) for _ in range(config.batch_size)]
    x, t, m = _batch(samples, device, config.channels_last)
    with autocast(device, config.amp):
        logits = run.model(x)
    loss = affinity_loss(logits, t, m, config.absent_class_weight)
    run.optimizer.zero_grad(set_to_none=True)
    for group in run.optimizer.param_groups:
        group["lr"] = config.lr_at(run.step)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    run.step += 1
    value = float(loss.detach())
    run.losses.append(value)
    return value


def _record_validation(run: _Run, config: TrainConfig, data: _Data, device: torch.device,
                       logger: _Logger, start_time: float, since_record: list[float]) -> dict:
    """Validate the evaluation model, append the record to the history and log it."""
    v = validate(run.evaluation_model(data.calib), config, data.val_samples, data.val_raw,
                 data.val_labels, device) if (
        data.val_raw is not None) else {"val_loss": None, "val_arand": None, "val_threshold": None}
    step = run.step
    record = {
        "step": step,
        "train_loss": float(np.mean(since_record)) if since_record else None,
        "val_loss": v["val_loss"],
        "val_arand": v["val_arand"],
        "val_threshold": v["val_threshold"],
        "seconds": time.perf_counter() - start_time,
    }
    since_record.clear()
    run.history.append(record)
    logger.scalar("val/loss", record["val_loss"], step)
    logger.scalar("val/arand", record["val_arand"], step)
    if "_affs" in v and (0, 1, 0) in config.offsets:
        z = v["_raw"].shape[0] // 2
        c = config.offsets.index((0, 1, 0))
        logger.image("val/raw", raw_to_input(v["_raw"][z]), step)
        logger.image("val/affinity_y_true", affinities(v["_gt"][z : z + 1], [(0, 1, 0)])[0, 0], step)
        logger.image("val/affinity_y_pred", v["_affs"][c, z], step)
    return record


def _save(run: _Run, config: TrainConfig, calib: list[Tensor], out_path: Path) -> Path:
    """Checkpoint the run (with the evaluation BatchNorm statistics) into ``out_path``."""
    eval_norm = norm_buffers(run.evaluation_model(calib)) if calib else {}
    state = checkpoint_state(run.step, config, run.model, eval_norm, run.optimizer, run.scaler,
                             run.rng, run.losses, run.history)
    return save_checkpoint(out_path, state, run.losses, run.history)


def train(
    config: TrainConfig,
    train_raw: np.ndarray,
    train_labels: np.ndarray,
    val_raw: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train an RSUNet on ``train_raw``/``train_labels`` until ``config.steps`` steps are done.

    Args:
        config: the run (:class:`~neurotut.train_config.TrainConfig`).
        train_raw, train_labels: ``(Z, Y, X)`` uint8 image and integer labels.
        val_raw, val_labels: optional validation volume (validation loss and ARAND).
        out_dir: where checkpoints (``last.pt`` and ``step_0000100.pt`` ...), ``history.json``
            and TensorBoard logs (``tensorboard/``) go; None keeps nothing on disk.
        resume: a checkpoint path, or True for ``out_dir/last.pt``: continue that run (same
            configuration; ``config.steps`` may be larger). Without it, an ``out_dir`` that
            already holds a run is refused unless ``overwrite=True``.
        device: ``"cpu"``, ``"cuda"``...; None: CUDA when available.
        progress: tqdm bar.
        tensorboard: write TensorBoard logs into ``out_dir/tensorboard``.
        callback: called with each validation record (e.g. to draw live curves).
    """
    device = nt_config.get_device(device, verbose=False) if not isinstance(device, torch.device) else device
    out_path = Path(out_dir) if out_dir is not None else None
    ckpt = _resume_checkpoint(config, out_path, resume, overwrite, device)
    data = _build_data(config, train_raw, train_labels, val_raw, val_labels, device)
    run = _build_run(config, device)
    if ckpt is not None:
        _restore(run, ckpt)
        del ckpt
    logger = _Logger(out_path / "tensorboard" if (out_path and tensorboard) else None,
                     purge_step=run.step + 1 if run.step else None)
    last_ckpt: Path | None = None
    start_time = time.perf_counter()
    since_record: list[float] = []

    def record_validation() -> None:
        record = _record_validation(run, config, data, device, logger, start_time, since_record)
        if callback is not None:
            callback(record)

    run.model.train()
    if run.step == 0 and val_raw is not None and config.steps > 0:
        record_validation()  # the untrained network: the start of the curves
    bar = tqdm(total=config.steps, initial=run.step, desc="train", unit="step", disable=not progress)
    try:
        while run.step < config.steps:
            value = _train_step(run, data.sampler, config, device)
            since_record.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            step = run.step
            if step % config.log_every == 0:
                logger.scalar("train/loss", float(np.mean(run.losses[-config.log_every:])), step)
            at_end = step == config.steps
            if (config.val_every and step % config.val_every == 0) or at_end:
                record_validation()
            if out_path is not None and ((config.checkpoint_every and step % config.checkpoint_every == 0) or at_end):
                last_ckpt = _save(run, config, data.calib, out_path)
    finally:
        bar.close()
        logger.close()
    return TrainResult(run.model, run.evaluation_model(data.calib), config, run.step, run.losses,
                       run.history, last_ckpt)


class LiveCurves:
    """A ``callback`` for :func:`train` that redraws loss and ARAND curves at every validation.

    In Jupyter the figure is updated in place (one output that changes; the executed notebook
    keeps its last state); elsewhere one line per validation is printed.

    Args:
        steps: the run's total steps (x axis).
        baseline_arand: drawn as a horizontal reference line (e.g. the raw-image baseline).
        history: earlier records to start from (e.g. of a resumed run).
    """

    def __init__(self, steps: int, baseline_arand: float | None = None, history: Sequence[dict] = ()):
        self.steps = steps
        self.baseline = baseline_arand
        self.records: list[dict] = list(history)
        self.fig = None
        self.handle = None
        try:
            from IPython import get_ipython

            self.notebook = get_ipython() is not None and "IPKernelApp" in get_ipython().config
        except ImportError:  # pragma: no cover
            self.notebook = False

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if not self.notebook:
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()})
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self.fig is None:
            self.fig, _ = plt.subplots(1, 2, figsize=(11, 3.4))
            plt.close(self.fig)  # shown through the display handle only
        self.draw(self.fig.axes)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def draw(self, axes) -> None:
        """Draw the curves on two axes (loss, ARAND)."""
        ax_loss, ax_arand = axes
        ax_loss.clear()
        ax_arand.clear()
        train_pts = [(r["step"], r["train_loss"]) for r in self.records if r["train_loss"] is not None]
        val_pts = [(r["step"], r["val_loss"]) for r in self.records if r["val_loss"] is not None]
        if train_pts:
            ax_loss.plot(*zip(*train_pts), "o-", label="training (mean since last point)")
        if val_pts:
            ax_loss.plot(*zip(*val_pts), "s-", label="validation patches")
        ax_loss.set(xlabel="step", ylabel="rebalanced BCE", title="loss", xlim=(0, self.steps))
        ax_loss.legend(fontsize=8)
        arand_pts = [(r["step"], r["val_arand"]) for r in self.records if r["val_arand"] is not None]
        if arand_pts:
            ax_arand.plot(*zip(*arand_pts), "o-", color="C3", label="network (best threshold)")
        if self.baseline is not None:
            ax_arand.axhline(self.baseline, color="gray", ls="--", label="raw-image baseline")
        ax_arand.set(xlabel="step", ylabel="adapted Rand error", title="validation ARAND (lower is better)",
                     xlim=(0, self.steps), ylim=(0, 1.02))
        if arand_pts or self.baseline is not None:
            ax_arand.legend(fontsize=8)
        if self.fig is not None:
            self.fig.tight_layout()


# --------------------------------------------------------------------------------------------
# command line: neurotut train
# --------------------------------------------------------------------------------------------


def _train_command(args: argparse.Namespace) -> int:
    from neurotut.data import train_val_split
    from neurotut.io import read_volume

    raw = read_volume(args.raw, ndim=3, kind="image")
    labels = read_volume(args.labels, ndim=3, kind="integer")
    if raw.shape != labels.shape:
        raise ValueError(f"raw {raw.shape} and labels {labels.shape} differ in shape")
    if args.val_raw:
        if not args.val_labels:
            raise ValueError("--val-raw needs --val-labels")
        val_raw = read_volume(args.val_raw, ndim=3, kind="image")
        val_labels = read_volume(args.val_labels, ndim=3, kind="integer")
    elif args.val_fraction > 0:
        raw, val_raw = train_val_split(raw, 1 - args.val_fraction)
        labels, val_labels = train_val_split(labels, 1 - args.val_fraction)
    else:
        val_raw = val_labels = None

    profile = nt_config.get_profile(args.profile)
    model_over = {k: v for k, v in {
        "depth": args.depth, "reversible": args.reversible or None,
        "checkpointing": args.checkpointing or None,
        "widths": tuple(args.widths) if args.widths else None,
    }.items() if v is not None}
    over = {k: v for k, v in {
        "steps": args.steps, "patch": tuple(args.patch) if args.patch else None,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "lr_decay_factor": args.lr_decay_factor, "lr_decay_steps": args.lr_decay_steps,
        "val_every": args.val_every, "checkpoint_every": args.checkpoint_every,
        "val_crop": tuple(args.val_crop) if args.val_crop else None,
        "init_weights": args.init_weights,
    }.items() if v is not None}
    if args.no_augment:
        over["augment"] = AugmentConfig.none()
    if args.no_amp:
        over["amp"] = False
    if args.nearest_only:
        over["offsets"] = SUPERHUMAN_OFFSETS[:3]
        model_over["out_channels"] = 3
    if args.resume:  # the run's own configuration; only --steps may extend it
        saved = load_checkpoint(Path(args.out) / "last.pt")["config"]
        cfg = replace(saved, steps=args.steps or saved.steps)
    else:
        cfg = train_config_for_profile(profile, model=model_over, **over)
    result = train(
        cfg, raw, labels, val_raw, val_labels,
        out_dir=args.out, resume=args.resume or None, overwrite=args.overwrite,
        device=args.device, progress=not args.quiet,
    )
    if not args.quiet:
        last = result.history[-1] if result.history else {}
        print(f"trained {result.step} steps; last validation: {last}; checkpoint {result.checkpoint}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut train``."""
    p = subparsers.add_parser(
        "train",
        help="train an affinity RSUNet on HDF5 volumes",
        description="Train a (reversible) RSUNet on affinities. Sizes default to the active "
        "profile (NEUROTUT_PROFILE or --profile); flags override them. Writes checkpoints, "
        "history.json and TensorBoard logs to --out.",
    )
    p.add_argument("--raw", required=True, help="training image, file.h5:dataset (uint8)")
    p.add_argument("--labels", required=True, help="training labels, file.h5:dataset (integers)")
    p.add_argument("--val-raw", help="validation image (default: split off the last slices)")
    p.add_argument("--val-labels", help="validation labels")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of z slices held out for validation when --val-raw is not given "
                   "(0: no validation); default 0.2")
    p.add_argument("--out", required=True, help="output folder for checkpoints and logs")
    p.add_argument("--profile", choices=sorted(nt_config.PROFILES), default=None,
                   help="take default sizes from this profile (default: the active one)")
    p.add_argument("--steps", type=int, help="total Adam steps of the run")
    p.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"), help="patch size")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-decay-factor", type=float,
                   help="staircase decay: multiply the learning rate by this every --lr-decay-steps")
    p.add_argument("--lr-decay-steps", type=int, help="steps between decays (0: constant rate)")
    p.add_argument("--seed", type=int)
    p.add_argument("--widths", type=int, nargs="+", help="channels per scale, e.g. 28 36 48 64 80")
    p.add_argument("--depth", type=int, help="residual units / reversible blocks per module")
    p.add_argument("--reversible", action="store_true", help="reversible blocks (RevNet)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (plain net)")
    p.add_argument("--nearest-only", action="store_true", help="predict only the 3 nearest-neighbour affinities")
    p.add_argument("--val-every", type=int, help="steps between validations (0: at the end only)")
    p.add_argument("--val-crop", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="centre crop of the validation volume segmented for ARAND (0 0 0: none)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: at the end)")
    p.add_argument("--no-augment", action="store_true", help="no flips, defects or greyscale changes")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="fine-tune: start from the weights of this checkpoint or exported weights "
                   "file (same network), with a fresh optimizer and step 0")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its last.pt)")
    p.add_argument("--overwrite", action="store_true", help="start again over a run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_train_command)
