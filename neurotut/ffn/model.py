"""The Flood-Filling Network: google/ffn's ``ConvStack3DFFNModel`` in PyTorch.

The network sees two channels of the same (Z, Y, X) field of view (FOV): the normalised EM image
and the current object mask ("seed", "POM") in **logit** space. It predicts a correction that is
**added** to the input seed logits, so its output is the updated object mask, again as logits:

    conv0_a (3x3x3, 2 -> F, ReLU) -> conv0_b (3x3x3, F -> F, linear)
    -> (depth - 1) pre-activation residual modules:  x + conv(ReLU(conv(ReLU(x))))   (2nd conv linear)
    -> ReLU -> conv_lom (1x1x1, F -> 1, linear)
    logits = seed + conv_lom(...)

All 3x3x3 convolutions use zero ("SAME") padding, stride 1 and a bias; there is no normalisation,
pooling or dropout, and input, seed and output have the same size. Weights are Glorot-uniform and
biases zero, the tf-slim default the original uses. With F = 32 features the model has 472,353
parameters at depth 9 and 638,433 at depth 12, exactly as the original.

Conventions: tensors are ``(B, C, Z, Y, X)``; ``fov_size`` and ``deltas`` are stored z, y, x here.
The original's ``model_args`` give them x, y, z: convert once with :func:`model_args_to_zyx`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurotut.geometry import as_zyx, xyz_to_zyx


def logit(p: float) -> float:
    """``ln(p / (1 - p))``: logit(0.95) = 2.944, logit(0.05) = -2.944, logit(0.9) = 2.197,
    logit(0.6) = 0.405: the scale of the network's output and of seed canvases."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"logit needs a probability strictly between 0 and 1, got {p}")
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class FFNModelConfig:
    """Architecture of a ConvStack3D FFN. Sizes are (z, y, x) voxels.

    ``fov_size`` must be odd on every axis (the FOV has a centre voxel); ``deltas`` (the step of a
    field-of-view move) must be non-negative and smaller than half the FOV.
    """

    depth: int = 9
    fov_size: tuple[int, int, int] = (17, 33, 33)
    deltas: tuple[int, int, int] = (4, 8, 8)
    features: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "fov_size", as_zyx(self.fov_size, "fov_size", None))
        object.__setattr__(self, "deltas", as_zyx(self.deltas, "deltas", None))
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.features < 1:
            raise ValueError(f"features must be at least 1, got {self.features}")
        if any(s < 1 or s % 2 == 0 for s in self.fov_size):
            raise ValueError(f"fov_size (z, y, x) must be odd and positive, got {self.fov_size}")
        if any(d < 0 or d > s // 2 for d, s in zip(self.deltas, self.fov_size)):
            raise ValueError(
                f"deltas (z, y, x) = {self.deltas} must be between 0 and half the FOV "
                f"{self.fov_size} (a move must keep the old centre inside the new FOV)"
            )

    def as_dict(self) -> dict:
        """Plain types (lists), z, y, x; what checkpoints store."""
        return {
            "depth": self.depth,
            "fov_size": list(self.fov_size),
            "deltas": list(self.deltas),
            "features": self.features,
        }


def model_args_to_zyx(model_args: Mapping) -> FFNModelConfig:
    """The original's ``--model_args`` (``fov_size`` and ``deltas`` in **x, y, z**) -> config (z, y, x).

    ``{"depth": 9, "fov_size": [33, 33, 17], "deltas": [8, 8, 4]}`` gives fov (17, 33, 33) and
    deltas (4, 8, 8). Unknown keys raise ValueError.
    """
    known = {"depth", "fov_size", "deltas", "features"}
    unknown = set(model_args) - known
    if unknown:
        raise ValueError(f"unknown model_args {sorted(unknown)}; known: {sorted(known)}")
    kwargs: dict = {}
    if "depth" in model_args:
        kwargs["depth"] = int(model_args["depth"])
    if "features" in model_args:
        kwargs["features"] = int(model_args["features"])
    for key in ("fov_size", "deltas"):
        if key in model_args:
            kwargs[key] = xyz_to_zyx(as_zyx(model_args[key], key, None))
    return FFNModelConfig(**kwargs)


def shifts(deltas: Sequence[int]) -> list[tuple[int, int, int]]:
    """The 26 FOV moves: every non-zero combination of {-d, 0, +d} per axis (diagonals included).

    ``deltas`` (z, y, x); returns (dz, dy, dx) tuples in a fixed (lexicographic) order. An axis
    with delta 0 contributes no moves, so duplicates are dropped.
    """
    dz, dy, dx = as_zyx(deltas, "deltas", None)
    out: list[tuple[int, int, int]] = []
    for move in itertools.product((-dz, 0, dz), (-dy, 0, dy), (-dx, 0, dx)):
        if move != (0, 0, 0) and move not in out:
            out.append(move)
    return out


def receptive_field(depth: int) -> int:
    """Receptive field (voxels per axis) of a depth-``depth`` stack: 2 * depth 3x3x3 convs."""
    return 1 + 2 * (2 * depth)


def _conv(x: torch.Tensor, conv: nn.Conv3d, axes: tuple[int, int, int]) -> torch.Tensor:
    """``conv(x)`` on an input whose spatial axes were permuted by ``axes`` (the weights and the
    padding are permuted the same way, so the result is the permuted output of ``conv``)."""
    if axes == (0, 1, 2):
        return conv(x)
    weight = conv.weight.permute(0, 1, *(2 + a for a in axes))
    padding = tuple(conv.padding[a] for a in axes)
    return F.conv3d(x, weight, conv.bias, padding=padding)


def cpu_axis_order(x: torch.Tensor) -> tuple[int, int, int]:
    """The order of the spatial axes of ``x`` ``(B, C, Z, Y, X)`` in which the stack runs.

    On a CPU at batch 1, PyTorch sends a 3D convolution whose ``C * Z * Y`` is at most 20,480 to
    its slow reference kernel instead of oneDNN: the SNEMI3D network's 17 x 33 x 33 FOV with 32
    features is such a case (about 16x slower per step than with the axes reordered). Putting the
    shortest spatial axis last leaves the result unchanged and takes the fast kernel, so a single
    flood-fill step costs what a step of a batch costs. Elsewhere the order is unchanged.
    """
    if x.device.type != "cpu" or x.shape[0] != 1:
        return (0, 1, 2)
    spatial = x.shape[2:]
    return tuple(sorted(range(3), key=lambda a: -spatial[a]))  # stable: longest first


class ResidualModule(nn.Module):
    """Pre-activation residual module: ``x + conv_b(ReLU(conv_a(ReLU(x))))``, conv_b linear."""

    def __init__(self, features: int):
        super().__init__()
        self.conv_a = nn.Conv3d(features, features, 3, padding=1)
        self.conv_b = nn.Conv3d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor, axes: tuple[int, int, int] = (0, 1, 2)) -> torch.Tensor:
        y = _conv(torch.relu(x), self.conv_a, axes)
        y = _conv(torch.relu(y), self.conv_b, axes)
        return x + y


