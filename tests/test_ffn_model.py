"""The ConvStack3D FFN: sizes, parameter counts, structure and the additive seed update."""

import math

import pytest
import torch
from torch import nn

from neurotut.ffn.model import (
    ConvStack3DFFN,
    FFNModelConfig,
    cpu_axis_order,
    count_parameters,
    model_args_to_zyx,
    parameter_table,
    receptive_field,
    shifts,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "depth, n_params, n_conv3, rf", [(9, 472_353, 18, 37), (12, 638_433, 24, 49)]
)
def test_parameter_counts_match_the_original(depth, n_params, n_conv3, rf):
    model = ConvStack3DFFN(depth=depth)
    assert count_parameters(model) == n_params
    kernels = [row[1] for row in parameter_table(model)]
    assert kernels.count("3x3x3") == n_conv3 and kernels.count("1x1x1") == 1
    assert sum(row[3] for row in parameter_table(model)) == n_params
    assert receptive_field(depth) == rf


def test_model_args_are_converted_from_xyz_once():
    cfg = model_args_to_zyx({"depth": 9, "fov_size": [33, 33, 17], "deltas": [8, 8, 4]})
    assert cfg == FFNModelConfig(depth=9, fov_size=(17, 33, 33), deltas=(4, 8, 8))
    fib = model_args_to_zyx({"depth": 12, "fov_size": [33, 33, 33], "deltas": [8, 8, 8]})
    assert fib.fov_size == (33, 33, 33) and fib.deltas == (8, 8, 8) and fib.depth == 12
    small = model_args_to_zyx({"fov_size": [9, 7, 5], "deltas": [3, 2, 1]})
    assert small.fov_size == (5, 7, 9) and small.deltas == (1, 2, 3)
    with pytest.raises(ValueError, match="unknown model_args"):
        model_args_to_zyx({"dept": 9})


def test_config_validation():
    with pytest.raises(ValueError, match="odd"):
        FFNModelConfig(fov_size=(16, 33, 33))
    with pytest.raises(ValueError, match="deltas"):
        FFNModelConfig(fov_size=(5, 9, 9), deltas=(3, 2, 2))
    with pytest.raises(ValueError, match="depth"):
        FFNModelConfig(depth=0)


def test_shifts_are_the_26_neighbours_with_diagonals():
    moves = shifts((4, 8, 8))
    assert len(moves) == 26 == len(set(moves))
    assert (0, 0, 0) not in moves
    assert (4, 8, 8) in moves and (-4, 0, 8) in moves and (0, -8, 0) in moves
    assert all(abs(m[0]) in (0, 4) and abs(m[1]) in (0, 8) and abs(m[2]) in (0, 8) for m in moves)
    assert len(shifts((0, 2, 2))) == 8  # a zero delta gives no moves along its axis


def test_output_is_the_seed_plus_the_correction():
    torch.manual_seed(0)
    model = ConvStack3DFFN(depth=2, fov_size=(5, 9, 9), deltas=(1, 2, 2), features=8)
    image = torch.randn(2, 1, 5, 9, 9)
    seed = torch.randn(2, 1, 5, 9, 9)
    out = model(image, seed)
    assert out.shape == seed.shape and out.dtype == torch.float32
    assert torch.equal(out, seed + model.correction(image, seed))
    # the correction depends on the seed too: it is an input channel
    assert not torch.allclose(model.correction(image, seed), model.correction(image, seed + 1.0))
    # with a zero last layer the network passes the seed logits through unchanged
    with torch.no_grad():
        model.conv_lom.weight.zero_()
        model.conv_lom.bias.zero_()
    assert torch.equal(model(image, seed), seed)


def test_residual_modules_are_pre_activation():
    torch.manual_seed(1)
    model = ConvStack3DFFN(depth=2, fov_size=(5, 5, 5), deltas=(1, 1, 1), features=4).double()
    image = torch.randn(1, 1, 5, 5, 5, dtype=torch.double)
    seed = torch.randn(1, 1, 5, 5, 5, dtype=torch.double)
    x = model.conv0_b(torch.relu(model.conv0_a(torch.cat([image, seed], 1))))
    block = model.residual[0]
    x = x + block.conv_b(torch.relu(block.conv_a(torch.relu(x))))
    expected = seed + model.conv_lom(torch.relu(x))
    assert torch.allclose(model(image, seed), expected, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_is_two_voxels_per_convolution(depth):
    torch.manual_seed(depth)
    model = ConvStack3DFFN(depth=depth, fov_size=(5, 5, 5), deltas=(1, 1, 1), features=8).double()
    n = 2 * receptive_field(depth) + 1
    image = torch.rand(1, 1, n, n, n, dtype=torch.double, requires_grad=True)
    seed = torch.rand(1, 1, n, n, n, dtype=torch.double, requires_grad=True)
    c = n // 2
    model.correction(image, seed)[0, 0, c, c, c].backward()
    support = (image.grad.abs() + seed.grad.abs())[0, 0].nonzero()
    extent = (support.max(0).values - support.min(0).values + 1).tolist()
    assert extent == [receptive_field(depth)] * 3


def test_glorot_uniform_weights_and_zero_biases():
    model = ConvStack3DFFN(depth=3)
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            fan_in = m.in_channels * math.prod(m.kernel_size)
            fan_out = m.out_channels * math.prod(m.kernel_size)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            largest = float(m.weight.detach().abs().max())
            assert 0.9 * bound < largest <= bound  # uniform on [-bound, bound] fills its range
            assert torch.count_nonzero(m.bias) == 0


def test_bad_input_shapes_are_refused():
    model = ConvStack3DFFN(depth=1, fov_size=(3, 3, 3), deltas=(1, 1, 1), features=2)
    with pytest.raises(ValueError, match="same shape"):
        model(torch.zeros(1, 1, 3, 3, 3), torch.zeros(1, 1, 3, 3, 5))
    with pytest.raises(ValueError, match=r"\(B, 1, Z, Y, X\)"):
        model(torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 3, 3))


def test_batch_one_on_cpu_runs_with_reordered_axes_and_the_same_result():
    torch.manual_seed(0)
    model = ConvStack3DFFN(depth=3, features=8, fov_size=(5, 9, 7), deltas=(1, 2, 2)).eval()
    image, seed = torch.randn(2, 1, 5, 9, 7), torch.randn(2, 1, 5, 9, 7)
    assert cpu_axis_order(image[:1]) == (1, 2, 0)  # y (9), x (7), z (5)
    assert cpu_axis_order(image) == (0, 1, 2)  # batches keep the order
    with torch.no_grad():
        batched = model(image, seed)  # the ordinary path
        single = torch.cat([model(image[i : i + 1], seed[i : i + 1]) for i in range(2)])
    assert single.shape == batched.shape
    torch.testing.assert_close(single, batched, atol=1e-5, rtol=1e-5)
    # gradients flow through the reordered path as through the ordinary one
    w = model.conv0_a.weight
    g1 = torch.autograd.grad(model(image[:1], seed[:1]).sum(), w)[0]
    g2 = torch.autograd.grad(model(image[:2], seed[:2])[:1].sum(), w)[0]
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
