"""The FFN trainer: training a Flood-Filling Network the way google/ffn's ``train.py`` does, in PyTorch.

One training *example* is a patch around a centre drawn from the balanced sampler of
:mod:`neurotut.ffn.coordinates`. Its size is ``fov + 2 * deltas * M`` (M = 1 for the ``fixed``
policy, 2 for ``max_pred_moves``), so that the field of view (FOV) can move inside it:

1. **Target.** ``(labels > 0) & (labels == labels[centre])``, softened to 0.95 / 0.05. A centre
   on background (label 0) gives an all-0.05 target: a negative example.
2. **Augmentation.** Image and labels get the same random axis permutation (default: y and x, a
   transpose with p = 1/2) and independent flips of each axis (p = 1/2 each).
3. **Seed canvas.** A patch-sized array of logits, ``logit(0.05)`` everywhere and ``logit(0.95)``
   at the centre voxel.
4. **Moves.** The FOV starts at the centre. After each step the predicted logits of the whole FOV
   are **written back** into the canvas, and the next position is chosen on the updated canvas:
   the ``fixed`` policy tries the 26 shifts (+-delta per axis) in an order shuffled once, taking a
   shift only where the canvas is >= ``logit(threshold)`` (0.9); ``max_pred_moves`` follows the
   inference policy (face maxima of the prediction, breadth first). One example gives 1..27
   steps. The canvas is data, not a graph: no gradient flows from one move to the next.
5. **Batches.** ``batch_size`` independent example streams each contribute one FOV per optimiser
   step; a stream whose example has no move left starts a new example.
6. **Loss and optimiser.** Sigmoid cross-entropy between the updated logits and the soft target,
   averaged over every voxel; plain SGD at lr 1e-3 with every gradient entry clipped to +-0.7
   (Adam as an option); no weight decay.
7. **Evaluation.** When an example is finished, its whole canvas is compared with its target:
   precision, recall and F1 with predictions at ``logit(0.9)`` and labels at 0.5, plus the loss
   over the patch; summaries also report the F1 of the trivial "everything is the object"
   predictor on the same patches.

Arrays are z, y, x; images fed to the network are ``(B, 1, Z, Y, X)`` float32. Randomness comes
from one NumPy generator (augmentation, move order) and the sampler's own generator; both, the
torch generator, the streams' canvases and positions and the optimiser state go into checkpoints,
so a resumed run continues exactly as the uninterrupted one would.

The parts: :mod:`~neurotut.ffn.train_config`, :mod:`~neurotut.ffn.inputs` (1, 3),
:mod:`~neurotut.ffn.augmentation` (2), :mod:`~neurotut.ffn.fov_policies` (4),
:mod:`~neurotut.ffn.examples` (5), :mod:`~neurotut.ffn.evaluation` (7),
:mod:`~neurotut.ffn.checkpoints` and :mod:`~neurotut.ffn.summaries`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurotut.ffn.augmentation import Augmentation, draw_augmentation
from neurotut.ffn.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    checkpoint_path,
    load_checkpoint,
    prune_checkpoints,
)
from neurotut.ffn.coordinates import BalancedSampler
from neurotut.ffn.evaluation import EvalCounts
from neurotut.ffn.examples import ExampleStream, to_device_batch
from neurotut.ffn.fov_policies import fixed_move_order, make_policy
from neurotut.ffn.inputs import Example, TrainVolume, load_example
from neurotut.ffn.model import ConvStack3DFFN, logit
from neurotut.ffn.summaries import SummaryLogger
from neurotut.ffn.train_config import TrainConfig
from neurotut.io import atomic_path


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.SGD(params, lr=config.learning_rate)


def clip_gradient_entries(model: torch.nn.Module, max_entry: float) -> None:
    """Clamp every gradient entry to ``[-max_entry, max_entry]`` in place (0: no clipping)."""
    if max_entry <= 0:
        return
    for p in model.parameters():
        if p.grad is not None:
            p.grad.clamp_(-max_entry, max_entry)


class Trainer:
    """FFN training state: model, optimiser, example streams, random generators and counters.

    Args:
        config (~neurotut.ffn.train_config.TrainConfig): the run's configuration.
        volumes: the training volumes; their names are those of ``sampler``'s index.
        sampler: draws ``(volume index, (z, y, x))`` centres (:class:`BalancedSampler`).
        device: where the network runs (default: :func:`neurotut.config.get_device`).

    ``trainer.step()`` does one optimiser step; ``trainer.train(n)`` does ``n`` with summaries;
    ``trainer.save(path)`` and ``Trainer.resume(path, volumes, sampler)`` checkpoint and resume.
    """

    def __init__(
        self,
        config: TrainConfig,
        volumes: Sequence[TrainVolume],
        sampler: BalancedSampler,
        device: torch.device | str | None = None,
    ):
        from neurotut import config as nt_config

        self.config = config
        self.device = torch.device(device) if device is not None else nt_config.get_device(verbose=False)
        if config.amp and self.device.type != "cuda":
            raise ValueError("amp (mixed precision) is for CUDA devices only; the CPU trains in float32")
        self.volumes = {v.name: v for v in volumes}
        if len(self.volumes) != len(volumes):
            raise ValueError("training volumes must have distinct names")
        names = tuple(sampler.index.volume_names)
        missing = [n for n in names if n not in self.volumes]
        if missing:
            raise ValueError(
                f"the coordinates name volumes {missing} that were not given; have {sorted(self.volumes)}"
            )
        self.volume_order = names
        margin = sampler.index.margin
        need = config.patch_radius
        if any(m < r for m, r in zip(margin, need)):
            raise ValueError(
                f"the coordinates were built with margin (z, y, x) {tuple(margin)}, but training "
                f"patches of size {config.patch_size} need {need}: rebuild them with that margin"
            )
        for name in names:
            expected = sampler.index.volume_shapes[names.index(name)]
            if tuple(self.volumes[name].labels.shape) != tuple(expected):
                raise ValueError(
                    f"volume {name!r} has shape {self.volumes[name].labels.shape} but its "
                    f"coordinates were computed on shape {tuple(expected)}"
                )
        self.sampler = sampler

        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.model = ConvStack3DFFN(config.model).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.optimizer = _optimizer(config, self.model.parameters())
        self.rng = np.random.default_rng(config.seed)
        self.move_order = fixed_move_order(config.model.deltas, self.rng if config.shuffle_moves else None)
        self.streams = [ExampleStream() for _ in range(config.batch_size)]
        self.global_step = 0
        self.counts = EvalCounts()
        self.history: list[dict] = []
        self.last_example: Example | None = None  # most recently finished (for images)
        self._loss_sum = 0.0
        self._loss_steps = 0

    # -- one step ---------------------------------------------------------------------------

    def _new_example(self, stream: ExampleStream) -> None:
        vol, centers = self.sampler.sample(1)
        volume = self.volumes[self.volume_order[int(vol[0])]]
        aug = draw_augmentation(self.rng, self.config.permutable_axes, self.config.reflectable_axes)
        example = load_example(volume, centers[0], self.config, aug)
        stream.start(example, make_policy(self.config, self.move_order))

    def step(self) -> float:
        """One optimiser step on one FOV from each stream; returns the loss (float)."""
        cfg = self.config
        fov = cfg.model.fov_size
        for stream in self.streams:
            if not stream.active:
                self._new_example(stream)
        parts = [s.fov(fov) for s in self.streams]
        image = to_device_batch([p[0] for p in parts], self.device, cfg.channels_last)
        seed = to_device_batch([p[1] for p in parts], self.device, cfg.channels_last)
        target = to_device_batch([p[2] for p in parts], self.device, cfg.channels_last)

        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            logits = self.model(image, seed)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        for group in self.optimizer.param_groups:  # a function of the step: resumes exactly
            group["lr"] = cfg.learning_rate_at(self.global_step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradient_entries(self.model, cfg.max_gradient_entry_mag)
        self.optimizer.step()

        # write the (pre-update) prediction back into each canvas: no graph crosses moves
        predicted = logits.detach()[:, 0].float().cpu().numpy()
        threshold = logit(cfg.threshold)
        for stream, pred in zip(self.streams, predicted):
            stream.steps_taken += 1
            if stream.write_back(pred, fov):
                self.counts.add(stream.example.canvas, stream.example.target, threshold,
                                steps=stream.steps_taken)
                self.last_example = stream.example
        self.global_step += 1
        value = float(loss.detach())
        self._loss_sum += value
        self._loss_steps += 1
        return value

    # -- summaries --------------------------------------------------------------------------

    def summarize(self, steps_per_sec: float = float("nan")) -> dict:
        """Statistics since the last summary (then reset): mean training loss, precision, recall,
        F1 and the trivial F1 over finished examples, and steps/s. Appended to ``history``."""
        row = {"step": self.global_step,
               "loss": self._loss_sum / self._loss_steps if self._loss_steps else float("nan")}
        row.update(self.counts.metrics())
        row["steps_per_sec"] = float(steps_per_sec)
        row["learning_rate"] = self.config.learning_rate_at(max(self.global_step - 1, 0))
        self.history.append(row)
        self.counts = EvalCounts()
        self._loss_sum, self._loss_steps = 0.0, 0
        return row

    def train(
        self,
        steps: int,
        *,
        summary_every: int | None = 100,
        summary_secs: float | None = None,
        writer: SummaryLogger | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_secs: float | None = 300.0,
        keep_checkpoints: int = 5,
        progress: bool = True,
        callback: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """Train until ``global_step`` reaches ``steps`` (a total, like ``--max_steps``).

        Summaries (see :meth:`summarize`) every ``summary_every`` steps or ``summary_secs`` seconds
        and at the end; they go to ``history``, to ``writer`` (TensorBoard) and to ``callback``.
        With ``checkpoint_dir``, a checkpoint ``model.ckpt-<step>.pt`` is written every
        ``checkpoint_secs`` seconds and at the end, and only the newest ``keep_checkpoints`` of
        that folder are kept (0 keeps all). Returns the summaries of this call.
        """
        start_step = self.global_step
        rows: list[dict] = []
        t_summary = t_ckpt = time.perf_counter()
        steps_at_summary = self.global_step
        bar = tqdm(total=max(steps - start_step, 0), desc="FFN training", unit="step", disable=not progress)
        try:
            while self.global_step < steps:
                loss = self.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                now = time.perf_counter()
                due = (summary_every is not None and self.global_step % summary_every == 0) or (
                    summary_secs is not None and now - t_summary >= summary_secs
                )
                if due or self.global_step == steps:
                    rate = (self.global_step - steps_at_summary) / max(now - t_summary, 1e-9)
                    row = self.summarize(rate)
                    rows.append(row)
                    if writer is not None:
                        writer.log(row, self.last_example, self.config)
                    if callback is not None:
                        callback(row)
                    t_summary, steps_at_summary = time.perf_counter(), self.global_step
                if checkpoint_dir is not None and (
                    self.global_step == steps
                    or (checkpoint_secs is not None and now - t_ckpt >= checkpoint_secs)
                ):
                    self.save(checkpoint_path(checkpoint_dir, self.global_step), overwrite=True)
                    prune_checkpoints(checkpoint_dir, keep_checkpoints)
                    t_ckpt = time.perf_counter()
        finally:
            bar.close()
        return rows

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: tensors and plain Python types only."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.as_dict(),
            "step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "sampler": self.sampler.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "normalization": {n: [v.image_mean, v.image_stddev] for n, v in self.volumes.items()},
            "move_order": [list(m) for m in self.move_order],
            "streams": [s.state() for s in self.streams],
            "counts": asdict(self.counts),
            "loss_accumulator": [self._loss_sum, self._loss_steps],
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (the config must be the same)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a neurotut FFN checkpoint")
        if "optimizer" not in state:
            raise ValueError("the checkpoint holds only a network (converted from TensorFlow?); "
                             "it cannot resume a training run")
        if TrainConfig.from_dict(state["config"]) != self.config:
            raise ValueError(
                "the checkpoint was written with another configuration:\n"
                f"  checkpoint: {state['config']}\n  this run:   {self.config.as_dict()}\n"
                "use a new train_dir for a different configuration"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        self.sampler.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in state["rng"]["cuda"]])
        self.move_order = [tuple(m) for m in state["move_order"]]
        for stream, st in zip(self.streams, state["streams"], strict=True):
            stream.example, stream.policy, stream.offset, stream.steps_taken = None, None, None, 0
            if st is None:
                continue
            aug = Augmentation(tuple(st["augmentation"]["permutation"]), tuple(st["augmentation"]["flips"]))
            example = load_example(self.volumes[st["volume"]], st["center"], self.config, aug)
            example.canvas = st["canvas"].cpu().numpy().copy()
            stream.example = example
            stream.policy = make_policy(self.config, self.move_order, st["policy"])
            stream.offset = None if st["offset"] is None else tuple(st["offset"])
            stream.steps_taken = int(st["steps_taken"])
        self.counts = EvalCounts(**state["counts"])
        self._loss_sum, self._loss_steps = state["loss_accumulator"]
        self.history = list(state["history"])

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a checkpoint atomically (an existing file is refused unless ``overwrite``)."""
        with atomic_path(path, overwrite) as tmp:
            torch.save(self.state_dict(), tmp)
        return Path(path)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        volumes: Sequence[TrainVolume],
        sampler: BalancedSampler,
        device: torch.device | str | None = None,
    ) -> Trainer:
        """A trainer restored from a checkpoint written by :meth:`save`."""
        state = load_checkpoint(path)
        trainer = cls(TrainConfig.from_dict(state["config"]), volumes, sampler, device)
        trainer.load_state_dict(state)
        return trainer
