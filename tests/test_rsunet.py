"""Tests for neurotut.models.rsunet: shapes, parameter counts explained part by part, reversible and
checkpointed variants equal to the plain computation, memory flat in depth, input checks."""

from __future__ import annotations

import copy

import pytest
import torch

from neurotut.memory import saved_tensor_bytes
from neurotut.models.rsunet import (
    RSUNet,
    RSUNetConfig,
    count_parameters,
    format_parameter_table,
    parameter_table,
)

SMALL = (4, 6, 8)  # three scales: Y, X multiples of 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def small(**kw) -> RSUNet:
    torch.manual_seed(0)
    return RSUNet(widths=SMALL, **kw).double()


def x_small(n=1, shape=(3, 8, 8), seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 1) + shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    "kw", [{}, {"depth": 2}, {"reversible": True}, {"reversible": True, "depth": 3},
           {"out_channels": 3}, {"checkpointing": True}, {"norm": "group"}]
)
def test_output_has_input_size_and_out_channels(kw):
    model = small(**kw)
    x = x_small(n=2)
    y = model(x)
    assert y.shape == (2, model.config.out_channels) + x.shape[2:]
    assert y.dtype == torch.float64


def test_paper_network_has_the_analytic_parameter_count():
    # specs/superhuman_revnet.md A2: 1,510,704 for widths 28..80, 12 outputs, transposed-conv ups
    model = RSUNet()
    assert count_parameters(model) == 1_510_704


@pytest.mark.parametrize(
    "kw",
    [{}, {"depth": 3}, {"reversible": True}, {"reversible": True, "depth": 4},
     {"out_channels": 3, "in_channels": 2}, {"widths": (6, 10, 14, 18), "norm": "group"}],
)
def test_parameter_table_formulas_explain_every_parameter(kw):
    model = RSUNet(**kw)
    rows = parameter_table(model)
    for r in rows:
        assert r.params == r.expected, (r.part, r.params, r.expected)
    assert sum(r.params for r in rows) == count_parameters(model)
    n_scales = len(model.config.widths)
    assert len(rows) == 1 + n_scales + 2 * (n_scales - 1) + 2
    text = format_parameter_table(rows)
    assert f"**{count_parameters(model):,}**" in text and "bridge" in text


def test_reversible_block_has_half_the_weights_of_a_residual_unit():
    def per_depth(**kw):
        return count_parameters(RSUNet(depth=2, **kw)) - count_parameters(RSUNet(depth=1, **kw))

    assert 2 * per_depth(reversible=True) == per_depth()
    # ... so the reversible net at depth 2 is about the paper net's size (Koyama et al.: n=2 ~ base)
    assert abs(count_parameters(RSUNet(reversible=True, depth=2)) - 1_510_704) < 1000


def _step(model, x):
    out = model(x)
    loss = out.square().mean() + out[:, :2].sum() * 1e-3
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return out.detach(), grads


@pytest.mark.parametrize("depth", [1, 3])
def test_reversible_backward_equals_plain_autograd(depth):
    base = small(reversible=True, depth=depth)
    x = x_small(n=2)
    plain = copy.deepcopy(base)
    plain.set_reversible_mode("plain")
    rev = copy.deepcopy(base)
    out_p, g_p = _step(plain, x)
    out_r, g_r = _step(rev, x)
    torch.testing.assert_close(out_r, out_p, rtol=0, atol=0)
    for name in g_p:
        torch.testing.assert_close(g_r[name], g_p[name], rtol=1e-9, atol=1e-12, msg=name)
    # running statistics updated once per step in both
    for (n, b_p), (_, b_r) in zip(plain.named_buffers(), rev.named_buffers()):
        torch.testing.assert_close(b_r, b_p, rtol=1e-12, atol=0, msg=n)
        if n.endswith("num_batches_tracked"):
            assert int(b_r) == 1


def test_checkpointing_equals_plain_and_updates_statistics_once():
    ref = small(depth=2)
    ck = RSUNet(widths=SMALL, depth=2, checkpointing=True).double()
    ck.load_state_dict(ref.state_dict())
    x = x_small()
    out_p, g_p = _step(ref, x)
    out_c, g_c = _step(ck, x)
    torch.testing.assert_close(out_c, out_p, rtol=0, atol=0)
    for name in g_p:
        torch.testing.assert_close(g_c[name], g_p[name], rtol=1e-10, atol=1e-13, msg=name)
    for (n, b_p), (_, b_c) in zip(ref.named_buffers(), ck.named_buffers()):
        torch.testing.assert_close(b_c, b_p, rtol=0, atol=0, msg=n)


def test_saved_activations_flat_in_depth_only_when_reversible():
    def saved(**kw):
        model = RSUNet(widths=SMALL, **kw)
        x = torch.randn(1, 1, 4, 16, 16)
        nbytes, out = saved_tensor_bytes(lambda: model(x).sum(), list(model.parameters()))
        out.backward()
        return nbytes

    rev1, rev4 = saved(reversible=True, depth=1), saved(reversible=True, depth=4)
    base1, base4 = saved(depth=1), saved(depth=4)
    ck1, ck4 = saved(depth=1, checkpointing=True), saved(depth=4, checkpointing=True)
    assert rev4 == rev1
    assert base4 > 2 * base1
    assert base1 > ck1 and ck1 < ck4 < base4
    assert rev4 < base4 / 3


def test_eval_mode_is_deterministic_and_batch_independent():
    model = small(reversible=True, depth=2)
    _step(model, x_small(n=2))  # give the BN layers running statistics
    model.eval()
    x = x_small(n=2)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-12, atol=1e-12)


def test_bad_inputs_and_configs_are_refused():
    model = small()
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 1, 2, 6, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 2, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(1, 1, 2, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="even"):
        RSUNetConfig(widths=(4, 5), reversible=True)
    with pytest.raises(ValueError, match="not both"):
        RSUNetConfig(reversible=True, checkpointing=True)
    with pytest.raises(ValueError, match="depth"):
        RSUNetConfig(depth=0)
    with pytest.raises(ValueError, match="norm"):
        RSUNetConfig(norm="layer")


def test_config_round_trips_through_plain_types():
    c = RSUNetConfig(widths=(6, 8), depth=3, reversible=True, out_channels=3, norm="group")
    d = c.to_dict()
    assert d["widths"] == [6, 8]
    assert RSUNetConfig.from_dict(d) == c
    with pytest.raises(ValueError, match="unknown"):
        RSUNetConfig.from_dict({**d, "colour": 1})
