"""FFN checkpoint files, for training and inference alike: neurotut's own
(``model.ckpt-<step>.pt``, written by :class:`~neurotut.ffn.trainer.Trainer`) and google/ffn's
TensorFlow checkpoints (read by :mod:`neurotut.ffn.tf_checkpoint`, turned into a network by
:mod:`neurotut.ffn.tf_model`). All reads use ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from neurotut.ffn.model import ConvStack3DFFN, FFNModelConfig
from neurotut.ffn.tf_checkpoint import checkpoint_prefix, is_tf_checkpoint
from neurotut.ffn.tf_model import ffn_from_tf_checkpoint, parse_model_args
from neurotut.ffn.train_config import TrainConfig
from neurotut.io import atomic_path, check_can_write, load_torch_checkpoint

CHECKPOINT_FORMAT = "neurotut-ffn-checkpoint"
CHECKPOINT_VERSION = 1
_CKPT_RE = re.compile(r"^model\.ckpt-(\d+)\.pt$")


def checkpoint_path(train_dir: str | os.PathLike, step: int) -> Path:
    """``train_dir/model.ckpt-<step>.pt`` (the original's checkpoint name plus ``.pt``)."""
    return Path(train_dir) / f"model.ckpt-{int(step)}.pt"


def latest_checkpoint(train_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``train_dir``, or None."""
    folder = Path(train_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return max(found)[1] if found else None


def prune_checkpoints(train_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` ``model.ckpt-<step>.pt`` files of ``train_dir``
    (``keep`` 0: none deleted). Returns the deleted paths."""
    if keep <= 0:
        return []
    found = sorted((int(m.group(1)), p) for p in Path(train_dir).iterdir() if (m := _CKPT_RE.match(p.name)))
    doomed = [p for _, p in found[:-keep]]
    for p in doomed:
        p.unlink()
    return doomed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (``torch.load(weights_only=True)``)."""
    state = load_torch_checkpoint(path, map_location, what="FFN checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a neurotut FFN checkpoint")
    return state


def model_from_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[ConvStack3DFFN, TrainConfig]:
    """The trained network (in eval mode) and the run's config, e.g. for inference."""
    state = load_checkpoint(path, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    model = ConvStack3DFFN(config.model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config


def load_network(path: str, model_args: Mapping, device):
    """(model, TrainConfig) of a neurotut ``.pt`` checkpoint or a google/ffn TensorFlow
    checkpoint prefix (whose fov_size / deltas come from ``model_args``)."""
    if is_tf_checkpoint(path):
        model, config, _ = ffn_from_tf_checkpoint(path, model_args)
        return model.to(device), TrainConfig(model=config)  # the original's training defaults
    if not Path(path).exists():
        raise FileNotFoundError(
            f"no such checkpoint: {path} (neither a neurotut .pt file nor a TensorFlow "
            f"checkpoint {path}.index)"
        )
    return model_from_checkpoint(path, device)


def convert_checkpoint(
    prefix: str | os.PathLike,
    out: str | os.PathLike,
    model_args: str | Mapping | None = None,
    overwrite: bool = False,
) -> tuple[Path, FFNModelConfig, int | None]:
    """Write a TensorFlow ConvStack3D checkpoint as a neurotut FFN checkpoint (``.pt``) that
    :func:`model_from_checkpoint` loads. It holds the network and the
    config only (no optimiser state: it cannot resume a training run). An existing ``out`` is
    refused unless ``overwrite``. Returns (path, config, global_step)."""
    check_can_write(out, overwrite)  # before reading anything
    model, config, step = ffn_from_tf_checkpoint(prefix, model_args)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": TrainConfig(model=config).as_dict(),
        "step": 0 if step is None else step,
        "model": model.state_dict(),
        "converted_from": {
            "tensorflow_checkpoint": str(checkpoint_prefix(prefix)),
            "global_step": step,
            "model_args": json.dumps(parse_model_args(model_args)),
        },
    }
    with atomic_path(out, overwrite) as tmp:
        torch.save(state, tmp)
    return Path(out), config, step
