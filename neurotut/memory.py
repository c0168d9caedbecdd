"""Measure what a training step keeps in memory for its backward pass, and how long it takes.

Two methods (``specs/superhuman_revnet.md`` part F):

``"saved_tensors"`` (every device)
    While the forward runs, :func:`torch.autograd.graph.saved_tensors_hooks` sees every tensor an
    operation or ``ctx.save_for_backward`` keeps for backward. Their storages are summed once each
    (views and ops that save their own output share a storage), parameters excluded. The hooks are
    blind to tensors that a custom :class:`torch.autograd.Function` keeps as plain ``ctx``
    attributes, so the autograd graph is walked as well and such tensors are added. Transient
    memory (a recompute inside backward, gradient buffers, workspaces) is not counted.
``"cuda_peak"`` (CUDA only)
    After warm-up steps (which create optimizer state, cuDNN handles and gradient buffers) the
    baseline ``torch.cuda.memory_allocated()`` is taken, the peak statistics are reset, one
    forward+backward runs, and the peak above the baseline is reported. This includes transient
    memory and the allocator's rounding, and excludes the CUDA context and cached free blocks.

Both come back as a :class:`MemoryRecord` with the step time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

METHODS = ("auto", "saved_tensors", "cuda_peak")


@dataclass(frozen=True)
class MemoryRecord:
    """One measurement of a training step.

    Attributes:
        device: where the step ran, e.g. ``"cpu"`` or ``"cuda:0"``.
        method: ``"saved_tensors"`` or ``"cuda_peak"`` (see the module docstring).
        bytes: bytes kept for backward (saved_tensors) or peak bytes above baseline (cuda_peak).
        time_s: the fastest of the timed forward+backward steps, in seconds (measured without
            hooks, with the clock given to :func:`measure_step`).
    """

    device: str
    method: str
    bytes: int
    time_s: float

    @property
    def mib(self) -> float:
        """``bytes`` in MiB."""
        return self.bytes / 2**20


class _StorageCounter:
    """Sums the bytes of distinct storages, skipping excluded ones (parameters)."""

    def __init__(self, exclude: Iterable[Tensor]):
        self._excluded = {_storage_key(t) for t in exclude}
        self._seen: dict[tuple, torch.UntypedStorage] = {}  # keeps storages alive: no reuse
        self.bytes = 0

    def add(self, t: Tensor) -> None:
        if isinstance(t, nn.Parameter) or t.layout != torch.strided or t.device.type == "meta":
            return
        key = _storage_key(t)
        if key in self._excluded or key in self._seen:
            return
        storage = t.untyped_storage()
        self._seen[key] = storage
        self.bytes += storage.nbytes()


def _storage_key(t: Tensor) -> tuple:
    return (t.device.type, t.device.index, t.untyped_storage().data_ptr())


def _tensors_in(value, depth: int = 4):
    """Tensors inside ``value``: itself, or nested in tuples, lists and dicts."""
    if isinstance(value, Tensor):
        yield value
    elif depth > 0 and isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors_in(v, depth - 1)
    elif depth > 0 and isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v, depth - 1)


def ctx_stashed_tensors(outputs: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """Tensors that custom autograd Functions in the graph of ``outputs`` keep as ctx attributes.

    A custom Function's backward node *is* its ``ctx``; its ``__dict__`` holds what the forward
    stored on it (built-in nodes have no ``__dict__``). Tensors saved with ``save_for_backward``
    are not included (the saved-tensor hooks see those).
    """
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: set[int] = set()
    found: list[Tensor] = []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for value in getattr(node, "__dict__", {}).values():
            found.extend(_tensors_in(value))
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return found


def saved_tensor_bytes(
    forward: Callable[[], Tensor], exclude: Iterable[Tensor] = ()
) -> tuple[int, Tensor]:
    """Run ``forward()`` and return (bytes it keeps for backward, its output).

    Counts distinct storages saved for backward plus tensors stashed on custom-Function ctx
    objects; tensors in ``exclude`` (pass the model's parameters) and any ``nn.Parameter`` are
    not counted. The output's graph is still alive, so call ``.backward()`` on it or drop it.
    """
    counter = _StorageCounter(exclude)

    def pack(t: Tensor) -> Tensor:
        counter.add(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    if not isinstance(out, Tensor):
        raise TypeError(f"forward() must return a tensor, got {type(out).__name__}")
    for t in ctx_stashed_tensors(out):
        counter.add(t)
    return counter.bytes, out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _backward(out: Tensor) -> None:
    (out if out.dim() == 0 else out.sum()).backward()


def measure_step(
    forward: Callable[[], Tensor],
    params: Iterable[Tensor] = (),
    *,
    method: str = "auto",
    device: torch.device | str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> MemoryRecord:
    """Measure the memory one forward+backward step keeps for backward, and its time.

    Args:
        forward: builds the graph and returns the loss (a tensor; a non-scalar is summed before
            ``.backward()``), e.g. ``lambda: model(x).square().mean()``. Gradients accumulate
            into the parameters across calls; zero them afterwards if that matters.
        params: the model's parameters; they are not counted as saved activations.
        method: ``"saved_tensors"``, ``"cuda_peak"`` or ``"auto"`` (cuda_peak on CUDA, else
            saved_tensors).
        device: the device the step runs on (default: that of the first parameter, else CPU).
        warmup: untimed steps first (optimizer state, allocator, one-off initialisation).
        repeats: timed steps; the fastest is reported.
        clock: the timer, wall time by default. On a CPU shared with other processes,
            ``time.process_time`` (CPU seconds of this process, all threads) is far less noisy.

    Returns:
        a :class:`MemoryRecord` (device, method, bytes, time_s).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    params = list(params)
    if device is None:
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if method == "auto":
        method = "cuda_peak" if device.type == "cuda" else "saved_tensors"
    if method == "cuda_peak" and device.type != "cuda":
        raise ValueError(f"method 'cuda_peak' needs a CUDA device, got {device}")

    for _ in range(max(warmup, 1 if method == "cuda_peak" else 0)):
        _backward(forward())
    times = []
    for _ in range(repeats):
        _sync(device)
        start = clock()
        _backward(forward())
        _sync(device)
        times.append(clock() - start)

    if method == "saved_tensors":
        nbytes, out = saved_tensor_bytes(forward, params)
        _backward(out)
        del out
    else:
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _backward(forward())
        _sync(device)
        nbytes = torch.cuda.max_memory_allocated(device) - base
    return MemoryRecord(str(device), method, int(nbytes), min(times))
