"""LMSearchTask: hidden state carried across BPTT windows and detached; core Searcher integration."""

from __future__ import annotations

import math

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_core.sample import ArchSample
from datanas_core.search import SearchConfig, Searcher
from datanas_lm import BPTTLoader, LMSearchTask, RNNSpace, batchify
from datanas_lm.data.text import LMBatch

V, H = 15, 6


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return RNNSpace().build_supernet(ntoken=V, ninp=H, nhid=H, dropout=0, dropouth=0, dropoutx=0, dropouti=0)


def _arch() -> ArchSample:
    w = torch.full((36, 5), 0.2)
    return ArchSample.fixed({"recurrent": w})


def _windows(bptt: int = 5, stream: str = "train") -> list[LMBatch]:
    data = batchify(torch.arange(200) % V, 2)
    return list(BPTTLoader(data, bptt, stream=stream, variable_length=False))


def test_hidden_state_is_carried_across_windows_and_detached() -> None:
    net = _net().eval()  # eval: BatchNorm uses running statistics, so windows compose exactly
    task = LMSearchTask()
    arch = _arch()
    w = _windows()
    full = torch.cat([w[0].inputs, w[1].inputs])
    logits_full, _ = net(full, net.init_hidden(2), arch)
    task.loss(net, w[0], arch)
    h_start = task.initial_hidden(net, w[1])
    assert h_start.grad_fn is None and not h_start.requires_grad  # detached: no gradient across windows
    assert float(h_start.abs().sum()) > 0  # ... but it is the state the first window ended with
    logits_second, _ = net(w[1].inputs, h_start, arch)
    assert torch.allclose(logits_second, logits_full[w[0].inputs.size(0) :], atol=1e-5)


def test_loss_backward_stays_inside_the_window() -> None:
    net = _net().train()
    task = LMSearchTask()
    arch = _arch()
    w = _windows()
    loss0, _ = task.loss(net, w[0], arch)
    loss0.backward()
    loss1, logs = task.loss(net, w[1], arch)
    loss1.backward()  # would raise "backward through the graph a second time" if the state were not detached
    assert math.isfinite(logs["loss"]) and logs["ppl"] == pytest.approx(math.exp(logs["loss"]))


def test_repeated_window_starts_from_the_same_state_and_reset_restarts() -> None:
    net = _net().eval()
    task = LMSearchTask()
    arch = _arch()
    w = _windows()
    task.loss(net, w[0], arch)
    task.loss(net, w[1], arch)
    first = task.initial_hidden(net, w[1])  # same window again (unrolled step, metrics): same start state
    task.loss(net, w[1], arch)
    assert torch.equal(task.initial_hidden(net, w[1]), first)
    assert float(task.initial_hidden(net, w[0]).abs().sum()) == 0  # w[0] has reset=True: zeros
    other = _windows(stream="val")[3]
    assert float(task.initial_hidden(net, other).abs().sum()) == 0  # another stream has its own state
    task.reset()
    assert float(task.initial_hidden(net, w[2]).abs().sum()) == 0


def test_training_stream_loss_gets_tar_and_length_scaling() -> None:
    net = _net().train()
    w = _windows(bptt=5)[1]
    half = w._replace(bptt=10)  # a window half as long as the nominal BPTT length
    plain = LMSearchTask(beta=0.0, scale_by_length=False)
    scaled = LMSearchTask(beta=0.0, scale_by_length=True)
    torch.manual_seed(0)
    a, la = plain.loss(net, half, _arch())
    torch.manual_seed(0)
    b, lb = scaled.loss(net, half, _arch())
    assert float(b.detach()) == pytest.approx(float(a.detach()) * 0.5, rel=1e-5)
    assert la["loss"] == pytest.approx(lb["loss"], rel=1e-6)
    # the logged loss is the cross-entropy; the optimised value is logged as the objective
    assert lb["objective"] == pytest.approx(float(b.detach()), rel=1e-6)
    assert lb["ppl"] == pytest.approx(math.exp(lb["loss"]))
    val = half._replace(stream="val")
    torch.manual_seed(0)
    c, lc = scaled.loss(net, val, _arch())  # validation stream: plain cross-entropy
    assert float(c.detach()) == pytest.approx(la["loss"], rel=1e-5)
    assert "objective" not in lc
    with pytest.raises(ConfigError, match="LMBatch"):
        plain.loss(net, (w.inputs, w.targets), _arch())  # type: ignore[arg-type]


def test_searcher_runs_on_windows_and_derives_one_predecessor_per_node() -> None:
    g = torch.Generator().manual_seed(0)
    data = batchify(torch.randint(0, V, (1600,), generator=g), 8)  # BatchNorm in the cell wants B > 2
    train = BPTTLoader(data, 6, stream="train", max_tokens=120)
    val = BPTTLoader(data, 6, stream="val", max_tokens=120, seed=1)
    cfg = SearchConfig.preset(
        "darts",
        epochs=1,
        w_lr=1.0,
        w_lr_min=1.0,
        w_momentum=0.0,
        grad_clip=0.25,
        a_lr=3e-3,
        rule_options={"k": 1},
    )
    sizes = {
        "ntoken": V,
        "ninp": H,
        "nhid": H,
        "dropout": 0.1,
        "dropouth": 0.1,
        "dropoutx": 0.1,
        "dropouti": 0.1,
    }
    s = Searcher(RNNSpace(), LMSearchTask(), cfg, supernet_kwargs=sizes)
    before = [p.detach().clone() for p in s.distribution.parameters()]
    result = s.fit(train, val)
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(before, s.distribution.parameters(), strict=True)
    )
    cell = result.genotype.cells["recurrent"]
    assert all(len(cell.inputs_of(j)) == 1 for j in range(1, 9))
    m = s.evaluate(BPTTLoader(data, 6, stream="eval", variable_length=False, max_tokens=96), arch="derived")
    assert math.isfinite(m["loss"])
