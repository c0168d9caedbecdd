"""Checkpoint files of the affinity network (RSUNet): what :func:`neurotut.train.train` writes,
what prediction and the pretrained networks read. Reads use ``torch.load(weights_only=True)``;
writes are atomic."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neurotut.io import atomic_path, load_torch_checkpoint
from neurotut.models.rsunet import RSUNet
from neurotut.train_config import TrainConfig

CHECKPOINT_FORMAT = "neurotut-rsunet-checkpoint/1"


def checkpoint_state(step, config: TrainConfig, model, eval_norm: dict, optimizer, scaler,
                     rng: np.random.Generator, losses: list[float], history: list[dict]) -> dict:
    """What a training checkpoint holds (see :func:`load_checkpoint` for the keys)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "config": json.dumps(config.to_dict()),
        "model": model.state_dict(),
        "eval_norm": eval_norm,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rng_state(rng),
        "losses": list(losses),
        "history": json.dumps(history),
    }


def save_checkpoint(out_dir: Path, state: dict, losses: list[float], history: list[dict]) -> Path:
    """Write ``state`` as ``out_dir/step_<step>.pt`` and ``out_dir/last.pt``, and the curves as
    ``out_dir/history.json``; returns the step file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = out_dir / f"step_{state['step']:07d}.pt"
    with atomic_path(keep, overwrite=True) as tmp:
        torch.save(state, tmp)
    with atomic_path(out_dir / "last.pt", overwrite=True) as tmp:
        torch.save(state, tmp)
    with atomic_path(out_dir / "history.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps({"losses": losses, "history": history}, indent=1))
    return keep


def rng_state(rng: np.random.Generator) -> dict:
    """The NumPy generator's and torch's (CPU, CUDA) random states, as a checkpoint stores them."""
    state = {
        "numpy": json.dumps(rng.bit_generator.state),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> np.random.Generator:
    """Set torch's random states from :func:`rng_state` and return the NumPy generator."""
    numpy_state = json.loads(state["numpy"])
    rng = np.random.default_rng()
    if numpy_state["bit_generator"] != type(rng.bit_generator).__name__:
        rng = np.random.Generator(getattr(np.random, numpy_state["bit_generator"])())
    rng.bit_generator.state = numpy_state
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    return rng


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`neurotut.train.train` (``torch.load(weights_only=True)``:
    no code is executed from the file). Keys: format, step, config
    (:class:`~neurotut.train_config.TrainConfig`), model (the training state), eval_norm (BatchNorm
    statistics for evaluation, possibly empty), optimizer, scaler, rng, losses, history."""
    path = Path(path)
    ckpt = load_torch_checkpoint(path, map_location, what="training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a neurotut training checkpoint ({CHECKPOINT_FORMAT})")
    ckpt["config"] = TrainConfig.from_dict(json.loads(ckpt["config"]))
    ckpt["history"] = json.loads(ckpt["history"])
    return ckpt


def load_model(path: str | Path, device: str | torch.device | None = "cpu") -> tuple[RSUNet, TrainConfig]:
    """The trained network of a checkpoint, in eval mode with its evaluation BatchNorm statistics
    (see ``TrainConfig.bn_calibration``), and its training configuration."""
    device = torch.device(device or "cpu")
    ckpt = load_checkpoint(path, map_location=device)
    cfg: TrainConfig = ckpt["config"]
    model = RSUNet(replace(cfg.model, checkpointing=False)).to(device)
    if cfg.channels_last:  # the layout it was trained in: identical numbers
        model = model.to(memory_format=torch.channels_last_3d)
    model.load_state_dict(ckpt["model"])
    if ckpt.get("eval_norm"):
        model.load_state_dict(ckpt["eval_norm"], strict=False)
    model.eval()
    return model, cfg


def export_weights(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the evaluation part of a training checkpoint to ``out``: the weights, the evaluation
    BatchNorm statistics, the configuration, the step and the training history, without the
    optimizer, scaler and random states (a third of the size). :func:`load_model` reads it;
    :func:`neurotut.train.train` refuses to resume from it."""
    ckpt = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    load_checkpoint(checkpoint)  # validates the format
    keep = {k: ckpt[k] for k in ("format", "step", "config", "model", "eval_norm", "losses", "history")}
    keep.update(optimizer={}, scaler={}, rng={})
    with atomic_path(out, overwrite=overwrite) as tmp:
        torch.save(keep, tmp)
    return Path(out)
