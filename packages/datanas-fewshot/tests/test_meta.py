from __future__ import annotations

import math

import pytest
import torch

from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import ConfigError, DataError
from datanas_fewshot.cellnets import build_space, random_genotype
from datanas_fewshot.episodes import Episode
from datanas_fewshot.fewshot import conv4_hidden_for
from datanas_fewshot.meta import (
    Conv4,
    FewShotModel,
    FewShotSearchTask,
    ProtoNetLearner,
    build_learner,
    prototypical_logits,
)
from datanas_fewshot.stats import mean_confidence_interval


def _episode(ways=2, shots=1, queries=2, size=8, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(ways * shots, 1, size, size, generator=g)
    qx = torch.rand(ways * queries, 1, size, size, generator=g)
    return Episode(
        sx, torch.arange(ways).repeat_interleave(shots), qx, torch.arange(ways).repeat_interleave(queries)
    )


def test_prototypical_logits_hand_made():
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    support_y = torch.tensor([0, 0, 1])
    query = torch.tensor([[1.0, 0.0], [9.0, 10.0]])
    logits = prototypical_logits(support, support_y, query)
    # prototypes: (1, 0) and (10, 10)
    torch.testing.assert_close(logits, -torch.tensor([[0.0, 181.0], [164.0, 1.0]]))
    assert logits.argmax(1).tolist() == [0, 1]
    with pytest.raises(DataError, match="support sample"):
        prototypical_logits(support, support_y, query, ways=3)


def test_protonet_episode_loss_shapes_and_gradient():
    model = FewShotModel(Conv4(1, hidden=4, blocks=2))
    loss, acc = ProtoNetLearner().episode_loss(model, _episode(), None)
    assert loss.ndim == 0 and 0.0 <= float(acc) <= 1.0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.embed(torch.zeros(3, 1, 8, 8)).shape == (3, 4)


def test_protonet_evaluate_restores_mode():
    model = FewShotModel(Conv4(1, hidden=4, blocks=2)).train()
    ProtoNetLearner().evaluate(model, _episode())
    assert model.training


def test_confidence_interval_matches_formula():
    vals = [0.5, 0.7, 0.9, 0.6, 0.8]
    ci = mean_confidence_interval(vals)
    mean = sum(vals) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / 4)
    assert ci.mean == pytest.approx(0.7)
    assert ci.half_width == pytest.approx(2.7764451 * sd / math.sqrt(5), rel=1e-6)  # t_{0.975, 4}
    big = mean_confidence_interval([0.0, 1.0] * 300)  # n = 600: close to the normal 1.96 s / sqrt(n)
    assert big.half_width == pytest.approx(1.96 * math.sqrt(0.25 * 600 / 599) / math.sqrt(600), rel=3e-3)
    assert big.low < big.mean < big.high and "600 episodes" in str(big)
    with pytest.raises(DataError, match="at least 2"):
        mean_confidence_interval([1.0])
    with pytest.raises(ConfigError, match="confidence"):
        mean_confidence_interval([1.0, 0.0], confidence=1.5)


def test_build_learner_errors():
    with pytest.raises(ConfigError, match="maml, protonet"):
        build_learner("reptile")
    with pytest.raises(ConfigError, match="only distance_scale"):
        build_learner("protonet", inner_lr=0.1)
    with pytest.raises(ConfigError, match="distance_scale"):
        build_learner("protonet", distance_scale=0)


def test_conv4_hidden_for_matches_parameter_count():
    from datanas_fewshot.cellnets import count_parameters

    target = count_parameters(Conv4(1, 20))
    assert conv4_hidden_for(target) == 20


def test_fewshot_search_task_on_supernet_changes_only_weights_in_weight_phase():
    space = build_space(steps=2)
    sn = space.build_supernet(C=4, layers=3, num_classes=0, in_channels=1)
    model = FewShotModel(sn)
    dist = ArchitectureDistribution(space, estimator="softmax")
    task = FewShotSearchTask(ProtoNetLearner())
    arch = dist.sample(generator=torch.Generator().manual_seed(0))
    loss, logs = task.loss(model, _episode(), arch)
    loss.backward()
    assert all(p.grad is not None for p in dist.parameters())  # the query loss reaches the arch logits
    assert "acc" in logs and task.batch_size(_episode()) == 4


