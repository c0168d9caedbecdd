"""Tests for neurotut.models.reversible: coupling, exact gradients, norms, RNG, autocast, safety,
memory flatness, torch.compile and DDP."""

from __future__ import annotations

import copy
import os
import shutil
import time

import pytest
import torch
from torch import nn

from neurotut.memory import ctx_stashed_tensors, measure_step, saved_tensor_bytes
from neurotut.models.reversible import (
    ReversibleBlock,
    ReversibleSequence,
    check_invertibility,
    conv_branch,
    reversible_stack,
)

SHAPE = (2, 8, 4, 6, 6)  # (N, C, Z, Y, X): small enough for 2 CPU cores


def make_stack(depth=3, dtype=torch.float64, seed=0, **kw) -> ReversibleSequence:
    torch.manual_seed(seed)
    return reversible_stack(SHAPE[1], depth, **kw).to(dtype)


def run_step(model, x, mode, seed=1, loss_fn=None):
    """One forward+backward of a copy of ``model`` in ``mode``; returns (copy, x.grad, output)."""
    model = copy.deepcopy(model)
    model.mode = mode
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = model(x)
    loss = loss_fn(out) if loss_fn else (out.square().sum() + out[:, :3].mean())
    loss.backward()
    return model, x.grad, out.detach()


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def assert_same_grads(a: nn.Module, b: nn.Module, tol: float) -> None:
    names = 0
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert pa.grad is not None and pb.grad is not None, name
        assert max_rel(pa.grad, pb.grad) <= tol, (name, max_rel(pa.grad, pb.grad))
        names += 1
    assert names > 0


# ------------------------------------------------------------------ coupling and its inverse


def test_block_computes_the_coupling_equations():
    torch.manual_seed(0)
    f = nn.Conv3d(4, 4, 3, padding=1).double()
    g = nn.Sequential(nn.Tanh(), nn.Conv3d(4, 4, 1)).double()
    block = ReversibleBlock(f, g)
    x = torch.randn(SHAPE, dtype=torch.float64)
    x1, x2 = x[:, :4], x[:, 4:]
    y1 = x1 + f(x2)
    y2 = x2 + g(y1)
    y = block(x)
    assert torch.equal(y, torch.cat([y1, y2], 1))
    assert torch.allclose(block.inverse(y), x, rtol=0, atol=1e-12)
    assert not torch.allclose(y, x)  # the block did something


def test_inference_mode_forward_matches_no_grad():
    seq = make_stack(depth=2)
    x = torch.randn(SHAPE, dtype=torch.float64)
    with torch.no_grad():
        expected = seq(x)
    with torch.inference_mode():
        assert torch.equal(seq(x), expected)


