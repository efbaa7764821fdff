"""Word-level recurrent language models: the search supernet, derived DARTS-cell models and an LSTM baseline.

All three follow the recurrent host contract: ``forward(tokens, hidden[, arch]) -> (logits, hidden)`` with
``tokens: [T, B]`` and ``logits: [T, B, V]``, and ``init_hidden(batch_size)``. The embedding and the decoder
are tied (Press & Wolf 2017), so the embedding size must equal the hidden size. Regularisation follows
AWD-LSTM (embedding dropout ``dropoute``, input dropout ``dropouti``, output dropout ``dropout``, in-cell
``dropoutx``/``dropouth`` and ``wdrop``); ``forward(..., return_states=True)`` also returns the raw and
dropped-out cell outputs for AR/TAR.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype
from datanas_core.sample import ArchSample
from datanas_core.space.base import CellSpec
from datanas_lm.cells import DerivedRecurrentCell, SearchRecurrentCell
from datanas_lm.regularization import (
    check_dropout,
    check_positive_ints,
    embedded_dropout,
    locked_dropout,
    weight_drop,
)

__all__ = ["LSTMLanguageModel", "RNNModel", "RNNSupernet", "RecurrentLanguageModel", "detach_hidden"]

Hidden = Any  # Tensor [1, B, H] for the DARTS cells, (h, c) for the LSTM


def detach_hidden(hidden: Hidden) -> Hidden:
    """Detach a hidden state (a tensor or a nested tuple/list of tensors) from its graph (truncated BPTT)."""
    if isinstance(hidden, Tensor):
        return hidden.detach()
    return type(hidden)(detach_hidden(h) for h in hidden)


class RecurrentLanguageModel(nn.Module):
    """Embedding -> recurrent core -> tied decoder, with AWD-LSTM dropouts (base class).

    Args:
        ntoken: vocabulary size.
        ninp: embedding size.
        nhid: hidden size (equal to ``ninp`` when ``tie_weights``).
        dropout: locked dropout on the cell outputs.
        dropouti: locked dropout on the embeddings.
        dropoute: embedding (word-type) dropout.
        tie_weights: share the embedding matrix with the decoder.
    """

    def __init__(
        self,
        ntoken: int,
        ninp: int,
        nhid: int,
        *,
        dropout: float = 0.0,
        dropouti: float = 0.0,
        dropoute: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        check_positive_ints(ntoken=ntoken, ninp=ninp, nhid=nhid)
        if tie_weights and ninp != nhid:
            raise ConfigError(
                f"tied embedding/decoder weights need ninp == nhid, got ninp={ninp}, nhid={nhid} "
                "(pass tie_weights=False or equal sizes)"
            )
        self.ntoken = ntoken
        self.ninp = ninp
        self.nhid = nhid
        self.dropout = check_dropout("dropout", dropout)
        self.dropouti = check_dropout("dropouti", dropouti)
        self.dropoute = check_dropout("dropoute", dropoute)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.tie_weights = tie_weights
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    @property
    def _device(self) -> torch.device:
        return self.encoder.weight.device

    def init_hidden(self, batch_size: int) -> Hidden:
        """Zero hidden state ``[1, B, nhid]`` on the model's device."""
        return torch.zeros(1, batch_size, self.nhid, device=self._device, dtype=self.encoder.weight.dtype)

    def _embed(self, tokens: Tensor, generator: torch.Generator | None) -> Tensor:
        if tokens.dim() != 2:
            raise ConfigError(f"tokens must be [T, B] token ids, got shape {tuple(tokens.shape)}")
        emb = embedded_dropout(self.encoder, tokens, self.dropoute, self.training, generator)
        return locked_dropout(emb, self.dropouti, self.training, generator)

    def _core(
        self, emb: Tensor, hidden: Hidden, arch: ArchSample | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Hidden]:
        raise NotImplementedError

    def forward(
        self,
        tokens: Tensor,
        hidden: Hidden,
        arch: ArchSample | None = None,
        *,
        return_states: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, ...]:
        """Logits of the next token at every position.

        Args:
            tokens: ``[T, B]`` token ids.
            hidden: the state from :meth:`init_hidden` or from the previous window.
            arch: architecture sample (required by the supernet, ignored by fixed models).
            return_states: also return ``raw_outputs`` and ``dropped_outputs`` (``[T, B, nhid]``) for AR/TAR.
            generator: for every dropout mask of this pass.

        Returns:
            ``(logits [T, B, V], hidden)`` or ``(logits, hidden, raw_outputs, dropped_outputs)``.
        """
        emb = self._embed(tokens, generator)
        raw, new_hidden = self._core(emb, hidden, arch, generator)
        out = locked_dropout(raw, self.dropout, self.training, generator)
        logits = self.decoder(out)
        if return_states:
            return logits, new_hidden, raw, out
        return logits, new_hidden


