"""The language-modelling :class:`~datanas_core.search.SearchTask`: truncated BPTT with carried hidden states.

Batches are :class:`~datanas_lm.data.LMBatch` windows. The task keeps one hidden state per token stream
(``"train"``, ``"val"``, ...): each window starts from the (detached) final state of the previous window of
its stream, so gradients never flow across windows while the recurrence sees the whole text. A window that
is evaluated again (the unrolled second-order step evaluates the same batch several times, the
consistency monitor evaluates after the loss) starts from the same state as the first time. A window
flagged ``reset`` (the first of a pass) or with another batch size starts from zeros.

Training-stream losses add AWD-LSTM's AR/TAR penalties and, as the reference code scales the learning
rate by ``seq_len / bptt``, are scaled by the same factor (``scale_by_length``); the reported ``ce``/``ppl``
logs are always the plain cross-entropy and its perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.sample import ArchSample
from datanas_lm.data.text import LMBatch
from datanas_lm.model import cross_entropy, detach_hidden
from datanas_lm.regularization import activation_regularization, temporal_activation_regularization

__all__ = ["LMSearchTask", "PerplexityFromLoss"]


class LMSearchTask:
    """Loss and metrics of a recurrent language model for the core search loop.

    Args:
        alpha: activation regularisation weight (DARTS: 0).
        beta: temporal activation regularisation weight (DARTS: 1e-3).
        regularized_streams: streams whose loss gets AR/TAR and the length scaling (the weight step's).
        scale_by_length: multiply training-stream losses by ``seq_len / bptt``.

    Example:
        >>> task = LMSearchTask()
        >>> # loss, logs = task.loss(supernet, batch, arch)
    """

    def __init__(
        self,
        *,
        alpha: float = 0.0,
        beta: float = 1e-3,
        regularized_streams: tuple[str, ...] = ("train",),
        scale_by_length: bool = True,
    ) -> None:
        if alpha < 0 or beta < 0:
            raise ConfigError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.regularized_streams = tuple(regularized_streams)
        self.scale_by_length = scale_by_length
        # stream -> (window key, state the window started from, state it ended with)
        self._states: dict[str, tuple[tuple[int, int, int], Any, Any]] = {}

    def reset(self, stream: str | None = None) -> None:
        """Forget the carried hidden state of one stream (all streams with ``None``)."""
        if stream is None:
            self._states.clear()
        else:
            self._states.pop(stream, None)

    @staticmethod
    def _key(batch: LMBatch) -> tuple[int, int, int]:
        return (int(batch.position), int(batch.inputs.size(0)), int(batch.inputs.size(1)))

    @staticmethod
    def _batch_of(hidden: Any) -> int:
        h = hidden
        while not isinstance(h, Tensor):
            h = h[0]
        return int(h.size(-2))

    def initial_hidden(self, model: nn.Module, batch: LMBatch) -> Any:
        """The (detached) hidden state this window starts from."""
        bsz = int(batch.inputs.size(1))
        key = self._key(batch)
        prev = self._states.get(batch.stream)
        if prev is not None and not batch.reset:
            pkey, h_in, h_out = prev
            chosen = h_in if pkey == key else h_out
            if self._batch_of(chosen) == bsz:
                return chosen
        return model.init_hidden(bsz)

    def _forward(
        self, model: nn.Module, batch: LMBatch, arch: ArchSample | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if not isinstance(batch, LMBatch):
            raise ConfigError(
                f"LMSearchTask expects LMBatch windows (from BPTTLoader), got {type(batch).__name__}"
            )
        dev = model.encoder.weight.device
        if batch.inputs.device != dev:
            batch = batch.to(dev)
        h_in = self.initial_hidden(model, batch)
        logits, h_out, raw, dropped = model(batch.inputs, h_in, arch, return_states=True)
        self._states[batch.stream] = (self._key(batch), detach_hidden(h_in), detach_hidden(h_out))
        ce = cross_entropy(logits, batch.targets)
        return ce, raw, dropped, batch.targets

    def loss(self, model: nn.Module, batch: LMBatch, arch: ArchSample) -> tuple[Tensor, Mapping[str, float]]:
        """Cross-entropy of one window (plus AR/TAR and length scaling on regularised streams in training).

        The logs name the cross-entropy ``loss`` (so the searcher's ``train_loss``/``val_loss`` are
        cross-entropies, like ``train_ppl``/``val_ppl``) and, on regularised streams, the optimised value
        ``objective`` (``train_objective``).
        """
        ce, raw, dropped, _ = self._forward(model, batch, arch)
        total = ce
        if model.training and batch.stream in self.regularized_streams:
            total = total + activation_regularization(dropped, self.alpha)
            total = total + temporal_activation_regularization(raw, self.beta)
            if self.scale_by_length:
                total = total * (batch.inputs.size(0) / batch.bptt)
        c = float(ce.detach())
        logs = {"loss": c, "ppl": math.exp(min(c, 50.0))}  # the searcher's <split>_loss is the cross-entropy
        if total is not ce:
            logs["objective"] = float(total.detach())  # what the weights are optimised on (AR/TAR, scaling)
        return total, logs

    @torch.no_grad()
    def metrics(self, model: nn.Module, batch: LMBatch, arch: ArchSample) -> dict[str, float]:
        """``loss``: mean token cross-entropy of the window (token-weighted mean, then exp: perplexity)."""
        ce, _, _, _ = self._forward(model, batch, arch)
        return {"loss": float(ce)}

    @staticmethod
    def batch_size(batch: LMBatch) -> int:
        """Target tokens of the window (the weight of its metrics in averages)."""
        return int(batch.targets.numel())


class PerplexityFromLoss:
    """Searcher callback: every ``<name>_ppl`` of an epoch record becomes ``exp(<name>_loss)``.

    The searcher averages step logs, and the mean of per-window perplexities is not the perplexity of the
    mean cross-entropy; this makes each epoch's ``train_ppl``/``val_ppl`` the exponential of the
    ``train_loss``/``val_loss`` next to it.
    """

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        for key in [k for k in record if k.endswith("_ppl")]:
            loss = record.get(key[: -len("_ppl")] + "_loss")
            if isinstance(loss, (int, float)) and not isinstance(loss, bool):
                record[key] = math.exp(min(float(loss), 50.0))
