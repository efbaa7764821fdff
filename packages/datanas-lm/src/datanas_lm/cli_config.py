"""The model, data-budget and optimiser settings of the LM command lines as typed dataclasses, without torch
(``--help`` builds its option tables from them).

Each field's type and help (the ``Attributes:`` entries) are the single source of the CLI flag; its default is
the ``cpu`` size, and :data:`SEARCH_SIZES` / :data:`TRAIN_SIZES` hold the other sizes (``--size``), from which
:mod:`datanas_lm.presets` derives its tables. The CLIs show no default for these flags ("from --size"):
:func:`resolve_settings` starts from the chosen size and applies the flags that were given.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from datanas_core.cli_options import check_positive
from datanas_core.errors import ConfigError

__all__ = [
    "DATASET_NAMES",
    "LMCompareOptions",
    "LMSearchSettings",
    "LMSettings",
    "LMTrainSettings",
    "SEARCH_SIZES",
    "SIZE_NAMES",
    "TRAIN_SIZES",
    "resolve_settings",
]

#: ``--data`` choices; a test checks them against :data:`datanas_lm.data.DATASETS`.
DATASET_NAMES = ("ptb", "textdir")

#: The token caps whose value 0 on the command line means "no cap" (``None``).
_TOKEN_CAPS = ("train_tokens", "val_tokens", "eval_tokens")


@dataclass(frozen=True)
class LMSettings:
    """Sizes, regularisation and data budget shared by the LM search and training (defaults: ``--size cpu``).

    Attributes:
        threads: torch CPU threads (cpu: 1, the small matrices gain little from more; darts-full: torch's).
        emsize: embedding size (= hidden size; weights are tied).
        nhid: hidden size.
        batch_size: training batch size (columns).
        eval_batch_size: evaluation batch size.
        bptt: nominal BPTT length (windows vary around it).
        epochs: epochs.
        train_tokens: train on a contiguous subset of about this many tokens per epoch (0: the whole training
            set).
        eval_tokens: tokens of the validation set used for per-epoch evaluation (0: all).
        dropout: locked dropout on the cell outputs.
        dropouth: variational dropout on the states fed to the recurrent matrices.
        dropoutx: variational dropout on the cell input.
        dropouti: locked dropout on the embeddings.
        dropoute: embedding (word) dropout.
        wdrop: DropConnect on the recurrent matrices.
        alpha: activation regularisation (AR) weight.
        beta: temporal activation regularisation (TAR) weight.
    """

    threads: int | None = 1
    emsize: int = 64
    nhid: int = 64
    batch_size: int = 32
    eval_batch_size: int = 10
    bptt: int = 35
    epochs: int = 4
    train_tokens: int | None = 60_000
    eval_tokens: int | None = 7_000
    dropout: float = 0.1
    dropouth: float = 0.05
    dropoutx: float = 0.1
    dropouti: float = 0.05
    dropoute: float = 0.0
    wdrop: float = 0.0
    alpha: float = 0.0
    beta: float = 1e-3

    def __post_init__(self) -> None:
        check_positive(self, "emsize", "nhid", "batch_size", "eval_batch_size", "bptt", "epochs", "threads")
        if self.emsize != self.nhid:
            raise ConfigError(
                f"--emsize ({self.emsize}) and --nhid ({self.nhid}) must be equal: "
                "the decoder is tied to the embedding"
            )

    def dropouts(self) -> dict[str, float]:
        """The dropout keywords of the RNN models."""
        return {
            k: float(getattr(self, k))
            for k in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute", "wdrop")
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LMSearchSettings(LMSettings):
    """The LM search (defaults: ``--size cpu``; the optimiser is DARTS' RNN search: SGD without momentum or
    schedule, Adam on the architecture).

    Attributes:
        val_tokens: tokens of the validation stream of the architecture step per epoch (None: all).
        w_lr: weight learning rate (SGD).
        w_weight_decay: weight decay of the weights.
        grad_clip: gradient-norm clip of the weights.
        a_lr: architecture learning rate (Adam).
    """

    val_tokens: int | None = None
    w_lr: float = 20.0
    w_weight_decay: float = 5e-7
    grad_clip: float = 0.25
    a_lr: float = 3e-3


@dataclass(frozen=True)
class LMTrainSettings(LMSettings):
    """LM training from scratch (defaults: ``--size cpu``; SGD with the NT-ASGD switch, DARTS ``rnn/train.py``).

    Attributes:
        test_batch_size: test batch size.
        lr: SGD learning rate.
        weight_decay: SGD weight decay.
        clip: gradient-norm clip.
        nonmono: NT-ASGD non-monotone interval.
        node_merge: how a derived node with several kept (predecessor, activation) pairs (DATA's multi-input
            rule) combines their highway updates: ``mean`` (keeps the state's scale) or ``sum`` (the state
            grows with the number of pairs; such cells diverged at the CPU budget). DATA's recurrent code is not
            public: our choice, see :class:`~datanas_lm.cells.DerivedRecurrentCell`.
    """

    batch_size: int = 16
    epochs: int = 3
    test_batch_size: int = 10
    lr: float = 20.0
    weight_decay: float = 8e-7
    clip: float = 0.25
    nonmono: int = 5
    node_merge: Literal["mean", "sum"] = "mean"


#: ``--size`` names: ``cpu`` (the dataclass defaults; two CPU cores) and ``darts-full`` (DARTS' PTB sizes).
SIZE_NAMES: tuple[str, ...] = ("cpu", "darts-full")

_DARTS_FULL = {"threads": None, "train_tokens": None, "eval_tokens": None, "dropout": 0.75, "dropouth": 0.25,
               "dropoutx": 0.75, "dropouti": 0.2}  # fmt: skip

#: The search settings of each ``--size``.
SEARCH_SIZES: Mapping[str, LMSearchSettings] = MappingProxyType(
    {
        "cpu": LMSearchSettings(),
        "darts-full": LMSearchSettings(**_DARTS_FULL, emsize=300, nhid=300, batch_size=256, epochs=50),
    }
)

#: The training settings of each ``--size``.
TRAIN_SIZES: Mapping[str, LMTrainSettings] = MappingProxyType(
    {
        "cpu": LMTrainSettings(),
        "darts-full": LMTrainSettings(
            **_DARTS_FULL, emsize=850, nhid=850, batch_size=64, epochs=8000, test_batch_size=1, dropoute=0.1
        ),
    }
)

S = TypeVar("S", bound=LMSettings)


def resolve_settings(sizes: Mapping[str, S], size: str, args: argparse.Namespace | Mapping[str, Any]) -> S:
    """The settings of ``--size`` with every flag that was given (not ``None``) applied; a token cap of 0
    means no cap.

    Raises:
        ConfigError: an unknown size, or values the settings refuse (e.g. ``--emsize`` != ``--nhid``).
    """
    if size not in sizes:
        raise ConfigError(f"unknown size {size!r}; valid sizes: {', '.join(sizes)}")
    base = sizes[size]
    values = dict(args) if isinstance(args, Mapping) else vars(args)
    given = {f.name: values[f.name] for f in dataclasses.fields(base) if values.get(f.name) is not None}
    for key in _TOKEN_CAPS:
        if given.get(key) == 0:
            given[key] = None
    return dataclasses.replace(base, **given)


@dataclass(frozen=True)
class LMCompareOptions:
    """What ``python -m datanas_lm.compare`` trains besides the searched cell, and how.

    Attributes:
        random: number of random cells.
        lstm: train the LSTM too.
        jobs: models trained at the same time, in worker processes.
    """

    random: int = 5
    lstm: bool = True
    jobs: int = 1

    def __post_init__(self) -> None:
        check_positive(self, "jobs")
        if self.random < 0:
            raise ConfigError(f"--random must be >= 0, got {self.random}")
