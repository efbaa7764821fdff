"""One call to search your own model: :func:`search` (also ``datanas_core.search(...)``) and :func:`fix`.

Example::

    import torch.nn.functional as F
    import datanas_core as dc
    from datanas_core.nn import LayerChoice

    result = dc.search(Net(), train_loader, val_loader, loss=F.cross_entropy, preset="data", epochs=5)
    result.genotype.save("genotype.json")     # {"cells": {"block": {"edges": [[0, 1, "1"]], ...}}, ...}
    model = result.model                      # a plain nn.Module: the chosen candidates only
    fresh = dc.fix(Net(), result.genotype)    # the same architecture with fresh weights
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample
from datanas_core.space.model import ModelSpace, ModelSupernet, choices_of, fix

__all__ = ["LossTask", "ModelSearchResult", "fix", "model_presets", "search"]

logger = logging.getLogger(__name__)

#: Keyword arguments of :func:`search` that go to :func:`~datanas_core.runtime.run_search` (need ``run_dir``).
RUNTIME_OPTIONS = frozenset(
    {
        "resume",
        "checkpoint_every",
        "checkpoint_every_epochs",
        "keep_last",
        "progress",
        "log_every",
        "eval_loader",
        "consistency",
        "consistency_batches",
        "collapse",
        "early_stop_collapse",
        "nan_guard",
        "callbacks",
        "data_files",
        "distributed",
        "report",
        "tensorboard",
    }
)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


class LossTask:
    """A :class:`~datanas_core.search.SearchTask` from a loss ``fn(outputs, targets)``: batches are
    ``(inputs, targets)``, moved to the model's device; logs accuracy when the outputs are class scores.

    Args:
        loss: ``loss(outputs, targets) -> scalar tensor``.
    """

    def __init__(self, loss: Callable[[Any, Any], Tensor]) -> None:
        if not callable(loss):
            raise ConfigError(
                f"loss must be a callable (outputs, targets) or a task, got {type(loss).__name__}"
            )
        self.loss_fn = loss

    @staticmethod
    def _split(batch: Any) -> tuple[Any, Any]:
        if isinstance(batch, Mapping) or not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise ConfigError(
                f"batches must be (inputs, targets) pairs, got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else "")
                + "; pass a task object with loss(model, batch, arch) for other batch layouts"
            )
        return batch[0], batch[1]

    def loss(self, model: nn.Module, batch: Any, arch: ArchSample) -> tuple[Tensor, dict[str, float]]:
        x, y = self._split(batch)
        dev = _device_of(model) if isinstance(model, nn.Module) else _device_of(model._module)  # type: ignore[attr-defined]
        x, y = _to_device(x, dev), _to_device(y, dev)
        out = model(x, arch)
        loss = self.loss_fn(out, y)
        logs: dict[str, float] = {}
        if (
            isinstance(out, Tensor)
            and isinstance(y, Tensor)
            and out.dim() == 2
            and y.dim() == 1
            and not y.is_floating_point()
            and out.shape[0] == y.shape[0]
        ):
            logs["acc"] = float((out.detach().argmax(-1) == y).float().mean())
        return loss, logs

    def metrics(self, model: nn.Module, batch: Any, arch: ArchSample) -> dict[str, float]:
        loss, logs = self.loss(model, batch, arch)
        return {"loss": float(loss), **logs}

    def batch_size(self, batch: Any) -> int:
        x, _ = self._split(batch)
        if isinstance(x, Tensor):
            return int(x.shape[0])
        return len(x)


@dataclass
class ModelSearchResult:
    """What :func:`search` returns.

    Attributes:
        genotype: the derived architecture (versioned JSON; ``meta["choices"]`` names each label's choice).
        model: a plain ``nn.Module`` with the chosen candidates only, weights inherited from the search.
        choices: ``{label: chosen candidate}`` (a list where several inputs were kept).
        supernet: the searched :class:`~datanas_core.space.model.ModelSupernet` (all candidates).
        space: the :class:`~datanas_core.space.model.ModelSpace`.
        searcher: the :class:`~datanas_core.search.Searcher` (distribution, optimisers, history).
        history: per-epoch records.
        run_dir: the run directory (``None`` without the runtime).
    """

    genotype: Genotype
    model: nn.Module
    choices: dict[str, Any]
    supernet: nn.Module
    space: ModelSpace
    searcher: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    stopped_early: bool = False


def _reiterable(data: Any, what: str) -> Any:
    if data is None:
        return None
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ConfigError(
            f"{what} must be an iterable of (inputs, targets) batches, got {type(data).__name__}"
        )
    if iter(data) is data:  # a one-shot iterator or generator: keep its batches for every epoch
        data = list(data)
        logger.info("%s is a one-shot iterator; its %d batches were kept in memory", what, len(data))
    return data


def _first_input(data: Any) -> Any:
    try:
        batch = next(iter(data))
    except StopIteration:
        raise ConfigError("train_data yields no batch") from None
    x = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
    if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[0] >= 1:
        return x[:1]
    return x


def model_presets() -> list[str]:
    """The presets that can search a model: every preset not tied to named spaces (EnTranNAS' engine/transit
    cells, E2NAS' NB201 VAE and DrNAS' partial-channel stages are)."""
    from datanas_core.search import config as cfg

    specs = getattr(cfg, "PRESET_SPECS", {})
    return sorted(n for n in cfg.PRESETS if getattr(specs.get(n), "spaces", None) is None)


def _config_fields() -> set[str]:
    from datanas_core.search.config import SearchConfig

    return {f.name for f in dataclasses.fields(SearchConfig)}


def search(
    model: nn.Module,
    train_data: Iterable[Any],
    val_data: Iterable[Any] | None = None,
    *,
    loss: Callable[[Any, Any], Tensor] | Any,
    preset: str = "data",
    epochs: int | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> ModelSearchResult:
    """Search the choices of ``model`` (:class:`~datanas_core.nn.LayerChoice`,
    :class:`~datanas_core.nn.InputChoice`, at any depth) with a method preset.

    The model is copied (the argument is left untouched); the copy becomes the supernet, the architecture
    lives in an :class:`~datanas_core.ArchitectureDistribution` (one row per label), and the search is the
    engine's :class:`~datanas_core.search.Searcher` (every estimator, executor and regulariser).

    Args:
        model: the model with choice modules.
        train_data: ``(inputs, targets)`` batches for the weight step (any re-iterable; DataLoaders,
            lists; a one-shot iterator is kept in memory).
        val_data: batches for the architecture step (default: ``train_data``).
        loss: ``loss(outputs, targets)`` (e.g. ``F.cross_entropy``) or a task object with
            ``loss(model, batch, arch)`` (see :class:`~datanas_core.search.SearchTask`; ``model(x, arch)``).
        preset: method preset (``data``, ``data_m4``, ``data_m7``, ``darts``, ``darts2``, ``gdas``, ``snas``,
            ``drnas``; :data:`~datanas_core.PRESETS`).
        epochs: search epochs (default: the preset's).
        run_dir: with a directory, the runtime runs the search (progress, checkpoints, resume, monitors,
            report with a table of choices).
        device: where to search (default: the model's device); batches are moved there.
        **overrides: :class:`~datanas_core.SearchConfig` fields (``seed``, ``w_lr``, ``a_lr``,
            ``estimator_options``, ``regularizers`` (replaces the preset's; e.g. add
            ``{"type": "expected_cost", "metric": "flops", "budget": ..., "form": "hinge"}``), ...) and, with
            ``run_dir``, :func:`~datanas_core.runtime.run_search` options (``resume``, ``progress``,
            ``checkpoint_every``, ``report``, ...).

    Returns:
        A :class:`ModelSearchResult` (``.genotype``, ``.model``, ``.choices``, ...).

    Raises:
        ConfigError: unknown preset or option, runtime options without ``run_dir``, bad data.
        SearchSpaceError: the model has no choices, labels disagree, candidate outputs differ in shape.
    """
    from datanas_core.search.config import PRESETS, SearchConfig
    from datanas_core.search.searcher import Searcher

    if not isinstance(model, nn.Module):
        raise ConfigError(f"search needs an nn.Module, got {type(model).__name__}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}")
    if preset not in model_presets():
        raise ConfigError(
            f"preset {preset!r} needs its own spaces and cannot search a model; presets for models: "
            f"{', '.join(model_presets())}"
        )
    fields = _config_fields()
    cfg_over = {k: v for k, v in overrides.items() if k in fields}
    rt_over = {k: v for k, v in overrides.items() if k in RUNTIME_OPTIONS}
    unknown = sorted(set(overrides) - set(cfg_over) - set(rt_over))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown}; valid: SearchConfig fields ({', '.join(sorted(fields))}) and, with "
            f"run_dir, runtime options ({', '.join(sorted(RUNTIME_OPTIONS))})"
        )
    if rt_over and run_dir is None:
        raise ConfigError(f"runtime option(s) {sorted(rt_over)} need run_dir")
    if epochs is not None:
        cfg_over["epochs"] = epochs
    if "rule" not in cfg_over:
        base_rule = PRESETS[preset].get("rule")
        cfg_over["rule"] = "choice"
        cfg_over.setdefault("rule_options", {"multi": "data" if base_rule == "data" else "topk"})
    config = SearchConfig.preset(preset, **cfg_over)

    train_data = _reiterable(train_data, "train_data")
    val_data = _reiterable(val_data, "val_data")
    if val_data is None and config.order != "single_level":
        val_data = train_data
    task = loss if hasattr(loss, "loss") and callable(loss.loss) else LossTask(loss)

    work = copy.deepcopy(model)
    if device is not None:
        work = work.to(device)
    example = _to_device(_first_input(train_data), _device_of(work))
    space = ModelSpace(work, example_input=example)
    supernet = ModelSupernet(work)

    searcher = Searcher(space, task, config, supernet=supernet, device=device)
    if run_dir is None:
        result = searcher.fit(train_data, val_data)
    else:
        from datanas_core.runtime._jsonutil import to_jsonable
        from datanas_core.runtime.runner import run_search

        run_config = to_jsonable(
            {
                "entry": "datanas_core.search",
                "model": space.config()["model"],
                "preset": preset,
                "overrides": {k: v for k, v in cfg_over.items()},
            }
        )
        shape = list(example.shape[1:]) if isinstance(example, Tensor) else None
        result = run_search(
            searcher,
            train_data,
            val_data,
            run_dir=run_dir,
            config=run_config,
            derived_input_shape=shape,
            **rt_over,
        )
    trained = searcher.supernet.model if isinstance(searcher.supernet, ModelSupernet) else work
    genotype = result.genotype.with_meta(choices=choices_of(result.genotype))
    plain = fix(trained, genotype)
    return ModelSearchResult(
        genotype=genotype,
        model=plain,
        choices=choices_of(genotype),
        supernet=searcher.supernet,
        space=space,
        searcher=searcher,
        history=list(result.history),
        run_dir=None if run_dir is None else Path(run_dir),
        stopped_early=bool(getattr(result, "stopped_early", False)),
    )
