"""mmseg backbones: the derived DataNAS backbone and the search supernet as mmengine ``BaseModule`` s.

Both are registered in ``mmseg.registry.MODELS`` (names ``DataNASBackbone`` and ``DataNASSupernetBackbone``),
are built from plain config keywords and return a tuple of NCHW features in ``out_indices`` order, as
``EncoderDecoder`` expects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from datanas_core.errors import ConfigError
from datanas_core.sample import ArchSample
from datanas_seg.backbone import DataNASBackbone, SegSupernetBackbone
from datanas_seg.genotypes import GenotypeRef
from datanas_seg.space import SegDartsSpace

__all__ = ["MMSegDataNASBackbone", "MMSegDataNASSupernet"]

logger = logging.getLogger(__name__)

_NORMS = ("BN", "SyncBN")


def _apply_norm_cfg(module: nn.Module, norm_cfg: Mapping[str, Any] | None) -> nn.Module:
    cfg = dict(norm_cfg or {"type": "BN"})
    kind = cfg.get("type", "BN")
    if kind not in _NORMS:
        raise ConfigError(f"unsupported norm_cfg type {kind!r}; valid types: {', '.join(_NORMS)}")
    if kind == "SyncBN":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if not cfg.get("requires_grad", True):
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                for p in m.parameters():
                    p.requires_grad_(False)
    return module


@MODELS.register_module(name="DataNASBackbone")
class MMSegDataNASBackbone(BaseModule):
    """The derived backbone of a searched genotype, for mmseg's ``EncoderDecoder``.

    Args:
        genotype: a bundled genotype name, a genotype JSON path or a genotype document (dict).
        C, cells_per_stage, num_stages, in_channels, stem_multiplier, drop_path_prob: see
            :class:`datanas_seg.backbone.DataNASBackbone`.
        out_indices: stages whose features are returned (stage ``s`` has output stride ``4 * 2**s``).
        norm_cfg: ``dict(type='BN' | 'SyncBN', requires_grad=True)``.
        norm_eval: keep BatchNorm layers in eval mode during training (frozen statistics).
        frozen_stages: -1 freezes nothing, 0 the stem, ``k`` the stem and the cells of stages ``0..k-1``.
        init_cfg: mmengine initialisation config (e.g. ``dict(type='Pretrained', checkpoint=...)``).

    Example (config)::

        backbone=dict(type='DataNASBackbone', genotype='path/genotype.json', C=16, out_indices=(0, 1, 2))
    """

    def __init__(
        self,
        genotype: GenotypeRef,
        C: int = 16,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        in_channels: int = 3,
        stem_multiplier: int = 2,
        out_indices: Sequence[int] = (0, 1, 2),
        drop_path_prob: float = 0.0,
        norm_cfg: Mapping[str, Any] | None = None,
        norm_eval: bool = False,
        frozen_stages: int = -1,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ConfigError(f"frozen_stages must be an int in -1..{num_stages}, got {frozen_stages!r}")
        self.net = _apply_norm_cfg(
            DataNASBackbone(
                genotype,
                C=C,
                cells_per_stage=cells_per_stage,
                num_stages=num_stages,
                in_channels=in_channels,
                stem_multiplier=stem_multiplier,
                out_indices=out_indices,
                drop_path_prob=drop_path_prob,
            ),
            norm_cfg,
        )
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of the returned features (fill ``decode_head.in_channels`` with them)."""
        return self.net.out_channels  # type: ignore[no-any-return]

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return self.net.feature_info  # type: ignore[no-any-return]

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        mods: list[nn.Module] = [self.net.stem]
        for i, (_, stage) in enumerate(self.net._layout):
            if stage < self.frozen_stages:
                mods.append(self.net.cells[i])
        return mods

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> MMSegDataNASBackbone:
        """Switch mode, keeping frozen stages (and with ``norm_eval`` every BatchNorm) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.net(x)  # type: ignore[no-any-return]


@MODELS.register_module(name="DataNASSupernetBackbone")
class MMSegDataNASSupernet(BaseModule):
    """The weight-sharing search backbone for mmseg's ``EncoderDecoder``.

    The architecture is supplied from outside for each forward pass: the search task wraps every segmentor
    call in ``with backbone.use_arch(sample): ...``. The module keeps only a reference to the current
    :class:`~datanas_core.sample.ArchSample` (never a parameter or buffer), so the architecture parameters
    stay in the searcher's distribution and the architecture gradient flows through mmseg's own segmentor
    loss.

    Args:
        C, cells_per_stage, num_stages, in_channels, stem_multiplier, out_indices, pool_bn: see
            :class:`datanas_seg.backbone.SegSupernetBackbone`.
        space: ``SegDartsSpace`` keyword options (``ops``, ``steps``, ``multiplier``, ``strict``).
        init_cfg: mmengine initialisation config.
    """

    def __init__(
        self,
        C: int = 8,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        in_channels: int = 3,
        stem_multiplier: int = 2,
        out_indices: Sequence[int] | None = None,
        pool_bn: bool = True,
        space: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.net = SegSupernetBackbone(
            SegDartsSpace(**dict(space or {})),
            C=C,
            cells_per_stage=cells_per_stage,
            num_stages=num_stages,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            out_indices=out_indices,
            pool_bn=pool_bn,
        )
        self._arch: ArchSample | None = None

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self.net.out_channels

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return self.net.feature_info

    @property
    def arch(self) -> ArchSample | None:
        """The architecture sample used by the next forward passes (``None`` outside ``use_arch``)."""
        return self._arch

    @contextlib.contextmanager
    def use_arch(self, arch: ArchSample) -> Iterator[MMSegDataNASSupernet]:
        """Run the enclosed forward passes with ``arch``; the reference is dropped on exit."""
        previous = self._arch
        self._arch = arch
        try:
            yield self
        finally:
            self._arch = previous

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Features of ``x`` under the current architecture sample.

        Raises:
            ConfigError: no architecture was supplied (call inside ``with backbone.use_arch(sample):``).
        """
        if self._arch is None:
            raise ConfigError(
                "DataNASSupernetBackbone has no architecture for this forward pass; "
                "wrap the segmentor call in "
                "`with segmentor.backbone.use_arch(sample): ...` (the search task does this)"
            )
        return self.net(x, self._arch)
