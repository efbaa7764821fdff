"""datanas-lm: differentiable search of DARTS recurrent cells for word-level language modelling.

- :class:`RNNSpace` (``"lm.darts_rnn"``): the DARTS recurrent cell space (8 nodes, activations
  ``none/tanh/relu/sigmoid/identity``, 36 edges); its supernet works with every core estimator and its
  derived models take DARTS genotypes (one predecessor per node) and DATA's multi-input genotypes.
- :class:`LMSearchTask`: truncated BPTT with carried, detached hidden states for the core ``Searcher``.
- Data: PTB with verified checksums (optional download) and any train/valid/test text corpus;
  :class:`Vocabulary` (accepts torchtext vocabularies by duck typing), :func:`batchify`, :class:`BPTTLoader`.
- :class:`LMTrainer`: re-training with SGD and the NT-ASGD switch; :class:`LSTMLanguageModel` baseline.
- CLIs: ``python -m datanas_lm.search --data ptb`` and ``python -m datanas_lm.train --genotype ...``.

Example:
    >>> import torch
    >>> from datanas_lm import RNNSpace, load_genotype
    >>> model = RNNSpace().build_derived(load_genotype("darts_v2"), ntoken=100, ninp=16, nhid=16)
    >>> logits, hidden = model(torch.zeros(5, 2, dtype=torch.long), model.init_hidden(2))
    >>> tuple(logits.shape)
    (5, 2, 100)
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datanas_lm.cells import ACTIVATIONS, RNN_OPS, DerivedRecurrentCell, SearchRecurrentCell
    from datanas_lm.data import (
        DATASETS,
        BPTTLoader,
        Corpus,
        LMBatch,
        Vocabulary,
        batchify,
        load_corpus,
        load_ptb,
        load_text_corpus,
    )
    from datanas_lm.genotypes import BUNDLED_GENOTYPES, load_genotype
    from datanas_lm.model import (
        LSTMLanguageModel,
        RecurrentLanguageModel,
        RNNModel,
        RNNSupernet,
        detach_hidden,
    )
    from datanas_lm.space import RNNSpace
    from datanas_lm.task import LMSearchTask
    from datanas_lm.training import LMTrainer, ParameterAverager, TrainConfig, evaluate_lm

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "ACTIVATIONS": ("datanas_lm.cells", "ACTIVATIONS"),
    "RNN_OPS": ("datanas_lm.cells", "RNN_OPS"),
    "DerivedRecurrentCell": ("datanas_lm.cells", "DerivedRecurrentCell"),
    "SearchRecurrentCell": ("datanas_lm.cells", "SearchRecurrentCell"),
    "DATASETS": ("datanas_lm.data", "DATASETS"),
    "BPTTLoader": ("datanas_lm.data", "BPTTLoader"),
    "Corpus": ("datanas_lm.data", "Corpus"),
    "LMBatch": ("datanas_lm.data", "LMBatch"),
    "Vocabulary": ("datanas_lm.data", "Vocabulary"),
    "batchify": ("datanas_lm.data", "batchify"),
    "load_corpus": ("datanas_lm.data", "load_corpus"),
    "load_ptb": ("datanas_lm.data", "load_ptb"),
    "load_text_corpus": ("datanas_lm.data", "load_text_corpus"),
    "BUNDLED_GENOTYPES": ("datanas_lm.genotypes", "BUNDLED_GENOTYPES"),
    "load_genotype": ("datanas_lm.genotypes", "load_genotype"),
    "LSTMLanguageModel": ("datanas_lm.model", "LSTMLanguageModel"),
    "RecurrentLanguageModel": ("datanas_lm.model", "RecurrentLanguageModel"),
    "RNNModel": ("datanas_lm.model", "RNNModel"),
    "RNNSupernet": ("datanas_lm.model", "RNNSupernet"),
    "detach_hidden": ("datanas_lm.model", "detach_hidden"),
    "RNNSpace": ("datanas_lm.space", "RNNSpace"),
    "LMSearchTask": ("datanas_lm.task", "LMSearchTask"),
    "LMTrainer": ("datanas_lm.training", "LMTrainer"),
    "ParameterAverager": ("datanas_lm.training", "ParameterAverager"),
    "TrainConfig": ("datanas_lm.training", "TrainConfig"),
    "evaluate_lm": ("datanas_lm.training", "evaluate_lm"),
}

__all__ = [
    "ACTIVATIONS",
    "BUNDLED_GENOTYPES",
    "DATASETS",
    "RNN_OPS",
    "BPTTLoader",
    "Corpus",
    "DerivedRecurrentCell",
    "LMBatch",
    "LMSearchTask",
    "LMTrainer",
    "LSTMLanguageModel",
    "ParameterAverager",
    "RNNModel",
    "RNNSpace",
    "RNNSupernet",
    "RecurrentLanguageModel",
    "SearchRecurrentCell",
    "TrainConfig",
    "Vocabulary",
    "batchify",
    "detach_hidden",
    "evaluate_lm",
    "load_corpus",
    "load_genotype",
    "load_ptb",
    "load_text_corpus",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_lm' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
