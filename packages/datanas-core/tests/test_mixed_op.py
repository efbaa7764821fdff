from __future__ import annotations

import pytest
import torch

from datanas_core.errors import ConfigError, SearchSpaceError
from datanas_core.ops import SepConv
from datanas_core.sample import CellSample
from datanas_core.space.darts import DARTS_OPS
from datanas_core.space.mixed import MixedOp, PreparedCellSample

K = len(DARTS_OPS)


pytestmark = pytest.mark.usefixtures("one_thread")


def _mixed(stride: int = 1) -> MixedOp:
    torch.manual_seed(0)
    return MixedOp.build(DARTS_OPS, 4, 4, stride, affine=False).eval()


def _x() -> torch.Tensor:
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def test_none_is_never_instantiated() -> None:
    m = _mixed()
    assert m.op("none") is None and not m.runnable(0)
    assert len(m.ops) == K - 1
    assert m.op("sep_conv_3x3") is m.op(DARTS_OPS.index("sep_conv_3x3"))


@pytest.mark.parametrize("k", range(1, K))
def test_one_hot_weight_equals_the_chosen_op(k: int) -> None:
    m, x = _mixed(), _x()
    w = torch.zeros(K)
    w[k] = 1.0
    expected = m.op(k)(x)
    assert torch.equal(m(x, w, [k]), expected)
    assert torch.equal(m(x, w, [k], True), expected)  # the gradient carrier is exactly zero-valued
    assert torch.allclose(m(x, w, list(range(K))), expected)  # exact executor: zero-weight ops add 0


def test_soft_weights_give_the_weighted_sum() -> None:
    m, x = _mixed(), _x()
    w = torch.softmax(torch.randn(K, generator=torch.Generator().manual_seed(2)), 0)
    expected = sum(w[k] * m.op(k)(x) for k in range(1, K))
    assert torch.allclose(m(x, w, list(range(K))), expected, atol=1e-6)
    # a row given as a sequence of scalars (what supernets pass) gives the same result
    assert torch.allclose(m(x, tuple(w.unbind(0)), list(range(K))), expected, atol=1e-6)


def test_gradient_reaches_active_weights_including_exact_zeros() -> None:
    m, x = _mixed(), _x()
    w = torch.zeros(K)
    w[4] = 1.0
    w.requires_grad_(True)
    y = m(x, w, list(range(K)))
    g = torch.randn_like(y, generator=torch.Generator().manual_seed(3))
    (y * g).sum().backward()
    for k in range(1, K):
        expected = (g * m.op(k)(x)).sum()
        assert torch.allclose(w.grad[k], expected, rtol=1e-4, atol=1e-4), DARTS_OPS[k]
        assert w.grad[k] != 0
    assert w.grad[0] == 0  # none: zero output, zero gradient


def test_grad_proxy_gives_inactive_weights_the_output_gradient_sum() -> None:
    m, x = _mixed(), _x()
    w = torch.zeros(K)
    w[5] = 1.0
    w.requires_grad_(True)
    y = m(x, w, [5], grad_proxy=True)
    assert torch.equal(y, m.op(5)(x))
    g = torch.randn_like(y, generator=torch.Generator().manual_seed(4))
    (y * g).sum().backward()
    for k in range(K):
        if k != 5:
            assert torch.allclose(w.grad[k], g.sum()), DARTS_OPS[k]
    assert torch.allclose(w.grad[5], (g * m.op(5)(x)).sum(), rtol=1e-4, atol=1e-4)


def test_without_grad_proxy_inactive_weights_get_no_gradient() -> None:
    m, x = _mixed(), _x()
    w = torch.zeros(K)
    w[5] = 1.0
    w.requires_grad_(True)
    m(x, w, [5]).sum().backward()
    assert torch.count_nonzero(w.grad) == 1


def test_carrier_is_zero_valued_even_for_nonzero_inactive_weights() -> None:
    m, x = _mixed(), _x()
    w = torch.full((K,), 0.5, requires_grad=True)
    y = m(x, w, [3], grad_proxy=True)
    assert torch.equal(y, 0.5 * m.op(3)(x))


def test_nothing_runnable_returns_zeros_of_the_strided_shape() -> None:
    m, x = _mixed(stride=2), _x()
    w = torch.zeros(K, requires_grad=True)
    y = m(x, w, [])
    assert y.shape == (2, 4, 4, 4) and not y.any()
    y = m(x, w, [0], grad_proxy=True)  # only none active: zeros plus carriers
    assert y.shape == (2, 4, 4, 4) and not y.any()
    y.sum().backward()
    assert torch.all(w.grad[1:] == y.numel()) and w.grad[0] == 0


def test_build_validates_candidates() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        MixedOp.build(["skip_connect", "skip_connect"], 4, 4)
    with pytest.raises(ConfigError, match="at least one"):
        MixedOp([], C_out=4)
    with pytest.raises(KeyError, match="valid op names"):
        MixedOp.build(["skip"], 4, 4)


def test_pool_bn_wraps_only_pools() -> None:
    m = MixedOp.build(DARTS_OPS, 4, 4, 1, pool_bn=True)
    assert isinstance(m.op("max_pool_3x3"), torch.nn.Sequential)
    assert isinstance(m.op("sep_conv_3x3"), SepConv)
    plain = MixedOp.build(DARTS_OPS, 4, 4, 1, pool_bn=False)
    assert not isinstance(plain.op("max_pool_3x3"), torch.nn.Sequential)


def _sample(weights: torch.Tensor, mask: torch.Tensor, grad_proxy: bool) -> CellSample:
    return CellSample(weights=weights, mask=mask, probs=weights.detach(), grad_proxy=grad_proxy)


def test_prepared_sample_drops_none_and_builds_carriers_only_where_needed() -> None:
    w = torch.zeros(3, K)
    w[0, 0] = 1.0  # only none
    w[1, 4] = 1.0
    mask = w != 0
    mask[2] = True  # all active
    w.requires_grad_(True)
    prep = PreparedCellSample.from_sample(_sample(w, mask, True), DARTS_OPS, 3)
    assert prep.run == [[], [4], list(range(1, K))]
    assert prep.proxy[0] is not None and prep.proxy[1] is not None and prep.proxy[2] is None
    assert not prep.skip(0)
    assert float(prep.proxy[0].detach()) == 0.0
    assert len(prep.rows) == 3 and all(len(r) == K for r in prep.rows)
    plain = PreparedCellSample.from_sample(_sample(w, mask, False), DARTS_OPS, 3)
    assert plain.skip(0) and not plain.skip(1)


def test_prepared_sample_checks_shapes() -> None:
    w = torch.zeros(3, K)
    with pytest.raises(SearchSpaceError, match=r"expected \[14, 8\]"):
        PreparedCellSample.from_sample(_sample(w, w != 0, False), DARTS_OPS, 14, where="cell type 'normal'")
