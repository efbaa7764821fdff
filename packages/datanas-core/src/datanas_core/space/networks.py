"""Pieces shared by the cell networks: drop-path, parameter and FLOP counting, auxiliary heads, and the
timm-style model API (``forward_features``, ``forward_head``, ``forward_intermediates``, ``feature_info``,
``reset_classifier``) that the vision package wraps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.ops import build_op

__all__ = [
    "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet",
    "CellNetworkMixin",
    "count_macs",
    "count_parameters",
    "drop_path",
    "op_cost",
    "take_indices",
]


def drop_path(x: Tensor, drop_prob: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` and rescale the rest by ``1 / (1 - p)``.

    The Bernoulli mask is drawn on ``x``'s device with ``torch.rand`` (``generator`` must live there too).
    Not in-place, unlike the DARTS original.
    """
    if drop_prob <= 0.0:
        return x
    if drop_prob >= 1.0:
        raise ConfigError(f"drop_path probability must be < 1, got {drop_prob}")
    keep = 1.0 - drop_prob
    u = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype, generator=generator)
    return x * (u < keep).to(x.dtype) / keep


def count_parameters(model: nn.Module, *, exclude_auxiliary: bool = True) -> int:
    """Number of parameters; by default without the auxiliary head (what DARTS reports as "param size")."""
    return sum(
        p.numel() for name, p in model.named_parameters() if not (exclude_auxiliary and "auxiliary" in name)
    )


def count_macs(module: nn.Module, *inputs: Any) -> int:
    """Multiply-adds of the ``Conv2d`` and ``Linear`` layers in one forward pass of ``module`` on ``inputs``.

    Runs under ``torch.no_grad`` in eval mode (the previous mode is restored).
    """
    total = [0]

    def conv_hook(m: nn.Conv2d, _inp: Any, out: Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: Any, out: Tensor) -> None:
        total[0] += out.numel() * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return total[0]


def op_cost(
    name: str,
    C_in: int,
    C_out: int,
    stride: int,
    size: int,
    metric: str,
    cache: dict[tuple[Any, ...], float] | None = None,
) -> float:
    """Cost of op ``name`` as built in an evaluation network (affine BN): parameters, or multiply-adds on a
    ``[1, C_in, size, size]`` input. ``none`` costs 0.

    Raises:
        ConfigError: ``metric`` is not ``"params"`` or ``"flops"``.
    """
    if metric not in ("params", "flops"):
        raise ConfigError(f"unknown cost metric {metric!r}; valid metrics: flops, params")
    key = (name, C_in, C_out, stride, size, metric)
    if cache is not None and key in cache:
        return cache[key]
    if name == "none":
        value = 0.0
    else:
        op = build_op(name, C_in, C_out, stride, affine=True)
        if metric == "params":
            value = float(sum(p.numel() for p in op.parameters()))
        else:
            value = float(count_macs(op, torch.zeros(1, C_in, size, size)))
    if cache is not None:
        cache[key] = value
    return value


def take_indices(num_features: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's convention: ``None`` = all, ``n`` = the last ``n``, a sequence = those (negative from the end).

    Raises:
        ConfigError: an index is out of range.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ConfigError(f"last-n indices ({indices}) out of range 1..{num_features}")
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            idx = num_features + i if i < 0 else i
            if not 0 <= idx < num_features:
                raise ConfigError(f"feature index {i} out of range for {num_features} features")
            take.append(idx)
        if not take:
            raise ConfigError("indices must not be empty")
    return take, max(take)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' auxiliary classifier for 8x8 feature maps (after the second reduction at 32x32 input)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input is also the next cells' input
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS' auxiliary classifier for 14x14 feature maps (no BN after the 768-channel conv, as in DARTS)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class CellNetworkMixin:
    """timm-style classifier API for networks that produce a sequence of feature maps.

    Subclasses set ``num_features``, ``num_classes``, ``feature_info`` (one dict per feature map:
    ``num_chs``, ``reduction``, ``module``), ``global_pool`` and ``classifier``, and implement
    ``_stages(x, *args)`` yielding the feature maps in ``feature_info`` order; ``_final(last)`` maps the last
    one to the features the head consumes (identity by default).
    """

    num_features: int
    num_classes: int
    feature_info: list[dict[str, Any]]
    global_pool: nn.Module
    classifier: nn.Module

    def _stages(self, x: Tensor, *args: Any) -> Iterator[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _final(self, x: Tensor) -> Tensor:
        return x

    def _features(self, x: Tensor, *args: Any) -> Tensor:
        last = x
        for feat in self._stages(x, *args):
            last = feat
        return self._final(last)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pooling, then the classifier (skipped when ``pre_logits``)."""
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (``num_classes=0`` gives an identity, i.e. pooled features)."""
        if global_pool not in (None, "avg"):
            raise ConfigError(f"global_pool {global_pool!r} is not supported; valid: 'avg'")
        self.num_classes = num_classes
        device = next(iter(self.parameters())).device  # type: ignore[attr-defined]
        self.classifier = (  # type: ignore[misc]
            nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()
        )

    def _intermediates(
        self,
        x: Tensor,
        args: tuple[Any, ...],
        indices: int | Sequence[int] | None,
        stop_early: bool,
        output_fmt: str,
        intermediates_only: bool,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt {output_fmt!r} is not supported; valid: 'NCHW'")
        take, max_index = take_indices(len(self.feature_info), indices)
        wanted = set(take)
        out: list[Tensor] = []
        last = x
        complete = True
        for i, feat in enumerate(self._stages(x, *args)):
            last = feat
            if i in wanted:
                out.append(feat)
            if stop_early and i >= max_index and i < len(self.feature_info) - 1:
                complete = False
                break
        if intermediates_only:
            return out
        # the final norm (NB201's BN-ReLU) belongs to the last stage only
        return (self._final(last) if complete else last), out
