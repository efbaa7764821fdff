"""Net2Net widening of candidate ops and the matching optimiser-state surgery (DrNAS progressive learning).

Widening an op from ``c_old`` to ``c_new`` channels uses a *channel mapping* ``g`` (``c_new`` entries, each an
old channel): new channel ``j`` is a copy of old channel ``g[j]``. :func:`channel_mapping` keeps the old
channels in place (``g[j] = j`` for ``j < c_old``) and draws the others uniformly from a seeded generator.
Every layer of the op is rewritten so that, if the input is widened with the same mapping, the output is the
old output widened with the same mapping (Net2WiderNet, Chen et al. 2016):

* convolution (non-grouped): ``W'[o, j] = W[g[o], g[j]] / n[g[j]]`` with ``n[i] = #{j : g[j] = i}`` the
  replication count of old channel ``i`` (each replica of an input channel carries a share of its weight);
* depthwise convolution: ``W'[o] = W[g[o]]`` and ``groups = c_new``;
* BatchNorm: running statistics, and affine weight/bias if present, copied with ``g``;
* :class:`~datanas_core.drnas.partial.WidenableFactorizedReduce`: rows appended to whichever of its two
  convolutions produced the copied channel, plus a new output order.

All maps are linear in the parameter, so the same :attr:`ParamChange.transform` applied to an SGD momentum
buffer gives the buffer the widened parameter would have had (:func:`carry_optimizer_state`).

Unlike DrNAS' ``net2wider.py`` (which copies without rescaling and draws separate random indices per layer),
this preserves the op's function exactly (tested).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datanas_core.drnas.partial import WidenableFactorizedReduce
from datanas_core.errors import ConfigError
from datanas_core.ops import DilConv, FactorizedReduce

__all__ = ["ParamChange", "carry_optimizer_state", "channel_mapping", "widen_module"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ParamChange:
    """A parameter replaced by widening.

    Attributes:
        old: the parameter before widening (no longer in the module).
        new: its replacement.
        transform: maps a tensor shaped like ``old`` to one shaped like ``new`` (``new == transform(old)``);
            linear, so it also maps optimiser state such as SGD momentum buffers.
    """

    old: nn.Parameter
    new: nn.Parameter
    transform: Callable[[Tensor], Tensor]


def channel_mapping(c_old: int, c_new: int, generator: torch.Generator | None = None) -> Tensor:
    """``[c_new]`` long tensor: ``0..c_old-1``, then ``c_new - c_old`` channels drawn uniformly from them.

    Args:
        generator: CPU generator of the random picks (``None``: torch's global RNG).

    Raises:
        ConfigError: ``c_new < c_old`` or ``c_old < 1``.
    """
    if c_old < 1 or c_new < c_old:
        raise ConfigError(f"channel mapping needs 1 <= c_old <= c_new, got c_old={c_old}, c_new={c_new}")
    extra = torch.randint(0, c_old, (c_new - c_old,), generator=generator, dtype=torch.long)
    return torch.cat([torch.arange(c_old, dtype=torch.long), extra])


def _check_mapping(mapping: Tensor, c_old: int) -> tuple[Tensor, Tensor]:
    g = torch.as_tensor(mapping).to(device="cpu", dtype=torch.long).flatten()
    if g.numel() < c_old or (g.numel() and (int(g.min()) < 0 or int(g.max()) >= c_old)):
        raise ConfigError(f"channel mapping must have >= {c_old} entries in [0, {c_old}), got {g.tolist()}")
    counts = torch.bincount(g, minlength=c_old)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ConfigError(f"channel mapping drops old channel(s) {missing}; every channel must be kept")
    return g, counts


def _replace(module: nn.Module, attr: str, fn: Callable[[Tensor], Tensor]) -> ParamChange:
    old = getattr(module, attr)
    with torch.no_grad():
        value = fn(old.detach())
    new = nn.Parameter(value, requires_grad=old.requires_grad)
    setattr(module, attr, new)
    return ParamChange(old, new, fn)


def _rows(index: Tensor) -> Callable[[Tensor], Tensor]:
    def fn(t: Tensor) -> Tensor:
        return t.index_select(0, index.to(t.device))

    return fn


def _rows_cols(rows: Tensor, cols: Tensor, scale: Tensor) -> Callable[[Tensor], Tensor]:
    def fn(t: Tensor) -> Tensor:
        out = t.index_select(0, rows.to(t.device)).index_select(1, cols.to(t.device))
        return out * scale.to(device=t.device, dtype=t.dtype).view(1, -1, *([1] * (t.dim() - 2)))

    return fn


def _widen_bn(bn: nn.BatchNorm2d, g: Tensor, c_old: int, name: str) -> list[ParamChange]:
    if bn.num_features != c_old:
        raise ConfigError(f"cannot widen {name or 'BatchNorm'}: {bn.num_features} features, expected {c_old}")
    changes = []
    if bn.running_mean is not None and bn.running_var is not None:
        bn.running_mean = bn.running_mean.index_select(0, g.to(bn.running_mean.device))
        bn.running_var = bn.running_var.index_select(0, g.to(bn.running_var.device))
    if bn.affine:
        changes.append(_replace(bn, "weight", _rows(g)))
        changes.append(_replace(bn, "bias", _rows(g)))
    bn.num_features = int(g.numel())
    return changes


def _widen_conv(
    conv: nn.Conv2d, g: Tensor, scale: Tensor, c_old: int, depthwise: bool, name: str
) -> list[ParamChange]:
    c_new = int(g.numel())
    what = f"{name or 'conv'} ({conv.in_channels}->{conv.out_channels}, groups {conv.groups})"
    if conv.in_channels != c_old or conv.out_channels != c_old:
        raise ConfigError(f"cannot widen {what}: every layer of a widened op must be {c_old} channels wide")
    changes = []
    if depthwise:
        changes.append(_replace(conv, "weight", _rows(g)))
        conv.groups = c_new
    elif conv.groups == 1:
        changes.append(_replace(conv, "weight", _rows_cols(g, g, scale)))
    else:
        raise ConfigError(f"cannot widen {what}: only plain and depthwise convolutions are supported")
    if conv.bias is not None:
        changes.append(_replace(conv, "bias", _rows(g)))
    conv.in_channels = conv.out_channels = c_new
    return changes


def _widen_fr(fr: WidenableFactorizedReduce, g: Tensor, scale: Tensor, c_old: int) -> list[ParamChange]:
    assert fr.conv_2 is not None
    n1, n2 = fr.conv_1.out_channels, fr.conv_2.out_channels
    if fr.conv_1.in_channels != c_old or n1 + n2 != c_old:
        raise ConfigError(
            f"cannot widen FactorizedReduce {fr.conv_1.in_channels}->{n1 + n2}: expected {c_old}->{c_old}"
        )
    order = fr.out_order.cpu()
    sources = order.index_select(0, g[c_old:])  # concat positions of the copied channels
    rows1 = [int(p) for p in sources if p < n1]
    rows2 = [int(p) - n1 for p in sources if p >= n1]
    idx1 = torch.cat([torch.arange(n1), torch.tensor(rows1, dtype=torch.long)])
    idx2 = torch.cat([torch.arange(n2), torch.tensor(rows2, dtype=torch.long)])
    m1, m2 = int(idx1.numel()), int(idx2.numel())
    new_order = [int(p) if p < n1 else m1 + int(p) - n1 for p in order]
    a = b = 0
    for p in sources:
        if p < n1:
            new_order.append(n1 + a)
            a += 1
        else:
            new_order.append(m1 + n2 + b)
            b += 1
    changes = [
        _replace(fr.conv_1, "weight", _rows_cols(idx1, g, scale)),
        _replace(fr.conv_2, "weight", _rows_cols(idx2, g, scale)),
    ]
    c_new = int(g.numel())
    fr.conv_1.in_channels = fr.conv_2.in_channels = c_new
    fr.conv_1.out_channels, fr.conv_2.out_channels = m1, m2
    fr.set_out_order(new_order)
    changes.extend(_widen_bn(fr.bn, g, c_old, "FactorizedReduce.bn"))
    return changes


def widen_module(module: nn.Module, mapping: Tensor | Sequence[int], c_old: int) -> list[ParamChange]:
    """Widen every layer of an op from ``c_old`` channels to ``len(mapping)``, in place (Net2Net).

    Args:
        module: the op (every convolution and BatchNorm in it must be ``c_old`` channels wide).
        mapping: new channel ``j`` copies old channel ``mapping[j]``; must contain every old channel.
        c_old: current width.

    Returns:
        The replaced parameters with their transforms (empty for parameter-free ops).

    Raises:
        ConfigError: the mapping is invalid, or the op holds layers that cannot be widened (other widths,
            grouped convolutions, a plain FactorizedReduce, unknown layers with parameters or buffers).

    Example:
        >>> from datanas_core.ops import build_op
        >>> op = build_op("sep_conv_3x3", 2, 2, 1, affine=False).eval()
        >>> g = torch.tensor([0, 1, 1])
        >>> x = torch.randn(1, 2, 5, 5)
        >>> before = op(x)[:, g]
        >>> _ = widen_module(op, g, 2)
        >>> bool(torch.allclose(op(x[:, g]), before, atol=1e-6))
        True
    """
    g, counts = _check_mapping(torch.as_tensor(mapping), c_old)
    scale = 1.0 / counts.index_select(0, g).to(torch.float64)
    depthwise = {id(m[1]) for m in module.modules() if isinstance(m, DilConv)}
    handled: set[int] = set()
    changes: list[ParamChange] = []
    for name, m in module.named_modules():
        if id(m) in handled:
            continue
        if isinstance(m, WidenableFactorizedReduce):
            changes.extend(_widen_fr(m, g, scale, c_old))
            handled.update(id(s) for s in m.modules())
        elif isinstance(m, FactorizedReduce):
            raise ConfigError(
                f"cannot widen a plain FactorizedReduce ({name or type(module).__name__}); DrNAS supernets "
                "build WidenableFactorizedReduce (datanas_core.drnas.build_drnas_op)"
            )
        elif isinstance(m, nn.Conv2d):
            dw = id(m) in depthwise or (m.groups > 1 and m.groups == m.in_channels == m.out_channels)
            changes.extend(_widen_conv(m, g, scale, c_old, dw, name))
        elif isinstance(m, nn.BatchNorm2d):
            changes.extend(_widen_bn(m, g, c_old, name))
        elif any(True for _ in m.parameters(recurse=False)) or any(
            b is not None for b in m.buffers(recurse=False)
        ):
            raise ConfigError(
                f"cannot widen layer {name or '<op>'} of type {type(m).__name__}: only Conv2d, BatchNorm2d "
                "and FactorizedReduce layers (and parameter-free ones) are supported"
            )
    return changes


def carry_optimizer_state(
    changes: Sequence[ParamChange],
) -> Callable[[torch.optim.Optimizer, torch.optim.Optimizer], None]:
    """A ``carry(old_optimizer, new_optimizer)`` for :meth:`~datanas_core.search.Searcher.rebuild_optimizers`.

    Unchanged parameters keep their state (cloned); replaced ones get ``transform(state)`` for every state
    tensor shaped like the old parameter (SGD's ``momentum_buffer``) and the other entries as they were
    (step counts). Parameters removed by pruning lose their state.
    """
    by_new = {c.new: c for c in changes}

    def carry(old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> None:
        moved = 0
        for group in new.param_groups:
            for p in group["params"]:
                change = by_new.get(p)
                src = change.old if change is not None else p
                state = old.state.get(src)
                if not state:
                    continue
                out = {}
                for key, v in state.items():
                    if isinstance(v, Tensor):
                        if change is not None and v.shape == change.old.shape:
                            v = change.transform(v)
                        else:
                            v = v.clone()
                    out[key] = v
                new.state[p] = out
                moved += 1
        logger.debug("carried optimiser state of %d parameter(s) (%d widened)", moved, len(by_new))

    return carry
