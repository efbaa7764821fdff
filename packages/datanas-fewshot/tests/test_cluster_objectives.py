from __future__ import annotations

import math

import pytest
import torch

from datanas_core.errors import ConfigError, UnknownNameError
from datanas_fewshot.cluster.augment import PairAugment, RandomAffine
from datanas_fewshot.cluster.objectives import OBJECTIVES, DECLoss, IICLoss, SCANLoss, build_objective


def _one_hot_logits(assign: torch.Tensor, k: int, scale: float = 50.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(assign, k).float() * scale


def test_iic_is_minus_log_k_for_consistent_balanced_assignments():
    k = 4
    a = torch.arange(k).repeat(5)
    logits = _one_hot_logits(a, k)
    assert IICLoss()(logits, logits).item() == pytest.approx(-math.log(k), abs=1e-4)


def test_iic_is_zero_for_collapsed_assignments():
    logits = _one_hot_logits(torch.zeros(10, dtype=torch.long), 3)
    assert IICLoss()(logits, logits).item() == pytest.approx(0.0, abs=1e-4)


def test_iic_prefers_consistent_over_independent_views():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (200,), generator=g)
    b = torch.randint(0, 5, (200,), generator=g)
    same = IICLoss()(_one_hot_logits(a, 5), _one_hot_logits(a, 5))
    indep = IICLoss()(_one_hot_logits(a, 5), _one_hot_logits(b, 5))
    assert same < indep


def test_scan_rewards_consistency_and_balance():
    k = 3
    bal = _one_hot_logits(torch.arange(k).repeat(4), k)
    collapsed = _one_hot_logits(torch.zeros(12, dtype=torch.long), k)
    loss = SCANLoss(entropy_weight=2.0)
    assert loss(bal, bal).item() == pytest.approx(-2.0 * math.log(k), abs=1e-3)
    assert loss(bal, bal) < loss(collapsed, collapsed)
    shifted = _one_hot_logits((torch.arange(k).repeat(4) + 1) % k, k)
    assert loss(bal, shifted) > loss(bal, bal)


def test_dec_target_is_sharper_and_normalised():
    q = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    p = DECLoss.target(q)
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    assert p[0, 0] > q[0, 0] and p[1, 1] > q[1, 1]


def test_dec_gradient_flows_only_through_view_a():
    la = torch.randn(6, 3, requires_grad=True)
    lb = torch.randn(6, 3, requires_grad=True)
    DECLoss()(la, lb).backward()
    assert la.grad is not None and la.grad.abs().sum() > 0
    assert lb.grad is None


def test_registry_and_errors():
    assert OBJECTIVES.names() == ["dec", "iic", "scan"]
    assert isinstance(build_objective("scan", entropy_weight=1.0), SCANLoss)
    with pytest.raises(UnknownNameError, match="iic"):
        build_objective("iicc")
    with pytest.raises(ConfigError, match="unknown option"):
        build_objective("iic", lam=2.0)
    with pytest.raises(ConfigError, match="same shape"):
        IICLoss()(torch.zeros(4, 3), torch.zeros(4, 2))


def test_augment_is_seeded_shape_preserving_and_random():
    x = torch.rand(6, 1, 12, 12)
    a1, b1 = PairAugment()(x, torch.Generator().manual_seed(3))
    a2, b2 = PairAugment()(x, torch.Generator().manual_seed(3))
    assert a1.shape == x.shape
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(b1, b2)
    assert not torch.allclose(a1, b1)


def test_identity_affine_is_identity():
    x = torch.rand(2, 1, 8, 8)
    t = RandomAffine(degrees=0, translate=0, scale=(1.0, 1.0), shear=0)
    torch.testing.assert_close(t(x, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)


def test_affine_rejects_bad_options():
    with pytest.raises(ConfigError, match="scale"):
        RandomAffine(scale=(1.2, 1.0))
