"""Every core preset on seg.darts: supported ones build, step and derive a valid backbone cell with the rule
that fits the (extended) space; the rest are refused with the spaces they support."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_core.search import SearchConfig, build_searcher
from datanas_core.search.config import PRESETS
from datanas_seg.space import SegDartsSpace

SEG_PRESETS = set("data data_m4 data_m7 data_short data_decide darts darts2 gdas snas drnas".split())


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _tensors(o)]


class _FeatureTask:
    """A differentiable stand-in loss on the backbone features (the real task needs mmseg heads)."""

    def loss(self, model: Any, batch: Any, arch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        feats = _tensors(model(batch[0], arch))
        loss = sum(f.pow(2).mean() for f in feats)
        return loss, {}  # type: ignore[return-value]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_on_seg_darts(preset: str) -> None:
    space = SegDartsSpace()
    if preset not in SEG_PRESETS:
        with pytest.raises(ConfigError, match="seg.darts"):
            SearchConfig.preset(preset, space)
        return
    cfg = SearchConfig.preset(preset, space, epochs=2, seed=0)
    assert cfg.approximations == []
    searcher = build_searcher(space, _FeatureTask(), cfg, supernet_kwargs={"C": 4})
    searcher.steps_per_epoch = 1
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(2, 3, 16, 16, generator=g),)
    searcher.step(batch, batch)
    space.validate(searcher.derive())
