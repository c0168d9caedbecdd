"""google/ffn's trained TensorFlow networks as neurotut :class:`ConvStack3DFFN` models.

google/ffn's ``ConvStack3DFFNModel`` stores its convolutions under ``seed_update/``:
``conv0_a``, ``conv0_b``, the residual modules' ``conv1_a``, ``conv1_b`` ... ``conv{depth-1}_b``
and ``conv_lom``, each with ``weights`` ``(kz, ky, kx, in, out)`` float32 (for NDHWC inputs)
and ``biases`` ``(out,)``. The layout is neurotut's exactly: ``conv0_a`` + ReLU, ``conv0_b``
linear, residual modules ``x + conv_b(ReLU(conv_a(ReLU(x))))``, ReLU, ``conv_lom``; logits =
seed + output. TensorFlow's SAME padding of a stride-1 convolution with an odd kernel k pads
(k - 1) / 2 on both sides, which is PyTorch's ``padding=1`` for k = 3, and both compute a
cross-correlation, so only the weight axes change: PyTorch's ``(out, in, kz, ky, kx)`` is a
transpose ``(4, 3, 0, 1, 2)``.

Depth and features are read from the variables; the checkpoint holds no field of view or move
step, so ``fov_size`` and ``deltas`` come from the original's ``model_args`` (x, y, z).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from neurotut.ffn.model import ConvStack3DFFN, FFNModelConfig, model_args_to_zyx
from neurotut.ffn.tf_checkpoint import checkpoint_prefix, list_variables, read_checkpoint

SCOPE = "seed_update"
_LAYER_RE = re.compile(rf"^{SCOPE}/(conv0_[ab]|conv[1-9]\d*_[ab]|conv_lom)/(weights|biases)$")
_CONV_RE = re.compile(r"^conv(\d+)_([ab])$")


def parse_model_args(model_args: str | Mapping | None) -> dict:
    """The original's ``model_args``: a JSON string, a mapping, or None / "" (none)."""
    if model_args is None:
        return {}
    if isinstance(model_args, str):
        if not model_args.strip():
            return {}
        try:
            model_args = json.loads(model_args)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model_args is not valid JSON ({exc}): {model_args!r}") from None
    if not isinstance(model_args, Mapping):
        raise ValueError(f"model_args must be a JSON object, got {model_args!r}")
    return dict(model_args)


def layer_names(depth: int) -> list[str]:
    """The convolutions of a depth-``depth`` ConvStack3D, in order of use."""
    residual = [f"conv{i}_{ab}" for i in range(1, depth) for ab in "ab"]
    return ["conv0_a", "conv0_b", *residual, "conv_lom"]


def _stack_depth(prefix: Path, variables: Mapping[str, tuple[str, tuple[int, ...]]]) -> int:
    """The depth of the ConvStack3D whose variables these are; errors name what is missing."""
    layers = {}
    for name in variables:
        if m := _LAYER_RE.match(name):
            layers.setdefault(m.group(1), set()).add(m.group(2))
        elif name.startswith(f"{SCOPE}/conv") and name.count("/") == 2:
            raise ValueError(f"{prefix}: unexpected variable {name!r} (not a ConvStack3D layer)")
    if not layers:
        raise ValueError(
            f"{prefix} holds no {SCOPE}/conv* variables: not a google/ffn ConvStack3D checkpoint"
        )
    residual = [int(m.group(1)) for m in map(_CONV_RE.match, layers) if m]
    depth = max(residual, default=0) + 1
    for layer in layer_names(depth):
        missing = {"weights", "biases"} - layers.get(layer, set())
        if missing:
            raise ValueError(
                f"{prefix} is not a complete ConvStack3D: {SCOPE}/{layer}/{sorted(missing)[0]} "
                f"is missing (the checkpoint has layers up to conv{depth - 1})"
            )
    return depth


