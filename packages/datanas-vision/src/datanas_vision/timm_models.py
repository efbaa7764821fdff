"""timm entrypoints for derived datanas networks. Importing this module registers them with timm.

* ``datanas_cifar``: any DARTS-space genotype,
  ``timm.create_model("datanas_cifar", genotype=..., C=..., layers=...)`` where ``genotype`` is a
  :class:`~datanas_core.genotype.Genotype`, its JSON document, a bundled name, a JSON path or a run directory.
* ``datanas_nb201``: any NAS-Bench-201 genotype (also its benchmark string).
* One entrypoint per genotype bundled with datanas-core (``datanas_darts_v2``, ``datanas_data_m4``, ...).

Every entrypoint builds through ``timm.models.build_model_with_cfg`` with
``feature_cfg=dict(feature_cls="getter")``: DARTS cells take the two previous cell outputs, so timm's default
``FeatureListNet`` (which replays child modules one input at a time) cannot work; the getter wrapper calls
``forward_intermediates`` instead. There are no pretrained weights; ``pretrained=False`` (and ``True``, which
only logs that none exist) works offline.

Reconstruction arguments are JSON-serialisable (the genotype is recorded as its JSON document), so
``timm.models.save_for_hf(model, dir)`` followed by ``timm.create_model("local-dir:" + dir)`` rebuilds the
model.

Example:
    >>> import timm, datanas_vision.timm_models  # noqa: F401
    >>> model = timm.create_model("datanas_darts_v2", C=16, layers=8, num_classes=10)
    >>> feats = timm.create_model("datanas_darts_v2", C=16, layers=8, features_only=True)
"""

from __future__ import annotations

import logging
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from datanas_core.errors import ConfigError
from datanas_vision.models import DartsClassifier, NB201Classifier, resolve_genotype, stage_end_indices

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "ENTRYPOINTS", "default_cfgs"]

logger = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: timm entrypoint name -> bundled genotype name (``None``: the genotype is a required argument).
ENTRYPOINTS: dict[str, str | None] = {
    "datanas_cifar": None,
    "datanas_nb201": None,
    "datanas_darts_v1": "DARTS_V1",
    "datanas_darts_v2": "DARTS_V2",
    "datanas_pc_darts": "PC_DARTS",
    "datanas_gdas": "GDAS",
    "datanas_snas": "SNAS",
    "datanas_drnas": "DrNAS",
    "datanas_e2nas": "E2NAS",
    "datanas_e2nas_c": "E2NAS_C",
    "datanas_data_m4": "DATA_M4",
    "datanas_data_m7": "DATA_M7",
    "datanas_nb201_best": "NB201_BEST",
}


def _cfg(description: str = "", **kwargs: Any) -> dict[str, Any]:
    cfg = {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "stem.0",
        "classifier": "classifier",
        "license": "apache-2.0",
        "description": description,
    }
    cfg.update(kwargs)
    return cfg


def _paper(meta_name: str) -> dict[str, Any]:
    """pretrained_cfg fields taken from the bundled genotype's metadata."""
    meta = resolve_genotype(meta_name).meta
    out: dict[str, Any] = {"description": f"{meta.get('method', meta_name)} cell ({meta_name}), no weights"}
    if meta.get("paper"):
        out["paper_name"] = str(meta["paper"])
    if meta.get("source"):
        out["notes"] = (f"genotype source: {meta['source']}",)
    return out


default_cfgs = generate_default_cfgs(
    {
        "datanas_cifar.untrained": _cfg(
            "DARTS-space cell network for any genotype (genotype=...), no weights"
        ),
        "datanas_nb201.untrained": _cfg("NAS-Bench-201 network for any cell (genotype=...), no weights"),
        **{
            f"{name}.untrained": _cfg(**_paper(bundled))
            for name, bundled in ENTRYPOINTS.items()
            if bundled is not None
        },
    }
)