def test_random_genotype_is_valid_and_seeded():
    space = build_space()
    g1 = random_genotype(space, torch.Generator().manual_seed(3))
    g2 = random_genotype(space, torch.Generator().manual_seed(3))
    assert g1 == g2
    space.validate(g1)
    for cg in g1.cells.values():
        assert all(e.op != "none" for e in cg.edges)


# ----------------------------------------------------------------------------- MAML (learn2learn)
@pytest.mark.l2l
def test_maml_adaptation_never_touches_architecture_parameters():
    pytest.importorskip("learn2learn")
    from datanas_fewshot.meta import MAMLLearner

    space = build_space(steps=2)
    torch.manual_seed(0)
    sn = space.build_supernet(C=4, layers=3, num_classes=0, in_channels=1)
    model = FewShotModel(sn, ways=2)
    dist = ArchitectureDistribution(space, estimator="egs")
    before = {k: v.detach().clone() for k, v in dist.state_dict().items() if torch.is_tensor(v)}
    learner = MAMLLearner(inner_lr=0.5, inner_steps=2, first_order=True)
    # MAML's parameter set is exactly the network's: the distribution is not in it
    maml = learner.wrap(model)
    arch_ids = {id(p) for p in dist.parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in maml.parameters()}
    arch = dist.sample(generator=torch.Generator().manual_seed(1))
    ep = _episode()
    weights_before = [p.detach().clone() for p in model.parameters()]
    adapted = learner.adapt(model, ep, arch, steps=2)
    # the adapted clone moved, the original weights and the distribution did not
    assert any(not torch.equal(a, b) for a, b in zip(adapted.parameters(), weights_before, strict=True))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), weights_before, strict=True))
    for k, v in dist.state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(v, before[k]), k
    # the query loss still produces a gradient for the architecture (outside MAML)
    loss, _ = learner.episode_loss(model, ep, arch)
    grads = torch.autograd.grad(loss, list(dist.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.l2l
def test_maml_evaluate_handles_more_ways_with_fresh_head():
    pytest.importorskip("learn2learn")
    from datanas_fewshot.meta import MAMLLearner

    model = FewShotModel(Conv4(1, hidden=4, blocks=2), ways=2)
    acc = MAMLLearner(inner_lr=0.1, test_inner_steps=1).evaluate(model, _episode(ways=3))
    assert 0.0 <= acc <= 1.0
    assert model.ways == 2  # the model itself is unchanged
    with pytest.raises(ConfigError, match="3 outputs"):
        MAMLLearner().episode_loss(model, _episode(ways=3), None)


def test_protonet_distance_scale_divides_logits():
    model = FewShotModel(Conv4(1, hidden=4, blocks=2))
    ep = _episode()
    torch.manual_seed(0)
    base, _ = ProtoNetLearner().episode_loss(model.eval(), ep, None)
    scaled, _ = ProtoNetLearner(distance_scale="dim").episode_loss(model, ep, None)
    emb = model.embed(torch.cat([ep.support_x, ep.query_x]))
    logits = prototypical_logits(emb[:2], ep.support_y, emb[2:])
    expected = torch.nn.functional.cross_entropy(logits / emb.shape[1], ep.query_y)
    torch.testing.assert_close(scaled, expected)
    assert not torch.isclose(base, scaled)


def test_use_weight_optimizer_swaps_in_adam():
    from datanas_core.search import SearchConfig, Searcher
    from datanas_fewshot.cellnets import use_weight_optimizer

    space = build_space(steps=2)
    sn = space.build_supernet(C=4, layers=3, num_classes=0, in_channels=1)
    searcher = Searcher(
        space, FewShotSearchTask(ProtoNetLearner()), SearchConfig(epochs=2), supernet=FewShotModel(sn)
    )
    use_weight_optimizer(searcher, "adam", 1e-3, 1e-4)
    assert isinstance(searcher.w_optimizer, torch.optim.Adam)
    assert searcher.w_optimizer.param_groups[0]["params"] == searcher.w_params
    before = [p.detach().clone() for p in searcher.w_params]
    searcher.step(_episode(), _episode(seed=1))
    assert any(not torch.equal(a, b) for a, b in zip(before, searcher.w_params, strict=True))
    with pytest.raises(ConfigError, match="adam, sgd"):
        use_weight_optimizer(searcher, "lion", 1e-3, 0.0)