class ConvStack3DFFN(nn.Module):
    """The FFN network. ``forward(image, seed)`` with both ``(B, 1, Z, Y, X)`` float32 returns the
    updated object-mask logits ``(B, 1, Z, Y, X)`` float32 (``seed + correction``).

    The model is fully convolutional; ``config.fov_size`` is the size it is trained and run at.
    """

    def __init__(self, config: FFNModelConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = FFNModelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        self.config = config
        f = config.features
        self.conv0_a = nn.Conv3d(2, f, 3, padding=1)
        self.conv0_b = nn.Conv3d(f, f, 3, padding=1)
        self.residual = nn.ModuleList(ResidualModule(f) for _ in range(config.depth - 1))
        self.conv_lom = nn.Conv3d(f, 1, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases (the tf-slim default of the original)."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def fov_size(self) -> tuple[int, int, int]:
        return self.config.fov_size

    @property
    def deltas(self) -> tuple[int, int, int]:
        return self.config.deltas

    def correction(self, image: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        """The stack's output alone, ``(B, 1, Z, Y, X)``, before it is added to the seed."""
        x = torch.cat([image, seed], dim=1)
        axes = cpu_axis_order(x)
        if axes != (0, 1, 2):
            x = x.permute(0, 1, *(2 + a for a in axes)).contiguous()
        x = torch.relu(_conv(x, self.conv0_a, axes))
        x = _conv(x, self.conv0_b, axes)
        for module in self.residual:
            x = module(x, axes)
        x = _conv(torch.relu(x), self.conv_lom, axes)
        if axes != (0, 1, 2):
            x = x.permute(0, 1, *(2 + axes.index(a) for a in range(3)))
        return x

    def forward(self, image: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        if image.ndim != 5 or image.shape[1] != 1 or image.shape != seed.shape:
            raise ValueError(
                "image and seed must both be (B, 1, Z, Y, X) of the same shape, got "
                f"{tuple(image.shape)} and {tuple(seed.shape)}"
            )
        # the additive update; under autocast the correction may be low precision, the sum is not
        return seed + self.correction(image, seed).to(seed.dtype)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_table(model: ConvStack3DFFN) -> list[tuple[str, str, tuple[int, ...], int]]:
    """One row per convolution: (name, kernel as text, weight shape, parameters incl. bias)."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv3d):
            k = "x".join(str(s) for s in m.kernel_size)
            n = m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
            rows.append((name, k, tuple(m.weight.shape), n))
    return rows