def _check_shapes(prefix: Path, variables: Mapping, depth: int) -> int:
    """Check every layer's shapes and dtypes; returns the number of features."""
    features = variables[f"{SCOPE}/conv0_a/weights"][1][-1]
    for layer in layer_names(depth):
        n_in = 2 if layer == "conv0_a" else features
        n_out = 1 if layer == "conv_lom" else features
        k = 1 if layer == "conv_lom" else 3
        for kind, shape in (("weights", (k, k, k, n_in, n_out)), ("biases", (n_out,))):
            name = f"{SCOPE}/{layer}/{kind}"
            dtype, have = variables[name]
            if tuple(have) != shape:
                raise ValueError(
                    f"{prefix}: {name} has shape {tuple(have)}, a ConvStack3D with {features} "
                    f"features needs {shape}"
                )
            if dtype not in ("float32", "float64"):
                raise ValueError(f"{prefix}: {name} has dtype {dtype}; expected float32")
    return int(features)


def config_from_variables(
    prefix: str | os.PathLike,
    variables: Mapping[str, tuple[str, tuple[int, ...]]],
    model_args: str | Mapping | None = None,
) -> FFNModelConfig:
    """The architecture of a checkpoint: depth and features from its variables, ``fov_size`` and
    ``deltas`` from ``model_args`` (x, y, z; the defaults of :class:`FFNModelConfig` where absent).
    A ``depth`` or ``features`` in ``model_args`` that contradicts the variables raises."""
    prefix = checkpoint_prefix(prefix)
    depth = _stack_depth(prefix, variables)
    features = _check_shapes(prefix, variables, depth)
    args = parse_model_args(model_args)
    asked = model_args_to_zyx(args)  # unknown keys and bad sizes raise here
    for key, found in (("depth", depth), ("features", features)):
        if key in args and getattr(asked, key) != found:
            raise ValueError(
                f"model_args {key} = {getattr(asked, key)} but the checkpoint {prefix} has "
                f"{key} {found}"
            )
    return FFNModelConfig(depth=depth, fov_size=asked.fov_size, deltas=asked.deltas, features=features)


def ffn_from_tf_checkpoint(
    prefix: str | os.PathLike, model_args: str | Mapping | None = None
) -> tuple[ConvStack3DFFN, FFNModelConfig, int | None]:
    """A google/ffn ConvStack3D TensorFlow checkpoint as a neurotut network.

    Args:
        prefix: ``PREFIX`` (e.g. ``model.ckpt-7000000``) or its ``.index`` file.
        model_args: the original's ``model_args`` (JSON or mapping, ``fov_size`` / ``deltas`` in
            x, y, z); only its ``depth`` / ``features`` are checked against the weights.

    Returns:
        (model in eval mode, float32 on the CPU; its config; the checkpoint's ``global_step``,
        None if it has none). Variables outside ``seed_update/`` are ignored.
    """
    prefix = checkpoint_prefix(prefix)
    variables = list_variables(prefix)
    config = config_from_variables(prefix, variables, model_args)
    layers = layer_names(config.depth)
    names = [f"{SCOPE}/{layer}/{kind}" for layer in layers for kind in ("weights", "biases")]
    has_step = "global_step" in variables
    arrays = read_checkpoint(prefix, names + (["global_step"] if has_step else []))
    model = ConvStack3DFFN(config)
    modules = ["conv0_a", "conv0_b"]
    modules += [f"residual.{i - 1}.conv_{ab}" for i in range(1, config.depth) for ab in "ab"]
    modules += ["conv_lom"]
    state = {}
    for module, layer in zip(modules, layers, strict=True):
        weights = arrays[f"{SCOPE}/{layer}/weights"].astype(np.float32)
        state[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(weights.transpose(4, 3, 0, 1, 2)))
        state[f"{module}.bias"] = torch.from_numpy(arrays[f"{SCOPE}/{layer}/biases"].astype(np.float32))
    model.load_state_dict(state, strict=True)
    step = int(arrays["global_step"]) if has_step else None
    return model.eval(), config, step