def test_sequence_inverse_reconstructs_input():
    seq = make_stack(depth=5)
    x = torch.randn(SHAPE, dtype=torch.float64)
    with torch.no_grad():
        y = seq(x)
        assert float((seq.inverse(y) - x).abs().max()) < 1e-12


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("norm", ["group", "batch", "instance"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_gradients_match_ordinary_autograd(norm, dtype, tol):
    seq = make_stack(depth=4, dtype=dtype, norm=norm)
    x = torch.randn(SHAPE, dtype=dtype)
    plain, gx_plain, out_plain = run_step(seq, x, "plain")
    for mode in ("reversible", "checkpoint"):
        other, gx, out = run_step(seq, x, mode)
        assert max_rel(out, out_plain) <= tol
        assert max_rel(gx, gx_plain) <= tol
        assert_same_grads(other, plain, tol)


def test_gradients_via_autograd_grad_and_frozen_parameters():
    seq = make_stack(depth=3)
    seq.blocks[1].f.requires_grad_(False)  # a frozen branch gets no gradient, the rest still do
    x = torch.randn(SHAPE, dtype=torch.float64, requires_grad=True)
    grads = {}
    for mode in ("plain", "reversible"):
        seq.mode = mode
        loss = seq(x).pow(3).mean()
        params = [p for p in seq.parameters() if p.requires_grad]
        grads[mode] = torch.autograd.grad(loss, [x, *params])
    assert len(grads["plain"]) == len(grads["reversible"])
    for a, b in zip(grads["reversible"], grads["plain"]):
        assert max_rel(a, b) <= 1e-10
    assert all(p.grad is None for p in seq.parameters())  # autograd.grad did not accumulate


def test_input_without_grad_still_trains_parameters():
    seq = make_stack(depth=2)
    x = torch.randn(SHAPE, dtype=torch.float64)  # raw data: no requires_grad
    ref = copy.deepcopy(seq)
    ref.mode = "plain"
    seq(x).sum().backward()
    ref(x).sum().backward()
    assert_same_grads(seq, ref, 1e-10)


def test_shared_weights_accumulate_over_blocks():
    torch.manual_seed(0)
    f = conv_branch(4, norm="group").double()
    g = conv_branch(4, norm="group").double()
    blocks = [ReversibleBlock(f, g) for _ in range(3)]  # the same F and G three times
    seq = ReversibleSequence(blocks)
    x = torch.randn(SHAPE, dtype=torch.float64)
    plain, _, _ = run_step(seq, x, "plain")
    rev, _, _ = run_step(seq, x, "reversible")
    assert_same_grads(rev, plain, 1e-10)


# ------------------------------------------------------------------ normalisation, RNG, autocast


def test_batchnorm_running_statistics_update_once_per_step():
    seq = make_stack(depth=3, norm="batch")
    x = torch.randn(SHAPE, dtype=torch.float64) * 3 + 1
    plain, _, _ = run_step(seq, x, "plain")
    rev, _, _ = run_step(seq, x, "reversible")
    bn = [m for m in rev.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bn and all(int(m.num_batches_tracked) == 1 for m in bn)
    for (name, a), (_, b) in zip(rev.named_buffers(), plain.named_buffers()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12), name
    # and the statistics did move away from their initial values
    assert not torch.allclose(bn[0].running_mean, torch.zeros_like(bn[0].running_mean))


def test_eval_mode_batchnorm_uses_running_statistics():
    seq = make_stack(depth=2, norm="batch")
    x = torch.randn(SHAPE, dtype=torch.float64)
    run_step(seq, x, "plain")  # not in place: seq keeps its initial statistics
    seq.eval()
    plain, gx_p, _ = run_step(seq, x, "plain")
    rev, gx_r, _ = run_step(seq, x, "reversible")
    assert max_rel(gx_r, gx_p) <= 1e-10
    assert_same_grads(rev, plain, 1e-10)


def test_dropout_masks_are_replayed_and_caller_rng_untouched():
    seq = make_stack(depth=3, dropout=0.5)
    x = torch.randn(SHAPE, dtype=torch.float64)
    plain, gx_p, out_p = run_step(seq, x, "plain", seed=7)
    after_plain = torch.rand(3)
    rev, gx_r, out_r = run_step(seq, x, "reversible", seed=7)
    after_rev = torch.rand(3)
    assert torch.equal(out_r, out_p)  # same masks in the forward
    assert max_rel(gx_r, gx_p) <= 1e-10  # and in the recompute
    assert_same_grads(rev, plain, 1e-10)
    assert torch.equal(after_rev, after_plain)  # backward did not advance the user's stream
    # without the replay the recompute would draw new masks and the gradients would differ
    rev.preserve_rng_state = False
    torch.manual_seed(7)
    xx = x.clone().requires_grad_(True)
    rev(xx).square().sum().backward()
    torch.manual_seed(7)
    xp = x.clone().requires_grad_(True)
    plain(xp).square().sum().backward()
    assert max_rel(xx.grad, xp.grad) > 1e-3


def test_autocast_keeps_stream_float32_and_matches_plain():
    seq = make_stack(depth=3, dtype=torch.float32)
    x = torch.randn(SHAPE, dtype=torch.bfloat16)
    results = {}
    for mode in ("plain", "reversible"):
        m = copy.deepcopy(seq)
        m.mode = mode
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(xx)
            loss = out.float().square().mean()
        assert out.dtype == torch.float32  # coupling sums in float32
        loss.backward()
        assert xx.grad.dtype == torch.bfloat16
        results[mode] = (m, xx.grad.float())
    assert max_rel(results["reversible"][1], results["plain"][1]) <= 1e-2
    assert_same_grads(results["reversible"][0], results["plain"][0], 1e-2)


def test_bfloat16_stream_reconstruction_is_much_worse_than_float32():
    seq = make_stack(depth=4, dtype=torch.float32)
    x = torch.randn(SHAPE)
    fp32 = check_invertibility(seq, x, torch.float32)
    bf16 = check_invertibility(seq, x, torch.bfloat16)
    assert fp32.stack_rel[-1] < 1e-5
    assert bf16.stack_rel[-1] > 100 * fp32.stack_rel[-1]


# ------------------------------------------------------------------ storage safety


def test_skip_tap_and_saved_input_are_safe():
    torch.manual_seed(0)
    embed = nn.Conv3d(1, SHAPE[1], 3, padding=1).double()
    seq = make_stack(depth=3)
    raw = torch.randn(SHAPE[0], 1, *SHAPE[2:], dtype=torch.float64)

    def model(mode):
        seq.mode = mode
        x = torch.nn.functional.elu(embed(raw))  # ELU saves its output, which is seq's input
        version, before = x._version, x.detach().clone()
        y = seq(x)
        out = y + 2 * x  # a skip tap around the reversible chain
        loss = out.square().mean()
        loss.backward()
        assert x._version == version and torch.equal(x, before)  # input never touched
        grads = [p.grad.clone() for p in [*embed.parameters(), *seq.parameters()]]
        embed.zero_grad()
        seq.zero_grad()
        return grads

    for a, b in zip(model("reversible"), model("plain")):
        assert max_rel(a, b) <= 1e-10


def test_output_modified_in_place_raises_clear_error():
    seq = make_stack(depth=2)
    x = torch.randn(SHAPE, dtype=torch.float64, requires_grad=True)
    y = seq(x)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_branch_modifying_its_input_in_place_is_refused():
    bad = ReversibleBlock(nn.ReLU(inplace=True), nn.Identity())
    seq = ReversibleSequence([bad])
    x = torch.randn(SHAPE, requires_grad=True)
    for mode in ("reversible", "plain"):
        seq.mode = mode
        with pytest.raises(RuntimeError, match="in ?place"):
            seq(x * 1)


def test_bad_shapes_and_modes_raise():
    with pytest.raises(ValueError, match="keep the shape"):
        ReversibleSequence([ReversibleBlock(nn.Conv3d(4, 4, 3), nn.Identity())])(
            torch.randn(SHAPE, requires_grad=True)
        )
    with pytest.raises(ValueError, match="even number of channels"):
        make_stack()(torch.randn(1, 7, 2, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="mode"):
        ReversibleSequence([], mode="magic")
    with pytest.raises(TypeError):
        ReversibleSequence([nn.Identity()])
    with pytest.raises(ValueError):
        conv_branch(4, kernel_size=2)
    with pytest.raises(ValueError):
        reversible_stack(7, 2)


# ------------------------------------------------------------------ memory


def saved_bytes(mode: str, depth: int, **kw) -> int:
    torch.manual_seed(0)
    seq = reversible_stack(8, depth, mode=mode, **kw)
    x = torch.randn(1, 8, 4, 8, 8)
    nbytes, out = saved_tensor_bytes(lambda: seq(x).square().mean(), seq.parameters())
    out.backward()
    return nbytes


def test_reversible_activation_memory_is_constant_in_depth():
    stream = 1 * 8 * 4 * 8 * 8 * 4  # bytes of one (N, C, Z, Y, X) float32 stream tensor
    rev = [saved_bytes("reversible", d) for d in (1, 2, 6)]
    plain = [saved_bytes("plain", d) for d in (1, 2, 6)]
    ckpt = [saved_bytes("checkpoint", d) for d in (1, 2, 6)]
    assert rev[0] == rev[1] == rev[2] == stream  # only the chain's output is kept
    assert plain[2] - plain[1] == 4 * (plain[1] - plain[0]) > 0  # linear in depth
    assert ckpt[2] - ckpt[1] == 4 * (ckpt[1] - ckpt[0]) > 0
    assert plain[2] > ckpt[2] > 5 * rev[2]


def test_rng_states_are_counted_as_ctx_stash():
    torch.manual_seed(0)
    seq = reversible_stack(8, 3, dropout=0.2)
    x = torch.randn(1, 8, 2, 4, 4)
    out = seq(x)
    stash = ctx_stashed_tensors(out)
    assert len(stash) == 2 * 3  # one CPU random state before every F and G
    with_rng = saved_bytes("reversible", 3, dropout=0.2)
    assert with_rng == saved_bytes("reversible", 3) + sum(t.nbytes for t in stash)


def test_measure_step_on_reversible_stack():
    seq = reversible_stack(8, 2)
    x = torch.randn(1, 8, 4, 8, 8)
    record = measure_step(lambda: seq(x).square().mean(), seq.parameters(), repeats=1)
    assert record.method == "saved_tensors" and record.bytes == x.nbytes and record.time_s > 0


# ------------------------------------------------------------------ check_invertibility


def test_check_invertibility_reports_and_leaves_model_alone():
    seq = make_stack(depth=4, dtype=torch.float32, norm="batch", dropout=0.3)
    before = copy.deepcopy(seq.state_dict())
    x = torch.randn(SHAPE)
    torch.manual_seed(3)
    expected_next = torch.rand(2)
    torch.manual_seed(3)
    r64 = check_invertibility(seq, x, torch.float64)
    assert torch.equal(torch.rand(2), expected_next)  # caller's random stream untouched
    r32 = check_invertibility(seq.blocks, x)
    for key, value in seq.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert len(r64.block_abs) == len(r64.stack_abs) == 4 and r64.dtype == torch.float64
    assert r64.stack_depths == (1, 2, 3, 4)
    some = check_invertibility(seq, x, torch.float64, stack_depths=(1, 4))
    assert some.stack_depths == (1, 4) and some.stack_abs == (r64.stack_abs[0], r64.stack_abs[3])
    assert max(r64.stack_rel) < 1e-13 and max(r64.block_rel) < 1e-13
    assert max(r32.stack_rel) < 1e-5 and r32.dtype == torch.float32
    assert max(r32.stack_abs) > max(r64.stack_abs)
    with pytest.raises(ValueError):
        check_invertibility([], x)
    with pytest.raises(ValueError, match="stack_depths"):
        check_invertibility(seq, x, stack_depths=(5,))


# ------------------------------------------------------------------ torch.compile and DDP


class TinyNet(nn.Module):
    """Embedding conv -> reversible chain -> head conv, as a reversible U-Net level would be."""

    def __init__(self, mode="reversible"):
        super().__init__()
        self.embed = nn.Conv3d(1, 8, 3, padding=1)
        self.chain = reversible_stack(8, 2, mode=mode)
        self.head = nn.Conv3d(8, 2, 1)

    def forward(self, x):
        return self.head(self.chain(self.embed(x)))


def _compiler_skip_reason(backend: str) -> str | None:
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile (dynamo) is not supported on this Python/platform"
    if backend == "inductor" and not any(shutil.which(c) for c in ("g++", "c++", "clang++", "cl")):
        return "inductor needs a C++ compiler for CPU code and none was found"
    return None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_gives_same_gradients(backend):
    reason = _compiler_skip_reason(backend)
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    net = TinyNet()
    ref = copy.deepcopy(net)
    x = torch.randn(1, 1, 4, 8, 8)
    compiled = torch.compile(net, backend=backend)
    for _ in range(2):  # the second call runs the cached compiled code
        net.zero_grad()
        ref.zero_grad()
        out = compiled(x)
        out.square().mean().backward()
        ref(x).square().mean().backward()
    assert out.shape == (1, 2, 4, 8, 8)
    assert_same_grads(net, ref, 1e-4)


def _ddp_one_process_worker(rank: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        net = TinyNet()
        ddp = DDP(net)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        grads = []
        for step in range(2):
            torch.manual_seed(10 + step)
            opt.zero_grad()
            ddp(torch.randn(2, 1, 4, 8, 8)).square().mean().backward()
            grads.append([p.grad.clone() for p in net.parameters()])
            opt.step()
        torch.save({"grads": grads, "params": [p.detach() for p in net.parameters()]},
                   f"{out_dir}/one_process.pt")
    finally:
        dist.destroy_process_group()
    os._exit(0)  # see _ddp_worker


def _spawn(worker, args: tuple, nprocs: int, limit_s: float = 300) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` fresh processes; fail (not hang) after ``limit_s``."""
    import torch.multiprocessing as mp

    context = mp.spawn(worker, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + limit_s
    while not context.join(timeout=5):  # raises if a worker failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the DDP workers did not finish within {limit_s} s")


def test_ddp_single_process_gloo(tmp_path):
    """DistributedDataParallel (gloo, world size 1, CPU, in a fresh process): gradients and two
    optimizer steps match the unwrapped model, with the reducer's bookkeeping (no 'marked ready
    twice' errors)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    _spawn(_ddp_one_process_worker, (str(tmp_path / "store"), str(tmp_path)), nprocs=1)
    got = torch.load(tmp_path / "one_process.pt", weights_only=True)
    torch.manual_seed(0)
    ref = TinyNet()
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    for step in range(2):
        torch.manual_seed(10 + step)
        opt_ref.zero_grad()
        ref(torch.randn(2, 1, 4, 8, 8)).square().mean().backward()
        for g, p in zip(got["grads"][step], ref.parameters()):
            assert max_rel(g, p.grad) <= 1e-5
        opt_ref.step()
    for a, b in zip(got["params"], ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def _ddp_worker(rank: int, world_size: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        net = DDP(TinyNet())
        torch.manual_seed(100 + rank)  # every rank sees different data
        x = torch.randn(1, 1, 4, 8, 8)
        net(x).square().mean().backward()
        torch.save([p.grad for p in net.module.parameters()], f"{out_dir}/grads{rank}.pt")
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's clean-up: destroying the DDP reducer at exit destroys the
    # gloo process group, whose destructor joins a worker thread while holding the GIL, and that
    # thread may be waiting for the GIL to release a finished all-reduce: a deadlock seen in CI.
    os._exit(0)


def test_ddp_two_processes_average_gradients(tmp_path):
    """Two gloo processes on CPU: DDP's all-reduced gradients equal the mean of what each rank's
    data gives the plain (non-reversible) model."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    _spawn(_ddp_worker, (2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    expected = []
    for rank in range(2):
        torch.manual_seed(0)
        ref = TinyNet(mode="plain")
        torch.manual_seed(100 + rank)
        ref(torch.randn(1, 1, 4, 8, 8)).square().mean().backward()
        expected.append([p.grad for p in ref.parameters()])
    for rank in range(2):
        got = torch.load(tmp_path / f"grads{rank}.pt", weights_only=True)
        for g, e0, e1 in zip(got, *expected):
            assert max_rel(g, (e0 + e1) / 2) <= 1e-5
