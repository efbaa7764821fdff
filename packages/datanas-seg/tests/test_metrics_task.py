"""mIoU accumulation, the pure-torch search task and model, training helpers and random baselines."""

from __future__ import annotations

import math

import pytest
import torch

from datanas_core.errors import ConfigError, DataError, SearchSpaceError
from datanas_core.sample import ArchSample
from datanas_seg import (
    IoUAccumulator,
    SegDartsSpace,
    SegModel,
    SegSearchTask,
    SimpleSegHead,
    TrainSettings,
    evaluate_segmentation,
    intersect_and_union,
    load_segfolder,
    param_matched_random_genotypes,
    random_genotype,
    train_model,
)
from datanas_seg.backbone import DataNASBackbone
from datanas_seg.training import backbone_op_params, count_parameters, in_degrees_of


def test_intersect_and_union_by_hand() -> None:
    pred = torch.tensor([[0, 0, 1], [1, 1, 2]])
    label = torch.tensor([[0, 1, 1], [1, 255, 0]])
    inter, union, p, t = intersect_and_union(pred, label, 3, 255)
    assert inter.tolist() == [1, 2, 0]
    assert p.tolist() == [2, 2, 1]  # the ignored pixel is not counted
    assert t.tolist() == [2, 3, 0]
    assert union.tolist() == [3, 3, 1]


def test_accumulator_means_skip_absent_classes() -> None:
    acc = IoUAccumulator(num_classes=3)
    acc.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))
    res = acc.compute()
    assert res["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 never seen: left out
    assert res["aAcc"] == pytest.approx(3 / 4)
    assert math.isnan(acc.per_class_iou()[2].item())
    acc.reset()
    acc.update(torch.tensor([1]), torch.tensor([1]))
    assert acc.compute()["mIoU"] == 1.0


def test_evaluate_segmentation_is_dataset_level() -> None:
    # two batches; per-batch mIoU averages would differ from the pooled value
    batches = [
        (torch.zeros(1, 1, 2, 2), torch.tensor([[[0, 0], [0, 0]]])),
        (torch.ones(1, 1, 2, 2), torch.tensor([[[1, 1], [0, 1]]])),
    ]

    def predict(x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] > 0.5).long()

    res = evaluate_segmentation(predict, batches, 2)
    assert res["IoU.0"] == pytest.approx(4 / 5) and res["IoU.1"] == pytest.approx(3 / 4)
    assert res["mIoU"] == pytest.approx((4 / 5 + 3 / 4) / 2)


def test_sliding_window_tiles_and_averages() -> None:
    from datanas_seg.task import sliding_window_logits

    x = torch.arange(2 * 1 * 10 * 7, dtype=torch.float32).reshape(2, 1, 10, 7)
    calls: list[tuple[int, int]] = []

    def ident(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape[-2:]))
        return torch.cat([t, -t], 1)

    out = sliding_window_logits(ident, x, crop_size=4, stride=3)
    # a pointwise model gives back its whole-image output, whatever the tiling
    assert torch.allclose(out, torch.cat([x, -x], 1))
    assert set(calls) == {(4, 4)} and len(calls) == 3 * 2  # rows 0,3,6 ; cols 0,3 (last flush with border)
    # windows larger than the image: one call on the whole image
    calls.clear()
    assert torch.allclose(sliding_window_logits(ident, x, crop_size=16, stride=8), torch.cat([x, -x], 1))
    assert calls == [(10, 7)]
    with pytest.raises(ConfigError):
        sliding_window_logits(ident, x, crop_size=0, stride=1)


def test_search_task_gradient_reaches_arch_weights() -> None:
    space = SegDartsSpace(ops=("none", "skip_connect", "sep_conv_3x3"))
    bb = space.build_supernet(C=4, in_channels=1)
    model = SegModel(bb, SimpleSegHead(bb.out_channels, 2, channels=8))
    w = {ct: torch.full((14, 3), 1 / 3, requires_grad=True) for ct in ("normal", "reduce")}
    arch = ArchSample.fixed(w)
    for ct in w:
        arch[ct].weights = w[ct]
    task = SegSearchTask(2)
    x, y = torch.randn(2, 1, 16, 16), torch.randint(0, 2, (2, 16, 16))
    y[0, 0, 0] = 255
    loss, logs = task.loss(model, (x, y), arch)
    assert loss.dim() == 0 and 0.0 <= logs["acc"] <= 1.0
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in w.values())
    m = task.metrics(model, (x, y), arch)
    assert set(m) == {"loss", "mIoU", "aAcc"}
    with pytest.raises(DataError, match="do not match"):
        task.loss(model, (x, y[:, :8]), arch)


def test_train_model_runs_the_budget(segfolder, darts_genotype) -> None:
    data = load_segfolder(segfolder)
    torch.manual_seed(0)
    bb = DataNASBackbone(darts_genotype, C=4)
    model = SegModel(bb, SimpleSegHead(bb.out_channels, 2, channels=8))
    before = [p.detach().clone() for p in model.parameters()]
    steps: list[int] = []
    hist = train_model(
        model,
        SegSearchTask(2),
        data,
        TrainSettings(iters=3, batch_size=2, crop_size=16, lr=0.01, log_every=2),
        on_step=lambda s, _: steps.append(s),
    )
    assert steps == [1, 2, 3]
    assert [h["step"] for h in hist] == [2, 3]
    assert all(math.isfinite(h["loss"]) for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ConfigError, match="iters"):
        TrainSettings(iters=0)


def test_random_genotypes_are_valid_and_seeded() -> None:
    space = SegDartsSpace()
    a = random_genotype(space, torch.Generator().manual_seed(5))
    b = random_genotype(space, torch.Generator().manual_seed(5))
    c = random_genotype(space, torch.Generator().manual_seed(6))
    assert a == b and a != c
    space.validate(a)
    assert all(d == [2, 2, 2, 2] for d in in_degrees_of(a, space).values())
    assert all(e.op != "none" for cell in a.cells.values() for e in cell.edges)


def test_param_matched_baselines(data_genotype) -> None:
    space = SegDartsSpace()
    ref = backbone_op_params(data_genotype, C=4)
    total = count_parameters(DataNASBackbone(data_genotype, C=4))
    gs = param_matched_random_genotypes(
        space, data_genotype, 3, C=4, backbone_params=total, tolerance=0.1, seed=1
    )
    assert len(gs) == 3 and len(set(gs)) == 3
    for g in gs:
        space.validate(g)
        assert abs(backbone_op_params(g, C=4) - ref) <= 0.1 * total
        assert abs(count_parameters(DataNASBackbone(g, C=4)) - total) <= 0.1 * total + 1
        assert in_degrees_of(g, space) == {
            ct: [max(1, min(d, node)) for d, node in zip(v, range(2, 6), strict=True)]
            for ct, v in in_degrees_of(data_genotype, space).items()
        }
    with pytest.raises(SearchSpaceError, match="raise the tolerance"):
        param_matched_random_genotypes(space, data_genotype, 50, C=4, tolerance=1e-9, max_draws=20)


def test_class_weighted_loss_matches_torch() -> None:
    import torch.nn.functional as F

    model = torch.nn.Conv2d(1, 2, 1)
    task = SegSearchTask(2, class_weight=[3.0, 0.5])
    x, y = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4))
    loss, _ = task.loss(model, (x, y), None)
    expected = F.cross_entropy(model(x), y, weight=torch.tensor([3.0, 0.5]))
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(model(x), y))
