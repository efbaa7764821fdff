"""Derived image classifiers with the timm host contract (pure torch; timm is not imported here).

:class:`DartsClassifier` and :class:`NB201Classifier` are the core derived networks
(``DartsSpace.build_derived`` and ``NB201Space.build_derived`` in :mod:`datanas_core.space`) plus what
timm's factory and feature wrappers expect: ``in_chans``, head dropout, ``forward_intermediates`` accepting
timm's ``norm`` argument, ``prune_intermediate_layers``, and JSON-serialisable reconstruction arguments (the
genotype is recorded as its JSON document, whatever form it was given in).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.space.darts import DartsNetwork, DartsSpace
from datanas_core.space.nb201 import NB201Network, NB201Space
from datanas_core.space.networks import take_indices

__all__ = [
    "DartsClassifier",
    "GenotypeLike",
    "NB201Classifier",
    "build_classifier",
    "published_names",
    "resolve_genotype",
    "stage_end_indices",
]

logger = logging.getLogger(__name__)

#: Anything :func:`resolve_genotype` accepts.
GenotypeLike = Genotype | Mapping[str, Any] | str | os.PathLike[str]


def published_names() -> list[str]:
    """Names of the genotypes bundled with datanas-core (``datanas_core.published``)."""
    from datanas_core.published import published_names as _names

    return _names()


def resolve_genotype(genotype: GenotypeLike) -> Genotype:
    """Turn any supported genotype reference into a :class:`~datanas_core.genotype.Genotype`.

    Args:
        genotype: a Genotype; its JSON document (a mapping); a bundled published name (``"darts_v2"``,
            case-insensitive); a path to a genotype JSON file or a run directory holding ``genotype.json``;
            a JSON string; or an NB201 benchmark string (``"|nor_conv_3x3~0|+|...|"``).

    Raises:
        GenotypeError: the reference matches none of these (the message lists the bundled names).
    """
    from datanas_core.cli_options import resolve_genotype as core_resolve
    from datanas_core.published import load_published

    return core_resolve(genotype, bundled={n: (lambda n=n: load_published(n)) for n in published_names()})


def stage_end_indices(feature_info: Sequence[Mapping[str, Any]]) -> tuple[int, ...]:
    """Indices of the last feature map at every reduction level (timm's usual ``features_only`` picks)."""
    out = []
    for i, info in enumerate(feature_info):
        nxt = feature_info[i + 1]["reduction"] if i + 1 < len(feature_info) else None
        if nxt != info["reduction"]:
            out.append(i)
    return tuple(out)


class _TimmHostMixin:
    """timm-facing additions shared by the DARTS and NB201 classifiers."""

    genotype: Genotype
    feature_info: list[dict[str, Any]]
    cells: nn.ModuleList
    classifier: nn.Module
    global_pool: nn.Module
    num_classes: int
    head_drop: nn.Module
    _num_stems: int

    # timm records the factory's keyword arguments here (``timm.create_model`` merges the caller's kwargs
    # into it). The genotype is normalised to its JSON document so the arguments serialise
    # (``timm.models.save_for_hf``) and rebuild the same network anywhere.
    @property
    def _model_args(self) -> dict[str, Any]:
        return dict(self.__dict__.get("_datanas_model_args", {}))

    @_model_args.setter
    def _model_args(self, value: Mapping[str, Any]) -> None:
        args = dict(value)
        if "genotype" in args:
            args["genotype"] = self.genotype.to_dict()
        self.__dict__["_datanas_model_args"] = args

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pooling, dropout (``drop_rate``), then the classifier unless ``pre_logits``."""
        x = self.global_pool(x).flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.classifier(x)

    def _prune(self, indices: int | Sequence[int], prune_head: bool) -> list[int]:
        take, max_index = take_indices(len(self.feature_info), indices)
        keep_cells = max(0, max_index - self._num_stems + 1)
        self.cells = nn.ModuleList(list(self.cells)[:keep_cells])
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_head:
            self.num_classes = 0
            self.classifier = nn.Identity()
            self.head_drop = nn.Identity()
        return take


class DartsClassifier(_TimmHostMixin, DartsNetwork):
    """DARTS-space evaluation network (``NetworkCIFAR`` / ``NetworkImageNet``) as a timm-compatible model.

    Args:
        genotype: see :func:`resolve_genotype`; spaces ``"darts"`` and ``"darts_ext"``.
        num_classes: classifier outputs (0: pooled features).
        in_chans: input image channels.
        C: initial cell width (DARTS CIFAR evaluation: 36).
        layers: number of cells (DARTS CIFAR evaluation: 20).
        auxiliary: DARTS' auxiliary head (training mode then returns ``(logits, aux_logits)``).
        drop_rate: dropout before the classifier.
        drop_path_rate: initial drop-path probability (``drop_path_prob``; ramp it during training).
        stem: ``"cifar"`` or ``"imagenet"``.
        stem_multiplier: CIFAR stem width factor.
        pool_bn: BatchNorm after pooling ops (DrNAS' evaluation cells).
        global_pool: only ``"avg"``.

    Example:
        >>> from datanas_vision.models import DartsClassifier
        >>> net = DartsClassifier("darts_v2", num_classes=10, C=8, layers=3)
        >>> net(torch.zeros(2, 3, 32, 32)).shape   # doctest: +SKIP
        torch.Size([2, 10])
    """

    def __init__(
        self,
        genotype: GenotypeLike,
        num_classes: int = 10,
        in_chans: int = 3,
        C: int = 36,
        layers: int = 20,
        auxiliary: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stem: str = "cifar",
        stem_multiplier: int = 3,
        pool_bn: bool = False,
        global_pool: str = "avg",
    ) -> None:
        g = resolve_genotype(genotype)
        if g.space not in ("darts", "darts_ext"):
            raise ConfigError(
                f"genotype is for space {g.space!r}; DartsClassifier takes spaces 'darts' and 'darts_ext' "
                "(use NB201Classifier / 'datanas_nb201' for 'nb201')"
            )
        if global_pool != "avg":
            raise ConfigError(f"global_pool {global_pool!r} is not supported; valid: 'avg'")
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate}")
        space = DartsSpace(extended=g.space == "darts_ext")
        space.validate(g)
        super().__init__(
            g,
            space,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_channels=in_chans,
            auxiliary=auxiliary,
            drop_path_prob=drop_path_rate,
            stem=stem,
            stem_multiplier=stem_multiplier,
            pool_bn=pool_bn,
        )
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.head_drop: nn.Module = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.arch_config = {"C": C, "layers": layers, "stem": stem, "stem_multiplier": stem_multiplier,
                            "pool_bn": pool_bn}  # fmt: skip

    def forward_intermediates(  # type: ignore[override]
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stem and per-cell feature maps in ``feature_info`` order (``norm`` is accepted for timm; DARTS
        networks have no final norm)."""
        return super().forward_intermediates(
            x, indices, stop_early=stop_early, output_fmt=output_fmt, intermediates_only=intermediates_only
        )

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the cells after the last wanted feature map (and the head, auxiliary head included).

        Returns:
            The wanted indices, normalised to non-negative positions in ``feature_info``.
        """
        take = self._prune(indices, prune_head)
        if prune_head and self.auxiliary:
            self.auxiliary = False
            del self.auxiliary_head
        if self._aux_cell >= len(self.cells):
            self.auxiliary = False
        return take


class NB201Classifier(_TimmHostMixin, NB201Network):
    """NAS-Bench-201 network of one cell as a timm-compatible model.

    Args:
        genotype: an NB201 genotype, its benchmark string, a JSON path or a bundled name (``"nb201_best"``).
        num_classes: classifier outputs.
        in_chans: input image channels.
        C: stem width (benchmark: 16).
        N: cells per stage (benchmark: 5).
        drop_rate: dropout before the classifier.
        global_pool: only ``"avg"``.
    """

    def __init__(
        self,
        genotype: GenotypeLike,
        num_classes: int = 10,
        in_chans: int = 3,
        C: int = 16,
        N: int = 5,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        g = resolve_genotype(genotype)
        if g.space != "nb201":
            raise ConfigError(
                f"genotype is for space {g.space!r}; NB201Classifier takes space 'nb201' "
                "(use DartsClassifier / 'datanas_cifar' for 'darts')"
            )
        if global_pool != "avg":
            raise ConfigError(f"global_pool {global_pool!r} is not supported; valid: 'avg'")
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate}")
        space = NB201Space()
        space.validate(g)
        super().__init__(g, space, C=C, N=N, num_classes=num_classes, in_channels=in_chans)
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.head_drop: nn.Module = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self._num_stems = 1
        self.arch_config = {"C": C, "N": N}

    def forward_intermediates(  # type: ignore[override]
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stem, cell and block outputs in ``feature_info`` order (``norm`` is accepted for timm)."""
        return super().forward_intermediates(
            x, indices, stop_early=stop_early, output_fmt=output_fmt, intermediates_only=intermediates_only
        )

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the cells after the last wanted feature map (and the head when ``prune_head``)."""
        take = self._prune(indices, prune_head)
        if prune_norm:
            self.lastact = nn.Identity()
        return take


def build_classifier(genotype: GenotypeLike, **kwargs: Any) -> DartsClassifier | NB201Classifier:
    """The classifier class that fits the genotype's space (``darts``/``darts_ext`` or ``nb201``).

    Keyword arguments go to :class:`DartsClassifier` or :class:`NB201Classifier`; ``layers`` is accepted
    for NB201 as the cells per stage (``N``).
    """
    g = resolve_genotype(genotype)
    if g.space == "nb201":
        if "layers" in kwargs:
            kwargs["N"] = kwargs.pop("layers")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("auxiliary", "drop_path_rate")}
        return NB201Classifier(g, **kwargs)
    return DartsClassifier(g, **kwargs)


def genotype_json(genotype: GenotypeLike) -> str:
    """Compact canonical JSON of a genotype reference."""
    return json.dumps(resolve_genotype(genotype).to_dict(), sort_keys=True)