def _create_darts(variant: str, pretrained: bool, **kwargs: Any) -> DartsClassifier:
    layers = kwargs.get("layers", 20)
    stem = kwargs.get("stem", "cifar")
    if not isinstance(layers, int) or layers < 1:
        raise ConfigError(f"layers must be a positive integer, got {layers!r}")
    feature_cfg = {"feature_cls": "getter", "out_indices": _default_out_indices_darts(layers, stem)}
    return build_model_with_cfg(DartsClassifier, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def _create_nb201(variant: str, pretrained: bool, **kwargs: Any) -> NB201Classifier:
    N = kwargs.get("N", 5)
    if not isinstance(N, int) or N < 1:
        raise ConfigError(f"N must be a positive integer, got {N!r}")
    # feature maps: stem, N cells, block, N cells, block, N cells -> the last cell of every stage
    feature_cfg = {"feature_cls": "getter", "out_indices": (N, 2 * N + 1, 3 * N + 2)}
    return build_model_with_cfg(NB201Classifier, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def _default_out_indices_darts(layers: int, stem: str) -> tuple[int, ...]:
    """Last feature map of every reduction level, computed from the network layout."""
    if stem == "imagenet":
        reds, red = [4, 8], 8
    else:
        reds, red = [1], 1
    for i in range(layers):
        if i in (layers // 3, 2 * layers // 3):
            red *= 2
        reds.append(red)
    return stage_end_indices([{"reduction": r} for r in reds])


def _named(variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if "genotype" in kwargs:
        raise ConfigError(
            f"{variant} has a fixed genotype ({ENTRYPOINTS[variant]}); use 'datanas_cifar' or "
            "'datanas_nb201' with genotype=... for another cell"
        )
    return {"genotype": ENTRYPOINTS[variant], **kwargs}


def _require_genotype(variant: str, kwargs: dict[str, Any]) -> None:
    if "genotype" not in kwargs:
        bundled = ", ".join(n for n, b in ENTRYPOINTS.items() if b is not None)
        raise ConfigError(
            f"{variant} needs genotype=... (a Genotype, its JSON document or path, a run directory or a "
            f"bundled name); or use a named entrypoint: {bundled}"
        )


@register_model
def datanas_cifar(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """DARTS-space network of any genotype (``genotype=`` required); CIFAR stem unless ``stem='imagenet'``."""
    _require_genotype("datanas_cifar", kwargs)
    return _create_darts("datanas_cifar", pretrained, **kwargs)


@register_model
def datanas_nb201(pretrained: bool = False, **kwargs: Any) -> NB201Classifier:
    """NAS-Bench-201 network of any cell (``genotype=`` required; the benchmark string works too)."""
    _require_genotype("datanas_nb201", kwargs)
    return _create_nb201("datanas_nb201", pretrained, **kwargs)


@register_model
def datanas_darts_v1(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """DARTS (first order) cell, Liu et al. ICLR 2019."""
    return _create_darts("datanas_darts_v1", pretrained, **_named("datanas_darts_v1", kwargs))


@register_model
def datanas_darts_v2(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """DARTS (second order) cell, Liu et al. ICLR 2019."""
    return _create_darts("datanas_darts_v2", pretrained, **_named("datanas_darts_v2", kwargs))


@register_model
def datanas_pc_darts(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """PC-DARTS cell, Xu et al. ICLR 2020."""
    return _create_darts("datanas_pc_darts", pretrained, **_named("datanas_pc_darts", kwargs))


@register_model
def datanas_gdas(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """GDAS cell, Dong & Yang CVPR 2019."""
    return _create_darts("datanas_gdas", pretrained, **_named("datanas_gdas", kwargs))


@register_model
def datanas_snas(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """SNAS (mild constraint) cell, Xie et al. ICLR 2019."""
    return _create_darts("datanas_snas", pretrained, **_named("datanas_snas", kwargs))


@register_model
def datanas_drnas(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """DrNAS cell, Chen et al. ICLR 2021 (BatchNorm after pooling ops, as in DrNAS' evaluation code)."""
    kwargs.setdefault("pool_bn", True)
    return _create_darts("datanas_drnas", pretrained, **_named("datanas_drnas", kwargs))


@register_model
def datanas_e2nas(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """E2NAS cell, Zhang et al. NeurIPS 2020."""
    return _create_darts("datanas_e2nas", pretrained, **_named("datanas_e2nas", kwargs))


@register_model
def datanas_e2nas_c(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """E2NAS cell (the larger variant), Zhang et al. NeurIPS 2020."""
    return _create_darts("datanas_e2nas_c", pretrained, **_named("datanas_e2nas_c", kwargs))


@register_model
def datanas_data_m4(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """DATA cell (EGS, M=4; variable in-degree, space ``darts_ext``), Chang et al. NeurIPS 2019."""
    return _create_darts("datanas_data_m4", pretrained, **_named("datanas_data_m4", kwargs))


@register_model
def datanas_data_m7(pretrained: bool = False, **kwargs: Any) -> DartsClassifier:
    """DATA cell (EGS, M=7; variable in-degree, space ``darts_ext``), Chang et al. NeurIPS 2019."""
    return _create_darts("datanas_data_m7", pretrained, **_named("datanas_data_m7", kwargs))


@register_model
def datanas_nb201_best(pretrained: bool = False, **kwargs: Any) -> NB201Classifier:
    """The best NAS-Bench-201 cell (the benchmark's optimum on CIFAR-10)."""
    return _create_nb201("datanas_nb201_best", pretrained, **_named("datanas_nb201_best", kwargs))
