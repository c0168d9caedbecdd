"""Reversible residual blocks (RevNet, Gomez et al. 2017) with an exact, memory-free backward pass.

A reversible block splits its input ``x`` of shape ``(N, C, Z, Y, X)`` along channels into two
halves ``x1, x2`` of ``C/2`` channels each and computes the additive coupling

.. math::

    y_1 = x_1 + F(x_2), \\qquad y_2 = x_2 + G(y_1)

whose inverse needs no stored activations:

.. math::

    x_2 = y_2 - G(y_1), \\qquad x_1 = y_1 - F(x_2).

``F`` and ``G`` are any modules that keep the shape of a half (here: norm -> activation -> 3D conv).

:class:`ReversibleSequence` chains such blocks and has three interchangeable memory strategies over
the *same* parameters, so they can be compared exactly:

``"plain"``
    ordinary autograd: every block keeps its activations for backward (memory grows with depth);
``"checkpoint"``
    :func:`torch.utils.checkpoint.checkpoint` (non-reentrant) around each block: each block keeps
    its input and recomputes its internals in backward (memory still grows with depth);
``"reversible"``
    one custom :class:`torch.autograd.Function` over the whole chain: the forward runs without a
    graph and keeps only the chain's output; the backward walks the blocks in reverse,
    reconstructs each block's input from its output and recomputes ``F`` and ``G`` with a graph to
    get the gradients. Activation memory is constant in the number of blocks.

Details of the reversible backward (see ``specs/superhuman_revnet.md`` parts B and C):

* **Gradients** are returned from the Function for the input and for every parameter, computed with
  :func:`torch.autograd.grad` (no nested ``.backward()``), so ``torch.autograd.grad`` on a model
  and DistributedDataParallel work as with ordinary layers.
* **Normalisation.** The recompute sees the same batch, so BatchNorm's batch statistics and hence
  the gradients are right; but in train mode BatchNorm (and InstanceNorm with
  ``track_running_stats=True``) would update its running statistics a second time. The running
  statistics are snapshotted before each recompute and restored after it, so they are updated
  exactly once per step, as in a plain network. :func:`conv_branch` defaults to GroupNorm all the
  same: at the batch size of 1 used for 3D EM patches, batch statistics are per-patch statistics
  anyway, and GroupNorm has no running statistics to get wrong.
* **Randomness.** When a block contains dropout in train mode (or ``preserve_rng_state=True``),
  the CPU and CUDA random states before every ``F`` and ``G`` call are stashed and replayed in the
  recompute, inside :func:`torch.random.fork_rng` so the caller's random stream is not disturbed.
* **Mixed precision.** Under :func:`torch.autocast` ``F`` and ``G`` run in low precision but the
  coupling sums (the residual stream that is reconstructed) stay float32: a float16/bfloat16 input
  is upcast, and ``x + F(x)`` promotes to float32. Reconstructing a bfloat16 stream is unusable
  (errors of 1e-1 at 16 blocks). The recompute in backward re-enters the forward's autocast state.
* **Storage safety.** The input tensor is never freed or overwritten (unlike memcnn's
  ``keep_input=False``): if nobody else holds it, Python frees it anyway; if something else holds
  it (a U-Net skip tap, an op that saved it), it must stay. So a reversible chain can be used with
  skip connections around it. What can go wrong is caught with a clear error instead of wrong
  gradients: ``F``/``G`` changing their input in place, ``F``/``G`` changing the shape, and the
  chain's output being modified in place after the forward.
* **torch.compile** sees the chain as one opaque call (``torch.compiler.disable``): letting the
  compiler trace it would let it decide what to save for backward. Layers around it compile.

What ``tests/test_reversible.py`` checks on a CPU: gradients equal to plain autograd (float64 to
1e-10, float32 to 1e-4) with GroupNorm, BatchNorm and InstanceNorm, dropout, shared weights,
frozen parameters and ``torch.autograd.grad``; BatchNorm running statistics after a step equal to
plain; bfloat16 autocast; a skip tap around the chain; saved memory flat in depth;
``torch.compile`` with the ``aot_eager`` and ``inductor`` backends; DistributedDataParallel with
the gloo backend in one process (two optimizer steps) and in two processes (gradients averaged
over ranks). CUDA (RNG replay of CUDA generators, CUDA autocast, NCCL) is not covered by the tests.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

MODES = ("plain", "checkpoint", "reversible")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def conv_branch(
    channels: int,
    *,
    kernel_size: int | tuple[int, int, int] = 3,
    norm: str | None = "group",
    groups: int = 8,
    activation: str = "leaky_relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """One residual branch (``F`` or ``G``): norm -> activation -> [dropout] -> Conv3d ("same").

    Pre-activation order as in the partially reversible U-Net of Bruegger et al. 2019. Maps
    ``(N, channels, Z, Y, X)`` to the same shape.

    Args:
        channels: channels of the half-stream the branch acts on.
        kernel_size: odd conv kernel, an int or (kz, ky, kx), e.g. ``(1, 3, 3)`` for anisotropic
            EM.
        norm: ``"group"`` (GroupNorm with ``gcd(channels, groups)`` groups), ``"batch"``
            (BatchNorm3d), ``"instance"`` (InstanceNorm3d with affine parameters) or None.
        groups: the wished number of GroupNorm groups.
        activation: ``"leaky_relu"``, ``"relu"`` or ``"elu"`` (never in place).
        dropout: dropout probability before the conv (0 disables it).
    """
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(ks) != 3 or any(k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"kernel_size must be odd and 3D (kz, ky, kx), got {kernel_size!r}")
    layers: list[nn.Module] = []
    if norm == "group":
        layers.append(nn.GroupNorm(math.gcd(channels, groups), channels))
    elif norm == "batch":
        layers.append(nn.BatchNorm3d(channels))
    elif norm == "instance":
        layers.append(nn.InstanceNorm3d(channels, affine=True))
    elif norm is not None:
        raise ValueError(f"norm must be 'group', 'batch', 'instance' or None, got {norm!r}")
    activations = {"leaky_relu": nn.LeakyReLU, "relu": nn.ReLU, "elu": nn.ELU}
    if activation not in activations:
        raise ValueError(f"activation must be one of {sorted(activations)}, got {activation!r}")
    layers.append(activations[activation]())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(
        nn.Conv3d(channels, channels, ks, padding=tuple(k // 2 for k in ks), bias=False)
    )
    return nn.Sequential(*layers)


def _apply_checked(module: nn.Module, inp: Tensor, name: str) -> Tensor:
    """``module(inp)``, refusing in-place changes of ``inp`` and changes of shape."""
    tracked = not inp.is_inference()  # inference tensors have no version counter
    version = inp._version if tracked else 0
    out = module(inp)
    if tracked and inp._version != version:
        raise RuntimeError(
            f"{name} modified its input in place (e.g. an inplace activation as its first layer); "
            "a reversible block needs that input unchanged to compute and invert the coupling. "
            "Use out-of-place operations at the start of the branch."
        )
    if out.shape != inp.shape:
        raise ValueError(
            f"{name} must keep the shape of its input: got {tuple(out.shape)} from "
            f"{tuple(inp.shape)}. Put channel changes, pooling and upsampling outside the "
            "reversible blocks."
        )
    return out


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    if x.dim() < 2 or x.shape[1] % 2:
        raise ValueError(
            "a reversible block needs input (N, C, ...) with an even number of channels C, "
            f"got shape {tuple(x.shape)}"
        )
    x1, x2 = x.chunk(2, dim=1)
    return x1, x2


def _stream(x: Tensor) -> Tensor:
    """Keep the residual stream in float32 under autocast (upcast a float16/bfloat16 input)."""
    if x.dtype in _LOW_PRECISION and torch.is_autocast_enabled(x.device.type):
        return x.float()
    return x


class ReversibleBlock(nn.Module):
    """Additive coupling ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` on ``(N, C, ...)``, C even.

    ``F`` and ``G`` act on ``C/2`` channels and must keep the shape. Calling the block uses ordinary
    autograd; wrap blocks in :class:`ReversibleSequence` to save memory.
    """

    def __init__(self, f: nn.Module, g: nn.Module):
        super().__init__()
        self.f = f
        self.g = g

    def forward_halves(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        """Equations (1)-(2): ``(x1, x2) -> (y1, y2)``."""
        y1, y2, _ = _coupling(self, x1, x2)
        return y1, y2

    def inverse_halves(self, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor]:
        """Equations (3)-(4): ``(y1, y2) -> (x1, x2)``."""
        return _inverse_coupling(self, y1, y2)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, ...) -> (N, C, ...)``."""
        y1, y2 = self.forward_halves(*_split(_stream(x)))
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        """Reconstruct the input from the output: ``(N, C, ...) -> (N, C, ...)``."""
        x1, x2 = self.inverse_halves(*_split(_stream(y)))
        return torch.cat([x1, x2], dim=1)


# --------------------------------------------------------------------------------------------
# state that the recompute must reproduce: random numbers, autocast, running statistics
# --------------------------------------------------------------------------------------------


class _RngState(NamedTuple):
    """CPU random state and, for a CUDA tensor, that device's state (plain tensors, so that
    :mod:`neurotut.memory` sees them when they are stashed on a ctx)."""

    cpu: Tensor
    cuda: Tensor | None
    cuda_index: int | None

    @classmethod
    def capture(cls, device: torch.device) -> _RngState:
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            return cls(torch.get_rng_state(), torch.cuda.get_rng_state(index), index)
        return cls(torch.get_rng_state(), None, None)

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the body with this random state; the caller's state is restored afterwards."""
        devices = [] if self.cuda_index is None else [self.cuda_index]
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.cuda_index)
            yield


def _maybe_replay(state: _RngState | None):
    return nullcontext() if state is None else state.replay()


@dataclass(frozen=True)
class _AutocastState:
    device_type: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def capture(cls, device_type: str) -> _AutocastState:
        return cls(
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )

    def context(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


@contextmanager
def _running_stats_preserved(module: nn.Module) -> Iterator[None]:
    """Undo, on exit, the running-statistics updates that norms in train mode make in the body."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.training and m.track_running_stats:
            buffers = (m.running_mean, m.running_var, m.num_batches_tracked)
            saved.append((buffers, [b.clone() if b is not None else None for b in buffers]))
    try:
        yield
    finally:
        with torch.no_grad():
            for buffers, copies in saved:
                for b, c in zip(buffers, copies):
                    if b is not None:
                        b.copy_(c)


def has_dropout(module: nn.Module) -> bool:
    """True when ``module`` contains a dropout layer in train mode with p > 0."""
    return any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0
        for m in module.modules()
    )


def _coupling(
    block: ReversibleBlock, x1: Tensor, x2: Tensor, rng_device: torch.device | None = None
) -> tuple[Tensor, Tensor, tuple[_RngState | None, _RngState | None]]:
    """Equations (1)-(2); with ``rng_device``, also the random states before ``F`` and ``G``."""
    rng_f = None if rng_device is None else _RngState.capture(rng_device)
    y1 = x1 + _apply_checked(block.f, x2, "F")
    rng_g = None if rng_device is None else _RngState.capture(rng_device)
    y2 = x2 + _apply_checked(block.g, y1, "G")
    return y1, y2, (rng_f, rng_g)


def _inverse_coupling(
    block: ReversibleBlock,
    y1: Tensor,
    y2: Tensor,
    rng: tuple[_RngState | None, _RngState | None] = (None, None),
) -> tuple[Tensor, Tensor]:
    """Equations (3)-(4), replaying the random states that :func:`_coupling` recorded."""
    with _maybe_replay(rng[1]):
        x2 = y2 - _apply_checked(block.g, y1, "G")
    with _maybe_replay(rng[0]):
        x1 = y1 - _apply_checked(block.f, x2, "F")
    return x1, x2


# --------------------------------------------------------------------------------------------
# the reversible autograd Function
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What the Function needs besides tensors: the blocks and where their parameters sit."""

    blocks: Sequence[ReversibleBlock]
    params: tuple[Tensor, ...]  # unique trainable parameters, in the order passed to apply
    f_index: list[tuple[int, ...]]  # per block: positions of F's parameters in ``params``
    g_index: list[tuple[int, ...]]
    preserve_rng: bool

    @classmethod
    def build(cls, blocks: Sequence[ReversibleBlock], preserve_rng: bool) -> _Plan:
        params: list[Tensor] = []
        position: dict[int, int] = {}

        def index(module: nn.Module) -> tuple[int, ...]:
            out = []
            for p in module.parameters():
                if not p.requires_grad:
                    continue
                if id(p) not in position:  # shared weights appear once
                    position[id(p)] = len(params)
                    params.append(p)
                out.append(position[id(p)])
            return tuple(out)

        f_index = [index(b.f) for b in blocks]
        g_index = [index(b.g) for b in blocks]
        return cls(blocks, tuple(params), f_index, g_index, preserve_rng)


def _recompute_vjp(
    module: nn.Module,
    inp: Tensor,
    grad_out: Tensor,
    params: tuple[Tensor, ...],
    rng: _RngState | None,
    autocast: _AutocastState,
) -> tuple[Tensor, Tensor | None, tuple[Tensor | None, ...]]:
    """Recompute ``out = module(inp)`` with a graph and return ``(out, d inp, d params)``."""
    leaf = inp.detach().requires_grad_(True)
    with _running_stats_preserved(module):
        with torch.enable_grad(), autocast.context(), _maybe_replay(rng):
            out = module(leaf)
        if not out.requires_grad:  # a branch that ignores its input and has no trainable weights
            return out.detach(), None, (None,) * len(params)
        grads = torch.autograd.grad(
            out, (leaf, *params), grad_out.to(out.dtype), allow_unused=True
        )
    return out.detach(), grads[0], grads[1:]


def _add(a: Tensor, b: Tensor | None) -> Tensor:
    return a if b is None else a + b


class _ReversibleFunction(torch.autograd.Function):
    """Forward of a chain of reversible blocks without a graph; backward by reconstruction."""

    @staticmethod
    def forward(ctx, plan: _Plan, x: Tensor, *params: Tensor) -> Tensor:
        x1, x2 = _split(x)
        rng_device = x.device if plan.preserve_rng else None
        rng = []
        for block in plan.blocks:
            # the previous halves are dropped here: nothing keeps them
            x1, x2, states = _coupling(block, x1, x2, rng_device)
            rng.append(states)
        y = torch.cat([x1, x2], dim=1)
        ctx.save_for_backward(y)
        ctx.plan = plan
        ctx.rng = rng if plan.preserve_rng else None
        ctx.autocast = _AutocastState.capture(x.device.type)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        plan: _Plan = ctx.plan
        try:
            (y,) = ctx.saved_tensors
        except RuntimeError as exc:
            raise RuntimeError(
                "the output of a ReversibleSequence was modified in place after the forward pass "
                "(e.g. by an inplace activation or `+=`); the reversible backward reconstructs all "
                "activations from that output, so it must stay unchanged. Use an out-of-place "
                "operation or `.clone()` the output first."
            ) from exc
        y1, y2 = _split(y)
        dy1, dy2 = _split(grad_y)
        del y
        param_grads: list[Tensor | None] = [None] * len(plan.params)

        def accumulate(index: tuple[int, ...], grads: tuple[Tensor | None, ...]) -> None:
            for i, grad in zip(index, grads):
                if grad is not None:
                    param_grads[i] = grad if param_grads[i] is None else param_grads[i] + grad

        for k in reversed(range(len(plan.blocks))):
            block = plan.blocks[k]
            rng_f, rng_g = ctx.rng[k] if ctx.rng is not None else (None, None)
            # G: recompute from y1, reconstruct x2, and push dy2 through it
            g_params = tuple(plan.params[i] for i in plan.g_index[k])
            g, dz1, grads = _recompute_vjp(block.g, y1, dy2, g_params, rng_g, ctx.autocast)
            accumulate(plan.g_index[k], grads)
            x2 = y2 - g
            dz1 = _add(dy1, dz1)
            del g
            # F: recompute from x2, reconstruct x1, and push dz1 through it
            f_params = tuple(plan.params[i] for i in plan.f_index[k])
            f, dx2, grads = _recompute_vjp(block.f, x2, dz1, f_params, rng_f, ctx.autocast)
            accumulate(plan.f_index[k], grads)
            x1 = y1 - f
            dx2 = _add(dy2, dx2)
            del f
            # hand the reconstructed input and its gradient to the previous block; this block's
            # outputs are no longer referenced and are freed
            y1, y2, dy1, dy2 = x1, x2, dz1, dx2

        grad_x = torch.cat([dy1, dy2], dim=1) if ctx.needs_input_grad[1] else None
        return (None, grad_x, *param_grads)


@torch.compiler.disable
def _apply_reversible(blocks: list[ReversibleBlock], preserve_rng: bool, x: Tensor) -> Tensor:
    """Run the chain through :class:`_ReversibleFunction`.

    Kept out of ``torch.compile`` on purpose: a traced version would let the compiler choose what
    to save for backward, which defeats the point; the layers around the chain still compile.
    """
    plan = _Plan.build(blocks, preserve_rng)
    return _ReversibleFunction.apply(plan, x, *plan.params)


# --------------------------------------------------------------------------------------------
# the sequence module
# --------------------------------------------------------------------------------------------


class ReversibleSequence(nn.Module):
    """A chain of :class:`ReversibleBlock` with a selectable memory strategy.

    Args:
        blocks: the reversible blocks, applied in order.
        mode: ``"reversible"`` (default; constant activation memory), ``"checkpoint"`` or
            ``"plain"`` (see the module docstring). Can be changed later via ``.mode``.
        preserve_rng_state: replay random numbers in the recompute; None (default) does it when a
            block contains dropout in train mode.

    Input and output ``(N, C, Z, Y, X)`` (any number of trailing axes), C even; float32 output
    under autocast.
    """

    def __init__(
        self,
        blocks: Iterable[ReversibleBlock],
        mode: str = "reversible",
        preserve_rng_state: bool | None = None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        for b in self.blocks:
            if not isinstance(b, ReversibleBlock):
                raise TypeError(f"ReversibleSequence takes ReversibleBlock, got {type(b).__name__}")
        self.mode = mode
        self.preserve_rng_state = preserve_rng_state

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {value!r}")
        self._mode = value

    def __len__(self) -> int:
        return len(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = _stream(x)
        _split(x)  # clear error for an odd channel count, whatever the mode
        needs_graph = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if self.mode == "plain" or not needs_graph or len(self.blocks) == 0:
            for block in self.blocks:
                x = block(x)
            return x
        if self.mode == "checkpoint":
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        preserve = self.preserve_rng_state
        if preserve is None:
            preserve = has_dropout(self)
        return _apply_reversible(list(self.blocks), bool(preserve), x)

    def inverse(self, y: Tensor) -> Tensor:
        """Reconstruct the chain's input from its output (no graph is kept for the inverse)."""
        y1, y2 = _split(_stream(y))
        for block in reversed(self.blocks):
            y1, y2 = block.inverse_halves(y1, y2)
        return torch.cat([y1, y2], dim=1)


def reversible_stack(
    channels: int, depth: int, mode: str = "reversible", **branch_kwargs
) -> ReversibleSequence:
    """``depth`` reversible blocks on a stream of ``channels`` (even) channels.

    ``F`` and ``G`` are :func:`conv_branch` on ``channels // 2`` channels; ``branch_kwargs`` are
    passed to it (kernel_size, norm, groups, activation, dropout).
    """
    if channels < 2 or channels % 2:
        raise ValueError(f"channels must be even and >= 2, got {channels}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    half = channels // 2
    blocks = [
        ReversibleBlock(conv_branch(half, **branch_kwargs), conv_branch(half, **branch_kwargs))
        for _ in range(depth)
    ]
    return ReversibleSequence(blocks, mode=mode)


# --------------------------------------------------------------------------------------------
# invertibility check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvertibilityReport:
    """Reconstruction errors of a chain of reversible blocks on one input.

    ``block_*[k]``: error of block k alone, ``max|x_k - inverse_k(forward_k(x_k))|`` where ``x_k``
    is the input that block k sees in the chain. ``stack_*[i]``: error of the first
    ``d = stack_depths[i]`` blocks together, ``max|x_0 - inverse_1..d(forward_1..d(x_0))|``.
    Relative errors divide by ``max|x_k|`` (``max|x_0|`` for the stack).
    """

    dtype: torch.dtype
    block_abs: tuple[float, ...]
    block_rel: tuple[float, ...]
    stack_depths: tuple[int, ...]
    stack_abs: tuple[float, ...]
    stack_rel: tuple[float, ...]


def check_invertibility(
    blocks: ReversibleSequence | Iterable[ReversibleBlock],
    x: Tensor,
    dtype: torch.dtype | None = None,
    stack_depths: Iterable[int] | None = None,
) -> InvertibilityReport:
    """Run ``x`` through the blocks, reconstruct the inputs from the outputs, report the errors.

    The check works on a copy of the blocks converted to ``dtype`` (default: ``x.dtype``), so the
    caller's modules, their running statistics and the random stream are untouched. Dropout masks
    are replayed in the inverse. Each stack depth d costs d inverse block evaluations.

    Args:
        blocks: a :class:`ReversibleSequence` or reversible blocks, in order.
        x: ``(N, C, Z, Y, X)`` floating input, C even.
        dtype: the precision to check, e.g. ``torch.float32`` or ``torch.float64``.
        stack_depths: numbers of leading blocks whose stack error is reported (default: every
            depth 1..len(blocks)).
    """
    blocks = list(blocks.blocks if isinstance(blocks, ReversibleSequence) else blocks)
    if not blocks:
        raise ValueError("check_invertibility needs at least one block")
    depths = tuple(range(1, len(blocks) + 1) if stack_depths is None else stack_depths)
    if any(not 1 <= d <= len(blocks) for d in depths):
        raise ValueError(f"stack_depths must lie in 1..{len(blocks)}, got {depths}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    dtype = x.dtype if dtype is None else dtype
    device = x.device
    blocks = [copy.deepcopy(b).to(dtype) for b in blocks]
    with torch.no_grad(), torch.random.fork_rng(
        devices=[device.index or 0] if device.type == "cuda" else [], device_type="cuda"
    ):
        x1, x2 = _split(x.detach().to(dtype))
        inputs: list[tuple[Tensor, Tensor]] = []
        rng: list[tuple[_RngState, _RngState]] = []
        block_abs, block_rel = [], []
        for block in blocks:
            inputs.append((x1, x2))
            y1, y2, states = _coupling(block, x1, x2, device)
            rng.append(states)
            r1, r2 = _inverse_coupling(block, y1, y2, states)
            abs_err = max(_max_abs(r1 - x1), _max_abs(r2 - x2))
            block_abs.append(abs_err)
            block_rel.append(abs_err / max(_max_abs(x1), _max_abs(x2), 1e-30))
            x1, x2 = y1, y2
        outputs = [(inputs[k + 1] if k + 1 < len(blocks) else (x1, x2)) for k in range(len(blocks))]
        scale = max(_max_abs(inputs[0][0]), _max_abs(inputs[0][1]), 1e-30)
        stack_abs, stack_rel = [], []
        for depth in depths:
            r1, r2 = outputs[depth - 1]
            for k in reversed(range(depth)):
                r1, r2 = _inverse_coupling(blocks[k], r1, r2, rng[k])
            err = max(_max_abs(r1 - inputs[0][0]), _max_abs(r2 - inputs[0][1]))
            stack_abs.append(err)
            stack_rel.append(err / scale)
    return InvertibilityReport(
        dtype, tuple(block_abs), tuple(block_rel), depths, tuple(stack_abs), tuple(stack_rel)
    )


def _max_abs(t: Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0
