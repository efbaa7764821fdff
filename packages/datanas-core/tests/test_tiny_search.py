"""A tiny real search (DARTS / NB201 supernets, C=4, 8x8 inputs, a few steps) for every estimator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datanas_core import SearchConfig, Searcher, get_space

ESTIMATORS = [
    ("softmax", {}, "exact"),
    ("snas", {}, "exact"),
    ("gdas", {}, "sparse"),
    ("egs", {"samples": 2}, "exact"),
    ("egs", {"samples": 3}, "sparse"),
    ("egs", {"samples": 2, "normalize": "softmax", "granularity": "node"}, "exact"),
    ("dirichlet", {}, "exact"),
]


class _Task:
    def loss(self, model, batch, arch):  # noqa: ANN001, ANN201
        x, y = batch
        logits = model(x, arch)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}


def _data(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 3, (2,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize(("estimator", "options", "executor"), ESTIMATORS)
@pytest.mark.parametrize("space_name", ["darts", "darts_ext", "nb201"])
def test_tiny_search_every_estimator(space_name: str, estimator: str, options: dict, executor: str) -> None:
    space = get_space(space_name)
    if space_name == "nb201":
        kwargs = {"C": 4, "N": 1, "num_classes": 3}
        rule = "argmax_edge"
    else:
        kwargs = {"C": 4, "layers": 2, "num_classes": 3}
        rule = "data" if space_name == "darts_ext" else "topk_edges"
    regs = ({"type": "adc"},) if estimator == "egs" else ()
    cfg = SearchConfig(
        epochs=1,
        estimator=estimator,
        estimator_options=options,
        executor=executor,
        regularizers=regs,
        rule=rule,
    )
    s = Searcher(space, _Task(), cfg, supernet_kwargs=kwargs)
    alpha0 = [p.detach().clone() for p in s.distribution.parameters()]
    data = _data(4)
    result = s.fit(data[:2], data[2:], eval_loader=data[2:])
    space.validate(result.genotype)
    assert all(torch.isfinite(p).all() for p in s.distribution.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(alpha0, s.distribution.parameters(), strict=True))
    rec = result.history[-1]
    assert 0.0 <= rec["child_acc"] <= 1.0 and 0.0 <= rec["search_acc"] <= 1.0