class RNNSupernet(RecurrentLanguageModel):
    """The DARTS recurrent search supernet: ``forward(tokens, hidden, arch)``.

    ``arch["recurrent"].weights`` is ``[36, 5]`` (edges x activations, rows/columns of the space's CellSpec).

    Example:
        >>> from datanas_lm.space import RNNSpace
        >>> net = RNNSpace().build_supernet(ntoken=50, ninp=8, nhid=8)
        >>> h = net.init_hidden(2)
    """

    def __init__(
        self,
        spec: CellSpec,
        ntoken: int,
        ninp: int,
        nhid: int,
        *,
        dropout: float = 0.0,
        dropouth: float = 0.0,
        dropoutx: float = 0.0,
        dropouti: float = 0.0,
        dropoute: float = 0.0,
        wdrop: float = 0.0,
        batchnorm: bool = True,
        tie_weights: bool = True,
    ) -> None:
        super().__init__(
            ntoken, ninp, nhid, dropout=dropout, dropouti=dropouti, dropoute=dropoute, tie_weights=tie_weights
        )
        self.cell_type = spec.cell_type
        self.cell = SearchRecurrentCell(
            ninp, nhid, spec, dropouth=dropouth, dropoutx=dropoutx, wdrop=wdrop, batchnorm=batchnorm
        )

    def _core(
        self, emb: Tensor, hidden: Hidden, arch: ArchSample | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Hidden]:
        if arch is None:
            raise ConfigError(
                "the search supernet needs an architecture sample: forward(tokens, hidden, arch)"
            )
        if self.cell_type not in arch:
            raise ConfigError(f"architecture sample has cell types {list(arch)}, expected {self.cell_type!r}")
        raw, h = self.cell(emb, hidden, arch[self.cell_type], generator=generator)
        return raw, h.unsqueeze(0)


class RNNModel(RecurrentLanguageModel):
    """A language model with the recurrent cell of a derived genotype (DARTS ``rnn/model.py`` equivalent).

    Example:
        >>> from datanas_lm.genotypes import load_genotype
        >>> from datanas_lm.space import RNNSpace
        >>> model = RNNSpace().build_derived(load_genotype("darts_v2"), ntoken=50, ninp=8, nhid=8)
    """

    def __init__(
        self,
        cell: CellGenotype,
        ntoken: int,
        ninp: int,
        nhid: int,
        *,
        num_nodes: int = 8,
        dropout: float = 0.0,
        dropouth: float = 0.0,
        dropoutx: float = 0.0,
        dropouti: float = 0.0,
        dropoute: float = 0.0,
        wdrop: float = 0.0,
        tie_weights: bool = True,
        merge: str = "mean",
    ) -> None:
        super().__init__(
            ntoken, ninp, nhid, dropout=dropout, dropouti=dropouti, dropoute=dropoute, tie_weights=tie_weights
        )
        self.cell = DerivedRecurrentCell(
            ninp,
            nhid,
            cell,
            num_nodes=num_nodes,
            dropouth=dropouth,
            dropoutx=dropoutx,
            wdrop=wdrop,
            merge=merge,
        )

    def _core(
        self, emb: Tensor, hidden: Hidden, arch: ArchSample | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Hidden]:
        raw, h = self.cell(emb, hidden, generator=generator)
        return raw, h.unsqueeze(0)


class LSTMLanguageModel(RecurrentLanguageModel):
    """Baseline: the same embedding/decoder/dropouts around a one-layer ``torch.nn.LSTM``.

    ``wdrop`` is DropConnect on the hidden-to-hidden matrix (AWD-LSTM's weight drop), applied through a
    functional call so that the module's parameters are never replaced. The hidden state is ``(h, c)``.
    """

    def __init__(
        self,
        ntoken: int,
        ninp: int,
        nhid: int,
        *,
        dropout: float = 0.0,
        dropouti: float = 0.0,
        dropoute: float = 0.0,
        wdrop: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__(
            ntoken, ninp, nhid, dropout=dropout, dropouti=dropouti, dropoute=dropoute, tie_weights=tie_weights
        )
        self.lstm = nn.LSTM(ninp, nhid, num_layers=1)
        self.wdrop = check_dropout("wdrop", wdrop)

    def init_hidden(self, batch_size: int) -> Hidden:
        z = super().init_hidden(batch_size)
        return (z, z.clone())

    def _core(
        self, emb: Tensor, hidden: Hidden, arch: ArchSample | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Hidden]:
        h0 = tuple(hidden)
        if self.training and self.wdrop > 0:
            w = weight_drop(self.lstm.weight_hh_l0, self.wdrop, True, generator)
            raw, new = functional_call(self.lstm, {"weight_hh_l0": w}, (emb, h0), strict=False)
        else:
            raw, new = self.lstm(emb, h0)
        return raw, new


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean token-level cross-entropy of ``logits [T, B, V]`` against ``targets [T, B]``."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
