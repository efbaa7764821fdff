"""Word-level text pipeline: vocabulary, tokenisation, batchify and BPTT windows.

The pipeline is plain torch (torchtext cannot be loaded beside current torch releases), but a user's
torchtext vocabulary can be passed wherever a vocabulary is expected: any object with ``get_stoi()`` (and
optionally ``get_itos()`` / ``lookup_indices``) is accepted by duck typing, without importing torchtext.

Layout conventions follow the AWD-LSTM / DARTS language-model code: a corpus is one long stream of token
ids (one ``<eos>`` after every line), ``batchify`` cuts it into ``B`` contiguous columns (``[T, B]``), and a
:class:`BPTTLoader` walks down the rows in windows of variable length so that the hidden state can be
carried from one window to the next.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from datanas_core.errors import ConfigError, DataError, MissingDependencyError

__all__ = [
    "EOS",
    "UNK",
    "BPTTLoader",
    "Corpus",
    "LMBatch",
    "Vocabulary",
    "as_vocabulary",
    "batchify",
    "load_text_corpus",
    "perplexity",
    "read_tokens",
    "sample_seq_len",
]

logger = logging.getLogger(__name__)

#: End-of-sentence token appended to every line.
EOS = "<eos>"
#: Unknown-word token (PTB already contains it).
UNK = "<unk>"


class Vocabulary:
    """A word <-> index map (index order = first appearance unless given explicitly).

    Args:
        itos: the words, index ``i`` is word ``itos[i]``; must be unique.
        unk: the token used for out-of-vocabulary words by :meth:`encode` (must be in ``itos`` for
            unknown words to be mapped; otherwise unknown words raise DataError).

    Example:
        >>> v = Vocabulary(["<unk>", "a", "b", "<eos>"])
        >>> v.encode(["a", "zzz", "<eos>"]).tolist()
        [1, 0, 3]
    """

    def __init__(self, itos: Sequence[str], *, unk: str | None = UNK) -> None:
        self._itos = list(itos)
        self._stoi = {w: i for i, w in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            dupes = sorted(w for w, c in Counter(self._itos).items() if c > 1)[:5]
            raise DataError(f"vocabulary words must be unique; duplicated: {dupes}")
        self.unk = unk if unk is not None and unk in self._stoi else None

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        *,
        specials: Sequence[str] = (UNK, EOS),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Build from a token stream.

        Words keep their order of first appearance (as the AWD-LSTM/DARTS ``Dictionary`` does), so the PTB
        vocabulary is identical to the reference code's. ``specials`` are added (at the end) when the
        stream does not contain them. With ``min_freq`` > 1 or ``max_size``, rarer words are dropped (the
        most frequent are kept; ties by first appearance) and map to ``<unk>``.
        """
        if min_freq < 1:
            raise ConfigError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        order: dict[str, int] = {}
        for t in tokens:
            counts[t] += 1
            if t not in order:
                order[t] = len(order)
        ordinary = [w for w in order if w not in specials and counts[w] >= min_freq]
        if max_size is not None:
            budget = max_size - len(specials)
            if budget < 0:
                raise ConfigError(f"max_size must be >= {len(specials)} (the specials), got {max_size}")
            if len(ordinary) > budget:
                kept = set(sorted(ordinary, key=lambda w: (-counts[w], order[w]))[:budget])
                ordinary = [w for w in ordinary if w in kept]
        keep = set(ordinary) | set(specials)
        words = [w for w in order if w in keep]
        words += [s for s in specials if s not in order]
        return cls(words, unk=UNK if UNK in specials else None)

    @classmethod
    def from_torchtext(cls, vocab: Any) -> Vocabulary:
        """Wrap a torchtext-style vocabulary (duck-typed: ``get_itos()`` or ``get_stoi()``).

        torchtext itself is not imported.
        """
        if hasattr(vocab, "get_itos"):
            itos = list(vocab.get_itos())
        elif hasattr(vocab, "get_stoi"):
            stoi = dict(vocab.get_stoi())
            itos = [w for w, _ in sorted(stoi.items(), key=lambda kv: kv[1])]
            if [stoi[w] for w in itos] != list(range(len(itos))):
                raise DataError("the torchtext vocabulary's indices are not 0..N-1 without gaps")
        else:
            raise DataError(
                f"cannot use a {type(vocab).__name__} as a vocabulary: it needs get_itos() or get_stoi() "
                "(a torchtext Vocab) or must be a datanas_lm Vocabulary"
            )
        unk = UNK if UNK in itos else None
        default = getattr(vocab, "get_default_index", None)
        if callable(default):
            idx = default()
            if idx is not None and 0 <= idx < len(itos):
                unk = itos[idx]
        return cls(itos, unk=unk)

    def to_torchtext(self) -> Any:
        """The same vocabulary as a ``torchtext.vocab.Vocab`` (imports torchtext; only when asked)."""
        try:
            from torchtext.vocab import vocab as tt_vocab  # type: ignore[import-not-found]
        except Exception as exc:  # noqa: BLE001 - torchtext fails with OSError beside new torch
            raise MissingDependencyError(
                f"Vocabulary.to_torchtext() needs a working torchtext ({exc}); install one that matches your "
                "torch, or use datanas_lm.Vocabulary directly"
            ) from exc
        from collections import OrderedDict

        v = tt_vocab(OrderedDict((w, 1) for w in self._itos), min_freq=1)
        if self.unk is not None:
            v.set_default_index(self._stoi[self.unk])
        return v

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, word: object) -> bool:
        return word in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._itos == other._itos and self.unk == other.unk

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, unk={self.unk!r})"

    @property
    def itos(self) -> list[str]:
        return list(self._itos)

    def get_itos(self) -> list[str]:
        """torchtext-compatible alias of :attr:`itos`."""
        return list(self._itos)

    def get_stoi(self) -> dict[str, int]:
        """torchtext-compatible word -> index map (a copy)."""
        return dict(self._stoi)

    def index(self, word: str) -> int:
        """Index of ``word`` (``<unk>``'s index for unknown words when the vocabulary has one)."""
        i = self._stoi.get(word)
        if i is None:
            if self.unk is None:
                raise DataError(f"word {word!r} is not in the vocabulary and it has no unknown-word token")
            return self._stoi[self.unk]
        return i

    def lookup_indices(self, tokens: Sequence[str]) -> list[int]:
        """torchtext-compatible batch lookup."""
        return [self.index(t) for t in tokens]

    def lookup_tokens(self, indices: Sequence[int]) -> list[str]:
        return [self._itos[i] for i in indices]

    def encode(self, tokens: Sequence[str]) -> Tensor:
        """Token ids as a 1-D ``int64`` tensor."""
        return torch.tensor(self.lookup_indices(tokens), dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> list[str]:
        if isinstance(ids, Tensor):
            ids = ids.reshape(-1).tolist()
        return self.lookup_tokens(list(ids))


def as_vocabulary(vocab: Any) -> Vocabulary:
    """Accept a :class:`Vocabulary` or a torchtext-style vocabulary (duck-typed)."""
    if isinstance(vocab, Vocabulary):
        return vocab
    return Vocabulary.from_torchtext(vocab)


def read_tokens(path: str | os.PathLike[str], *, eos: str = EOS) -> list[str]:
    """Whitespace-tokenise a text file, appending ``eos`` after every line (empty lines included).

    Raises:
        DataError: the file is missing or is not UTF-8 text.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"text file {str(p)!r} does not exist")
    tokens: list[str] = []
    try:
        with p.open("r", encoding="utf-8") as fh:
            for line in fh:
                tokens.extend(line.split())
                tokens.append(eos)
    except UnicodeDecodeError as exc:
        raise DataError(f"{str(p)!r} is not UTF-8 text: {exc}") from exc
    return tokens


@dataclass
class Corpus:
    """A tokenised train/valid/test corpus sharing one vocabulary.

    Attributes:
        vocab: the vocabulary.
        train, valid, test: 1-D ``int64`` token-id streams.
        name: a label for logs and manifests.
    """

    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor
    name: str = "text"

    def split(self, name: str) -> Tensor:
        splits = {"train": self.train, "valid": self.valid, "test": self.test}
        if name not in splits:
            raise ConfigError(f"unknown split {name!r}; valid splits: train, valid, test")
        return splits[name]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab_size": len(self.vocab),
            "train_tokens": int(self.train.numel()),
            "valid_tokens": int(self.valid.numel()),
            "test_tokens": int(self.test.numel()),
        }


_SPLIT_NAMES: Mapping[str, tuple[str, ...]] = {
    "train": ("train.txt", "train"),
    "valid": ("valid.txt", "val.txt", "validation.txt", "dev.txt", "valid", "val"),
    "test": ("test.txt", "test"),
}


def _find_split(data_dir: Path, split: str) -> Path:
    for name in _SPLIT_NAMES[split]:
        p = data_dir / name
        if p.is_file():
            return p
    raise DataError(f"no {split} file in {str(data_dir)!r}; expected one of {', '.join(_SPLIT_NAMES[split])}")


def load_text_corpus(
    data_dir: str | os.PathLike[str],
    *,
    files: Mapping[str, str] | None = None,
    vocab: Any | None = None,
    min_freq: int = 1,
    max_size: int | None = None,
    name: str = "textdir",
) -> Corpus:
    """Read a train/valid/test corpus of plain text files (one sentence per line).

    Args:
        data_dir: directory with ``train.txt``, ``valid.txt`` (or ``val.txt``/``dev.txt``) and ``test.txt``.
        files: explicit ``{"train": name, "valid": name, "test": name}`` file names inside ``data_dir``.
        vocab: a vocabulary to use (a :class:`Vocabulary` or a torchtext-style one); built from the
            training split otherwise (``<unk>`` and ``<eos>`` always included; words that only occur in
            valid/test map to ``<unk>``).
        min_freq, max_size: vocabulary pruning when it is built here.
        name: label of the corpus.

    Raises:
        DataError: a file is missing, unreadable or empty.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data directory {str(root)!r} does not exist (pass --data-dir)")
    paths = {}
    for split in ("train", "valid", "test"):
        if files is not None and split in files:
            paths[split] = root / files[split]
        else:
            paths[split] = _find_split(root, split)
    toks = {split: read_tokens(p) for split, p in paths.items()}
    for split, t in toks.items():
        if not any(w != EOS for w in t):
            raise DataError(f"the {split} file {str(paths[split])!r} contains no words")
    v = (
        as_vocabulary(vocab)
        if vocab is not None
        else Vocabulary.build(toks["train"], min_freq=min_freq, max_size=max_size)
    )
    ids = {split: v.encode(t) for split, t in toks.items()}
    corpus = Corpus(v, ids["train"], ids["valid"], ids["test"], name=name)
    logger.info("loaded corpus %s", corpus.summary())
    return corpus


def batchify(data: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-D stream into ``batch_size`` contiguous columns: ``[T, B]`` with ``T = len(data) // B``.

    The tail that does not fill a row is dropped (as in the reference code).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if data.dim() != 1:
        raise DataError(f"batchify expects a 1-D token stream, got shape {tuple(data.shape)}")
    nbatch = data.numel() // batch_size
    if nbatch < 2:
        raise DataError(f"a stream of {data.numel()} tokens is too short for batch size {batch_size}")
    return data[: nbatch * batch_size].view(batch_size, nbatch).t().contiguous()


def sample_seq_len(
    bptt: int,
    generator: torch.Generator,
    *,
    p_full: float = 0.95,
    std: float = 5.0,
    min_len: int = 5,
    max_len: int | None = None,
) -> int:
    """AWD-LSTM's variable BPTT length: ``N(bptt, std)`` with probability ``p_full``, else ``N(bptt/2, std)``.

    Clipped to ``[min_len, max_len]`` (``max_len`` defaults to ``bptt + 20``, DARTS' ``max_seq_len_delta``).
    """
    base = float(bptt) if float(torch.rand((), generator=generator)) < p_full else bptt / 2.0
    seq = int(base + std * float(torch.randn((), generator=generator)))
    hi = bptt + 20 if max_len is None else max_len
    return max(min_len, min(seq, hi))


class LMBatch(NamedTuple):
    """One BPTT window.

    Attributes:
        inputs: ``[L, B]`` token ids.
        targets: ``[L, B]`` next-token ids.
        stream: name of the token stream (``"train"``, ``"val"``, ...): the task keeps one hidden state
            per stream.
        reset: the window starts a new pass over the stream (the hidden state restarts from zeros).
        position: row offset of the window in the batchified stream (identifies the window).
        bptt: the nominal BPTT length (``L / bptt`` scales the learning rate in the reference code).
    """

    inputs: Tensor
    targets: Tensor
    stream: str
    reset: bool
    position: int
    bptt: int

    def to(self, device: torch.device | str) -> LMBatch:
        return self._replace(inputs=self.inputs.to(device), targets=self.targets.to(device))

    @property
    def num_tokens(self) -> int:
        return int(self.targets.numel())


class BPTTLoader:
    """Iterate a batchified stream ``[T, B]`` in consecutive windows of (variable) length.

    Each pass ("epoch") draws its window lengths from a generator seeded with ``(seed, epoch)``, so a pass is
    reproducible and resumable while epochs differ. Like the runtime's ``DeterministicLoader``,
    :meth:`set_epoch` selects the pass (and the window to start from) that the next iteration runs, and every
    iteration then moves on to the next pass. With ``max_tokens`` a pass covers a contiguous sub-range of the
    stream of about that many tokens (a subset of the corpus per epoch for CPU budgets), starting at an offset
    drawn per pass (``random_offset=True``) or at the beginning of the stream.

    Args:
        data: ``[T, B]`` batchified token ids.
        bptt: nominal window length.
        stream: name carried by every batch (see :class:`LMBatch`).
        variable_length: draw lengths with :func:`sample_seq_len`; fixed ``bptt`` otherwise (evaluation).
        seed: seeds the length and offset draws.
        max_tokens: cap on the target tokens (``rows * B``) of one pass; ``None`` for the whole stream.
        random_offset: with ``max_tokens``, start each pass at a seeded random row (else at row 0).
        max_seq_len_delta: longest window is ``bptt + max_seq_len_delta``.

    Example:
        >>> data = batchify(torch.arange(1000), 4)
        >>> loader = BPTTLoader(data, 35, variable_length=False)
        >>> [b.inputs.shape[0] for b in loader][:3]
        [35, 35, 35]
    """

    def __init__(
        self,
        data: Tensor,
        bptt: int,
        *,
        stream: str = "train",
        variable_length: bool = True,
        seed: int = 0,
        max_tokens: int | None = None,
        random_offset: bool = True,
        max_seq_len_delta: int = 20,
    ) -> None:
        if data.dim() != 2:
            raise DataError(f"BPTTLoader expects batchified data [T, B], got shape {tuple(data.shape)}")
        if data.size(0) < 2:
            raise DataError(f"BPTTLoader needs at least 2 rows of data, got {data.size(0)}")
        if bptt < 1:
            raise ConfigError(f"bptt must be >= 1, got {bptt}")
        if max_tokens is not None and max_tokens < data.size(1):
            raise ConfigError(
                f"max_tokens must be at least one row ({data.size(1)} tokens), got {max_tokens}"
            )
        self.data = data
        self.bptt = int(bptt)
        self.stream = stream
        self.variable_length = variable_length
        self.seed = int(seed)
        self.max_tokens = max_tokens
        self.random_offset = random_offset
        self.max_seq_len_delta = int(max_seq_len_delta)
        self._next_epoch = 0
        self._start_batch = 0
        self._cached: tuple[int, tuple[int, list[int]]] | None = None

    @property
    def batch_size(self) -> int:
        return int(self.data.size(1))

    @property
    def epoch(self) -> int:
        """The pass the next iteration runs."""
        return self._next_epoch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration run pass ``epoch`` from window ``start_batch``."""
        n = len(self.plan(epoch)[1])
        if not 0 <= start_batch <= n:
            raise ConfigError(f"start_batch must be in 0..{n}, got {start_batch}")
        self._next_epoch = int(epoch)
        self._start_batch = int(start_batch)

    def plan(self, epoch: int) -> tuple[int, list[int]]:
        """``(start_row, window lengths)`` of pass ``epoch``."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
        rows = self.data.size(0) - 1  # the last row is only a target
        start = 0
        if self.max_tokens is not None:
            span = min(rows, max(1, self.max_tokens // self.batch_size))
            if span < rows and self.random_offset:
                start = int(torch.randint(0, rows - span + 1, (), generator=g))
            rows = span
        lengths: list[int] = []
        done = 0
        while done < rows:
            if self.variable_length:
                seq = sample_seq_len(self.bptt, g, max_len=self.bptt + self.max_seq_len_delta)
            else:
                seq = self.bptt
            seq = min(seq, rows - done)
            lengths.append(seq)
            done += seq
        self._cached = (int(epoch), (start, lengths))
        return start, lengths

    def __len__(self) -> int:
        return len(self.plan(self._next_epoch)[1])

    def __iter__(self) -> Iterator[LMBatch]:
        return self._run(self._next_epoch, self._start_batch)

    def iter_from(self, start_batch: int) -> Iterator[LMBatch]:
        """Windows of the pending pass from window ``start_batch`` on (for resuming mid-epoch)."""
        return self._run(self._next_epoch, start_batch)

    def _run(self, epoch: int, start_batch: int) -> Iterator[LMBatch]:
        start, lengths = self.plan(epoch)
        self._next_epoch, self._start_batch = epoch + 1, 0
        return self._windows(start, lengths, start_batch)

    def _windows(self, start: int, lengths: list[int], start_batch: int) -> Iterator[LMBatch]:
        pos = start + sum(lengths[:start_batch])
        for i, seq in enumerate(lengths[start_batch:], start=start_batch):
            yield LMBatch(
                self.data[pos : pos + seq],
                self.data[pos + 1 : pos + 1 + seq],
                self.stream,
                i == 0,
                pos,
                self.bptt,
            )
            pos += seq

    def num_tokens(self, epoch: int | None = None) -> int:
        """Target tokens in one pass (the pending one by default)."""
        return sum(self.plan(self._next_epoch if epoch is None else epoch)[1]) * self.batch_size


def perplexity(loss: float) -> float:
    """``exp(loss)``, saturating instead of overflowing."""
    return math.exp(min(loss, 50.0))
