"""Every core preset on the RNN space: supported ones build, step and derive a valid cell with the rule that
fits the space (DATA: its multi-input rule; the others: one predecessor per node); the rest are refused."""

from __future__ import annotations

import math

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_core.search import SearchConfig, build_searcher
from datanas_core.search.config import PRESETS, preset_stages
from datanas_lm import LMSearchTask, RNNSpace
from datanas_lm.data.text import LMBatch

V, H, T, B = 20, 6, 4, 3
RNN_PRESETS = set("data data_m4 data_m7 data_short data_decide darts darts2 gdas snas drnas".split())


def _batch(stream: str, seed: int) -> LMBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (T + 1, B), generator=g)
    return LMBatch(x[:-1], x[1:], stream, True, 0, T)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_on_the_rnn_space(preset: str) -> None:
    space = RNNSpace()
    if preset not in RNN_PRESETS:
        with pytest.raises(ConfigError, match="lm.darts_rnn"):
            SearchConfig.preset(preset, space)
        return
    cfg = SearchConfig.preset(preset, space, epochs=2, seed=0, w_lr=1.0, w_momentum=0.0)
    assert cfg.approximations == [] and preset_stages(preset, space, 2) is None
    assert cfg.rule == ("data" if preset.startswith("data") else "topk_edges")
    net_kw = {"ntoken": V, "ninp": H, "nhid": H, "dropout": 0, "dropouth": 0, "dropoutx": 0, "dropouti": 0}
    searcher = build_searcher(space, LMSearchTask(), cfg, supernet_kwargs=net_kw)
    searcher.steps_per_epoch = 1
    logs = searcher.step(_batch("train", 1), _batch("val", 2))
    assert all(math.isfinite(v) for v in logs.values())
    genotype = searcher.derive()
    space.validate(genotype)
    if cfg.rule == "topk_edges":  # one predecessor per node
        cell = genotype.cells["recurrent"]
        assert all(len(cell.inputs_of(n)) == 1 for n in space.cells()["recurrent"].nodes)
