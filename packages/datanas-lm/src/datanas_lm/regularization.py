"""AWD-LSTM-style regularisers (Merity et al., 2018) used by the recurrent language models.

- embedding dropout: drop whole word vectors of the embedding matrix (``dropoute``);
- locked (variational) dropout: one mask per sequence, shared over time steps (``dropouti`` on the
  embeddings, ``dropout`` on the cell outputs, ``dropoutx``/``dropouth`` on the cell's inputs and states);
- weight drop (DropConnect) on recurrent matrices (``wdrop``), one mask per forward pass;
- activation regularisation (AR, ``alpha``) and temporal activation regularisation (TAR, ``beta``).

Every function takes an optional ``torch.Generator`` for the masks (the global generator otherwise, as
``torch.nn.Dropout`` does) and follows the input tensor's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError

__all__ = [
    "activation_regularization",
    "bernoulli_mask",
    "check_dropout",
    "check_positive_ints",
    "embedded_dropout",
    "locked_dropout",
    "temporal_activation_regularization",
    "weight_drop",
]


def check_dropout(name: str, p: float) -> float:
    """Validate a dropout probability (``0 <= p < 1``)."""
    if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
        raise ConfigError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def check_positive_ints(**values: int) -> None:
    """Validate sizes: every keyword value must be a positive ``int`` (the first offender is reported)."""
    for name, v in values.items():
        if not (isinstance(v, int) and v > 0):
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def bernoulli_mask(
    shape: tuple[int, ...], p: float, like: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """A scaled keep-mask (``Bernoulli(1 - p) / (1 - p)``) of ``shape`` with ``like``'s dtype and device."""
    keep = 1.0 - p
    dev = generator.device if generator is not None else like.device
    mask = torch.empty(shape, dtype=like.dtype, device=dev).bernoulli_(keep, generator=generator)
    return mask.to(like.device).div_(keep)


def embedded_dropout(
    embed: nn.Embedding,
    tokens: Tensor,
    p: float,
    training: bool,
    generator: torch.Generator | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Embedding lookup with whole-word dropout (a dropped word's vector is zero everywhere it occurs).

    Args:
        embed: the embedding module (its ``padding_idx``/``max_norm`` are honoured).
        tokens: ``[T, B]`` token ids.
        p: probability of dropping a word type.
        training: apply the dropout only when True.
        weight: the embedding matrix to use instead of ``embed.weight`` (functional calls).
    """
    w = embed.weight if weight is None else weight
    if training and p > 0:
        w = w * bernoulli_mask((w.size(0), 1), p, w, generator)
    return F.embedding(
        tokens, w, embed.padding_idx, embed.max_norm, embed.norm_type, embed.scale_grad_by_freq, embed.sparse
    )


def locked_dropout(x: Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> Tensor:
    """Variational dropout on a sequence ``x: [T, B, H]``: one mask ``[1, B, H]`` for all time steps."""
    if not training or p == 0:
        return x
    return x * bernoulli_mask((1, x.size(1), x.size(2)), p, x, generator)


def weight_drop(w: Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> Tensor:
    """DropConnect on a weight matrix (one mask per call, i.e. per forward pass over a sequence)."""
    if not training or p == 0:
        return w
    return w * bernoulli_mask(tuple(w.shape), p, w, generator)


def activation_regularization(dropped_outputs: Tensor, alpha: float) -> Tensor:
    """AR: ``alpha * mean(h_t^2)`` on the (dropped-out) last-layer outputs ``[T, B, H]``."""
    if alpha == 0:
        return dropped_outputs.new_zeros(())
    return alpha * dropped_outputs.pow(2).mean()


def temporal_activation_regularization(raw_outputs: Tensor, beta: float) -> Tensor:
    """TAR: ``beta * mean((h_{t+1} - h_t)^2)`` on the raw last-layer outputs ``[T, B, H]``."""
    if beta == 0 or raw_outputs.size(0) < 2:
        return raw_outputs.new_zeros(())
    return beta * (raw_outputs[1:] - raw_outputs[:-1]).pow(2).mean()
