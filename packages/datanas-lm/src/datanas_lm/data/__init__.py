"""Language-model data: PTB and plain-text corpora, vocabulary, batchify and BPTT windows."""

from __future__ import annotations

import os
from typing import Any

from datanas_core.errors import UnknownNameError
from datanas_lm.data.ptb import PTB_FILES, PTB_URL, PTB_VOCAB_SIZE, default_data_dir, ensure_ptb, load_ptb
from datanas_lm.data.text import (
    EOS,
    UNK,
    BPTTLoader,
    Corpus,
    LMBatch,
    Vocabulary,
    as_vocabulary,
    batchify,
    load_text_corpus,
    perplexity,
    read_tokens,
    sample_seq_len,
)

__all__ = [
    "DATASETS",
    "EOS",
    "PTB_FILES",
    "PTB_URL",
    "PTB_VOCAB_SIZE",
    "UNK",
    "BPTTLoader",
    "Corpus",
    "LMBatch",
    "Vocabulary",
    "as_vocabulary",
    "batchify",
    "default_data_dir",
    "ensure_ptb",
    "load_corpus",
    "load_ptb",
    "load_text_corpus",
    "perplexity",
    "read_tokens",
    "sample_seq_len",
]

#: Dataset names accepted by :func:`load_corpus` and the CLIs' ``--data``.
DATASETS: tuple[str, ...] = ("ptb", "textdir")


def load_corpus(
    name: str,
    data_dir: str | os.PathLike[str],
    *,
    download_missing: bool = False,
    vocab: Any | None = None,
) -> Corpus:
    """Load a corpus by dataset name (``"ptb"`` or ``"textdir"``) from ``data_dir``.

    Raises:
        UnknownNameError: ``name`` is not a known dataset.
        DataError: missing or corrupt files.
    """
    if name == "ptb":
        return load_ptb(data_dir, download_missing=download_missing, vocab=vocab)
    if name == "textdir":
        return load_text_corpus(data_dir, vocab=vocab)
    raise UnknownNameError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
