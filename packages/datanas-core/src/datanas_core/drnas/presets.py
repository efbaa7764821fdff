"""DrNAS' official search settings as named configurations (methods.md §6c-d).

Each :class:`DrNASPreset` bundles the :class:`~datanas_core.search.SearchConfig` fields, the progressive
stages, the supernet size, the batch size and the train/validation split of one script of the official code:

* ``darts_cifar`` (``DARTS-space/train_search.py``): 20 cells, C=36, batch 64, 50/50 split; w SGD 0.1 cosine
  to 0 over 50 epochs, momentum 0.9, wd 3e-4, clip 5; α Adam 6e-4, betas (0.5, 0.999), wd 1e-3 (the default
  L2 regulariser); stages 25 + 25 epochs, K 6 -> 4, ops 7 -> 4; α frozen for the first 10 epochs of each
  stage; first order; top-2 edges per node.
* ``darts_cifar_kl``: the same with ``reg_type='kl'``: Σ KL(Dir(β) || Dir(1)) with scale 1e-3 and no α
  weight decay (the official help text says the scale suits L2 and should be tuned for KL).
* ``darts_imagenet`` (``train_search_imagenet.py``): 14 cells, C=48, batch 512, lr 0.5, α Adam 6e-3, α
  grad-norm clip 5, K 6 -> 3, ops 7 -> 4, 25 + 25 epochs, warm-up 10. The official 5-epoch linear lr warm-up
  (batch > 256) and the ImageNet stems are not modelled.
* ``nb201`` (``201-space/train_search.py``, the paper's NB201 table): 100 epochs, K=1, batch 64, SGD 0.025
  cosine to 0.001, α Adam 3e-4, L2 1e-3, α updated from the first step; argmax per edge.
* ``nb201_progressive`` (``201-space/train_search_progressive.py``): 50 + 50 epochs, K 4 -> 2, ops 5 -> 3,
  warm-up 10.

Example:
    >>> from datanas_core.drnas.presets import get_preset
    >>> p = get_preset("darts_cifar")
    >>> p.search_config().a_lr, [(s.epochs, s.k, s.keep_ops) for s in p.stages]
    (0.0006, [(25, 6, 7), (25, 4, 4)])
    >>> small = p.scaled(4)       # same shape, 4 epochs: stages 2 + 2, warm-up 0
    >>> [(s.epochs, s.k, s.keep_ops) for s in small.stages], small.search_config().arch_warmup_epochs
    ([(2, 6, 7), (2, 4, 4)], 0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from datanas_core.drnas.progressive import ProgressiveSearcher, Stage, format_stages
from datanas_core.errors import ConfigError, UnknownNameError
from datanas_core.search.config import SearchConfig
from datanas_core.search.task import SearchTask

__all__ = ["PRESETS", "DrNASPreset", "get_preset", "preset_names"]


@dataclass(frozen=True)
class DrNASPreset:
    """One official DrNAS search setting.

    Attributes:
        name: preset name.
        space: registry name of the search space (``"drnas_darts"`` or ``"drnas_nb201"``).
        search: :class:`SearchConfig` fields.
        stages: progressive stages (one stage with ``k=1`` for non-progressive searches).
        supernet: ``space.build_supernet`` options (sizes; ``partial_channels`` comes from the stages).
        batch_size: batch size of each of the two bilevel halves.
        train_portion: share of the training split that trains the weights (the rest trains α).
        source: the official script these values come from.
        notes: what differs from the official script, if anything.
    """

    name: str
    space: str
    search: Mapping[str, Any]
    stages: tuple[Stage, ...]
    supernet: Mapping[str, Any]
    batch_size: int
    train_portion: float = 0.5
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "search", MappingProxyType(dict(self.search)))
        object.__setattr__(self, "supernet", MappingProxyType(dict(self.supernet)))
        object.__setattr__(self, "stages", tuple(self.stages))
        epochs = sum(s.epochs for s in self.stages)
        if self.search.get("epochs", epochs) != epochs:
            raise ConfigError(
                f"preset {self.name!r}: stages {format_stages(self.stages)!r} last {epochs} epochs, "
                f"search epochs is {self.search['epochs']}"
            )

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    @property
    def stages_text(self) -> str:
        """The stages as a ``--stages`` string."""
        return format_stages(self.stages)

    def search_config(self, **overrides: Any) -> SearchConfig:
        """The :class:`SearchConfig` of this preset (``epochs`` set from the stages), with ``overrides``."""
        base = {**self.search, "epochs": self.epochs}
        base.update(overrides)
        return SearchConfig.from_dict(base)

    def scaled(self, epochs: int) -> DrNASPreset:
        """The same schedule shrunk (or stretched) to ``epochs`` in total, for quick runs.

        Stage lengths and the α warm-up are scaled proportionally (each stage keeps at least one epoch; the
        warm-up is rounded down and stays shorter than the shortest stage).

        Raises:
            ConfigError: fewer epochs than stages.
        """
        n = len(self.stages)
        if not isinstance(epochs, int) or epochs < n:
            raise ConfigError(
                f"preset {self.name!r} has {n} stage(s); scaling needs >= {n} epochs, got {epochs!r}"
            )
        total = self.epochs
        lengths = [max(1, (s.epochs * epochs) // total) for s in self.stages]
        lengths[-1] += epochs - sum(lengths)
        if lengths[-1] < 1:
            raise ConfigError(f"cannot scale preset {self.name!r} to {epochs} epochs")
        stages = tuple(dataclasses.replace(s, epochs=e) for s, e in zip(self.stages, lengths, strict=True))
        warmup = (int(self.search.get("arch_warmup_epochs", 0)) * epochs) // total
        warmup = min(warmup, min(lengths) - 1)
        search = {**self.search, "epochs": epochs, "arch_warmup_epochs": max(0, warmup)}
        return dataclasses.replace(self, search=search, stages=stages)

    def build_searcher(
        self,
        task: SearchTask,
        *,
        supernet_kwargs: Mapping[str, Any] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ProgressiveSearcher:
        """A :class:`ProgressiveSearcher` with this preset's space, config, stages and supernet size.

        Args:
            task: the domain task.
            supernet_kwargs: overrides of :attr:`supernet` (e.g. ``num_classes``, ``in_channels``).
            config_overrides: overrides of the search config (e.g. ``seed``).
            kwargs: further :class:`ProgressiveSearcher` arguments (``device``, ``callbacks``).
        """
        from datanas_core.plugins import get_space

        return ProgressiveSearcher(
            get_space(self.space),
            task,
            self.search_config(**dict(config_overrides or {})),
            stages=self.stages,
            supernet_kwargs={**self.supernet, **dict(supernet_kwargs or {})},
            **kwargs,
        )


_DARTS_SEARCH: dict[str, Any] = {
    "estimator": "dirichlet",
    "estimator_options": {},
    "executor": "exact",
    "regularizers": (),
    "rule": "topk_edges",
    "order": "first",
    "step_order": "arch_first",
    "arch_warmup_epochs": 10,
    "w_lr": 0.1,
    "w_lr_min": 0.0,
    "w_momentum": 0.9,
    "w_weight_decay": 3e-4,
    "grad_clip": 5.0,
    "a_lr": 6e-4,
    "a_betas": (0.5, 0.999),
    "a_weight_decay": 1e-3,
}

_NB201_SEARCH: dict[str, Any] = {
    **_DARTS_SEARCH,
    "rule": "argmax_edge",
    "arch_warmup_epochs": 0,
    "w_lr": 0.025,
    "w_lr_min": 0.001,
    "a_lr": 3e-4,
}


def _presets() -> dict[str, DrNASPreset]:
    darts_stages = (Stage(25, 6, 7), Stage(25, 4, 4))
    return {
        "darts_cifar": DrNASPreset(
            "darts_cifar",
            "drnas_darts",
            _DARTS_SEARCH,
            darts_stages,
            {"C": 36, "layers": 20},
            batch_size=64,
            source="xiangning-chen/DrNAS DARTS-space/train_search.py",
        ),
        "darts_cifar_kl": DrNASPreset(
            "darts_cifar_kl",
            "drnas_darts",
            {
                **_DARTS_SEARCH,
                "a_weight_decay": 0.0,
                "regularizers": ({"type": "dirichlet_kl", "weight": 1e-3},),
            },
            darts_stages,
            {"C": 36, "layers": 20},
            batch_size=64,
            source="xiangning-chen/DrNAS DARTS-space/train_search.py --reg_type kl",
            notes="the official help text says the default scale suits l2; tune the KL weight",
        ),
        "darts_imagenet": DrNASPreset(
            "darts_imagenet",
            "drnas_darts",
            {**_DARTS_SEARCH, "w_lr": 0.5, "a_lr": 6e-3, "a_grad_clip": 5.0},
            (Stage(25, 6, 7), Stage(25, 3, 4)),
            {"C": 48, "layers": 14},
            batch_size=512,
            source="xiangning-chen/DrNAS DARTS-space/train_search_imagenet.py",
            notes="ImageNet stems and the 5-epoch linear lr warm-up (batch > 256) are not modelled; "
            "data = 10% / 2.5% per class of ImageNet train for w / alpha",
        ),
        "nb201": DrNASPreset(
            "nb201",
            "drnas_nb201",
            _NB201_SEARCH,
            (Stage(100, 1, 5),),
            {"C": 16, "N": 5},
            batch_size=64,
            source="xiangning-chen/DrNAS 201-space/train_search.py",
        ),
        "nb201_progressive": DrNASPreset(
            "nb201_progressive",
            "drnas_nb201",
            {**_NB201_SEARCH, "arch_warmup_epochs": 10},
            (Stage(50, 4, 5), Stage(50, 2, 3)),
            {"C": 16, "N": 5},
            batch_size=64,
            source="xiangning-chen/DrNAS 201-space/train_search_progressive.py",
        ),
    }


#: The named DrNAS configurations (read-only).
PRESETS: Mapping[str, DrNASPreset] = MappingProxyType(_presets())


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str, *, epochs: int | None = None) -> DrNASPreset:
    """The preset ``name``, optionally :meth:`~DrNASPreset.scaled` to ``epochs``.

    Raises:
        UnknownNameError: unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise UnknownNameError(f"unknown DrNAS preset {name!r}; valid presets: {', '.join(preset_names())}")
    preset = PRESETS[name]
    return preset if epochs is None or epochs == preset.epochs else preset.scaled(epochs)
