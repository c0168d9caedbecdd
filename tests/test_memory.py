"""Tests for neurotut.memory: exact byte counts on hand-built graphs, deduplication, exclusions and
tensors stashed on a custom Function's ctx."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurotut.memory import MemoryRecord, ctx_stashed_tensors, measure_step, saved_tensor_bytes


def test_counts_saved_tensors_and_excludes_parameters():
    x = torch.randn(1000, requires_grad=True)
    w = nn.Parameter(torch.randn(1000))
    # mul saves x (for w's grad) and w (excluded), exp saves its output; sum saves nothing
    nbytes, out = saved_tensor_bytes(lambda: (x * w).exp().sum(), [w])
    assert nbytes == 2 * 1000 * 4
    out.backward()
    assert w.grad is not None  # the graph still worked


def test_excluded_plain_tensors_are_not_counted():
    x = torch.randn(500, dtype=torch.float64, requires_grad=True)
    nbytes, _ = saved_tensor_bytes(lambda: x.sin().sum(), [x])  # sin saves x, which is excluded
    assert nbytes == 0
    nbytes, _ = saved_tensor_bytes(lambda: x.sin().sum())
    assert nbytes == 500 * 8


def test_views_of_one_storage_count_once():
    x = torch.randn(1000, requires_grad=True)

    def forward():
        y = x.exp()  # saves y
        return y[:500].sin().sum() + y[500:].cos().sum()  # both save views of y

    nbytes, _ = saved_tensor_bytes(forward)
    assert nbytes == 1000 * 4


class StashOnCtx(torch.autograd.Function):
    """Keeps a tensor as a plain ctx attribute, which saved-tensor hooks cannot see."""

    @staticmethod
    def forward(ctx, a):
        ctx.kept = (a * 2, [a + 1])
        return a * 3

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


def test_ctx_attributes_are_found_and_counted():
    a = torch.randn(256, 256, requires_grad=True)
    out = StashOnCtx.apply(a)
    stash = ctx_stashed_tensors(out.sum())
    assert len(stash) == 2 and all(t.shape == a.shape for t in stash)
    nbytes, loss = saved_tensor_bytes(lambda: StashOnCtx.apply(a).sum())
    assert nbytes == 2 * a.nbytes
    loss.backward()
    assert torch.equal(a.grad, torch.full_like(a, 3.0))


def test_measure_step_record():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    x = torch.randn(32, 64)
    record = measure_step(lambda: model(x).square().mean(), model.parameters(), repeats=2)
    assert isinstance(record, MemoryRecord)
    assert record.device == "cpu" and record.method == "saved_tensors"
    # x (first Linear), tanh output (tanh and second Linear share it), second Linear output
    assert record.bytes == x.nbytes + 32 * 64 * 4 + 32 * 1 * 4
    assert record.time_s > 0 and record.mib == record.bytes / 2**20


def test_measure_step_rejects_bad_arguments():
    x = torch.randn(4, requires_grad=True)
    with pytest.raises(ValueError, match="method"):
        measure_step(lambda: x.exp().sum(), method="nvidia-smi")
    with pytest.raises(ValueError, match="CUDA"):
        measure_step(lambda: x.exp().sum(), method="cuda_peak", device="cpu")
    with pytest.raises(ValueError, match="repeats"):
        measure_step(lambda: x.exp().sum(), repeats=0)
    with pytest.raises(TypeError, match="tensor"):
        saved_tensor_bytes(lambda: 3.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_grows_with_saved_activations():
    x = torch.randn(1 << 20, device="cuda", requires_grad=True)

    def chain(n: int):
        y = x.exp()
        for _ in range(n):
            y = y.sin()  # each sin keeps its input: one more x-sized tensor for backward
        return y.sum()

    one = measure_step(lambda: chain(0), [x], method="cuda_peak")
    eight = measure_step(lambda: chain(8), [x], method="cuda_peak")
    assert one.method == "cuda_peak" and one.device.startswith("cuda")
    assert eight.bytes >= one.bytes + 4 * x.nbytes


def test_measure_step_uses_the_given_clock():
    ticks = iter(range(0, 1000, 5))  # every reading 5 "seconds" after the previous one
    x = torch.randn(16, requires_grad=True)
    record = measure_step(lambda: x.exp().sum(), clock=lambda: float(next(ticks)), repeats=3)
    assert record.time_s == 5.0
