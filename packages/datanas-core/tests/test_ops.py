from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datanas_core.errors import ConfigError, UnknownNameError
from datanas_core.ops import (
    OPS,
    FactorizedReduce,
    Pool,
    ResNetBasicBlock,
    Zero,
    build_op,
    register_op,
    with_pool_bn,
)
from datanas_core.space.darts import DARTS_OPS
from datanas_core.space.nb201 import NB201_OPS

ALL_CORE_OPS = sorted(set(DARTS_OPS) | set(NB201_OPS) | {"sep_conv_7x7", "conv_7x1_1x7", "nor_conv_7x7"})


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: intra-op threads only add contention (and stall badly on a loaded 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _bns(m: nn.Module) -> list[nn.BatchNorm2d]:
    return [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]


@pytest.mark.parametrize("name", ALL_CORE_OPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_every_core_op_keeps_channels_and_gives_ceil_spatial_size(name: str, stride: int, size: int) -> None:
    torch.manual_seed(0)
    op = build_op(name, 4, 4, stride, affine=False)
    y = op(torch.randn(2, 4, size, size))
    expected = -(-size // stride)
    assert y.shape == (2, 4, expected, expected)


@pytest.mark.parametrize(
    "name", ["skip_connect", "avg_pool_3x3", "max_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"]
)
def test_nb201_ops_change_channels(name: str) -> None:
    op = build_op(name, 4, 6, 1, affine=True)
    assert op(torch.randn(2, 4, 8, 8)).shape == (2, 6, 8, 8)


@pytest.mark.parametrize("affine", [True, False])
def test_affine_flag_reaches_every_batchnorm(affine: bool) -> None:
    for name in ALL_CORE_OPS:
        for bn in _bns(build_op(name, 4, 4, 2, affine=affine)):
            assert bn.affine is affine, name


def test_zero_is_zero_and_detached_from_input() -> None:
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    y = Zero(5, 2)(x)
    assert y.shape == (2, 5, 4, 4) and not y.any() and not y.requires_grad


def test_skip_connect_is_identity_at_stride_1_and_factorized_reduce_otherwise() -> None:
    assert isinstance(build_op("skip_connect", 4, 4, 1), nn.Identity)
    assert isinstance(build_op("skip_connect", 4, 4, 2), FactorizedReduce)
    assert isinstance(build_op("skip_connect", 4, 6, 1), FactorizedReduce)


def test_factorized_reduce_matches_darts_definition_on_even_inputs() -> None:
    torch.manual_seed(0)
    fr = FactorizedReduce(3, 6, 2, affine=False).eval()
    x = torch.randn(2, 3, 8, 8)
    r = F.relu(x)
    ref = torch.cat([fr.conv_1(r), fr.conv_2(r[:, :, 1:, 1:])], dim=1)
    assert torch.allclose(fr(x), fr.bn(ref))


def test_avg_pool_excludes_padding_and_pool_bn_appends_nonaffine_bn() -> None:
    x = torch.ones(1, 2, 4, 4)
    # count_include_pad=False keeps the borders at 1
    assert torch.equal(build_op("avg_pool_3x3", 2, 2, 1)(x), x)
    op = with_pool_bn("max_pool_3x3", build_op("max_pool_3x3", 2, 2, 1), 2)
    assert isinstance(op, nn.Sequential) and isinstance(op[0], Pool) and not op[1].affine
    conv = build_op("sep_conv_3x3", 2, 2, 1)
    assert with_pool_bn("sep_conv_3x3", conv, 2) is conv


def test_param_counts_follow_the_darts_definitions() -> None:
    C = 8
    n = {
        name: sum(p.numel() for p in build_op(name, C, C, 1, affine=False).parameters()) for name in DARTS_OPS
    }
    assert n["none"] == n["skip_connect"] == n["max_pool_3x3"] == n["avg_pool_3x3"] == 0
    assert n["sep_conv_3x3"] == 2 * (9 * C + C * C)
    assert n["sep_conv_5x5"] == 2 * (25 * C + C * C)
    assert n["dil_conv_3x3"] == 9 * C + C * C
    assert n["dil_conv_5x5"] == 25 * C + C * C
    assert n["sep_conv_5x5"] > n["sep_conv_3x3"] > n["dil_conv_5x5"] > n["dil_conv_3x3"]


def test_resnet_basic_block_strided_shortcut() -> None:
    block = ResNetBasicBlock(4, 8, 2)
    assert block(torch.randn(2, 4, 8, 8)).shape == (2, 8, 4, 4)
    same = ResNetBasicBlock(4, 4, 1)
    assert same.downsample is None
    with pytest.raises(ConfigError, match="stride"):
        ResNetBasicBlock(4, 4, 3)


def test_register_op_adds_and_refuses_duplicates() -> None:
    name = "test_ops.double"

    @register_op(name)
    def _double(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
        return nn.Identity()

    try:
        assert isinstance(build_op(name, 2, 2), nn.Identity)
        with pytest.raises(ConfigError, match="already registered"):
            register_op(name)(_double)
        register_op(name, override=True)(_double)
    finally:
        OPS._items.pop(name, None)


def test_unknown_op_lists_valid_names_and_bad_dims_fail() -> None:
    with pytest.raises(UnknownNameError, match="sep_conv_3x3") as exc:
        build_op("sep_conv_3x33", 4, 4)
    assert "Did you mean" in str(exc.value)
    with pytest.raises(ConfigError, match="stride"):
        build_op("sep_conv_3x3", 4, 4, 3)
    with pytest.raises(ConfigError, match="channel"):
        build_op("sep_conv_3x3", 0, 4)
