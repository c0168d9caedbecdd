"""BatchNorm statistics for evaluation: exact averages over fixed batches.

Running averages lag behind weights that change fast (large learning rates, short runs), which
makes eval-mode predictions much worse than the network is; :func:`recalibrate_batchnorm`
recomputes them exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(model: nn.Module, batches: Sequence[Tensor]) -> nn.Module:
    """A copy of ``model`` in eval mode whose BatchNorm running statistics are the exact averages
    over ``batches`` (each ``(N, C, Z, Y, X)``, run in train mode without gradients).

    The model itself is not changed. Without BatchNorm layers (or without batches) the copy is
    returned as it is.
    """
    clone = copy.deepcopy(model)
    norms = batchnorms(clone)
    if norms and batches:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
        clone.train()
        with torch.no_grad():
            for x in batches:
                clone(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return clone.eval()


def norm_buffers(model: nn.Module) -> dict[str, Tensor]:
    """Copies of the BatchNorm buffers (running mean, variance, count) by state-dict name."""
    names = {id(m) for m in batchnorms(model)}
    return {
        f"{mod_name}.{b_name}" if mod_name else b_name: buf.detach().clone()
        for mod_name, mod in model.named_modules() if id(mod) in names
        for b_name, buf in mod.named_buffers(recurse=False)
    }
