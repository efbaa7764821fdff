"""The runtime flags every domain CLI shares, without torch (``--help`` stays fast): :class:`RuntimeArgs` is
their single source (type, default, help) and :func:`add_runtime_args` generates them from it.
:mod:`datanas_core.runtime.runner` re-exports both; its :class:`~datanas_core.runtime.RuntimeOptions` interprets
the parsed flags (run directory, resume mode, seed list, memory budget in bytes)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datanas_core.cli_options import add_dataclass_options, add_options, check_positive
from datanas_core.entry import one_line_errors

__all__ = ["RuntimeArgs", "add_runtime_args"]


@dataclass(frozen=True)
class RuntimeArgs:
    """The runtime flags of a datanas CLI as parsed (``--out DIR``, ``--resume RUN_DIR``, ...).

    Attributes:
        out: run directory (default: runs/<timestamp>).
        resume: continue the run in RUN_DIR from its newest good checkpoint with the run's own options (flags
            given with it override them: learning rates, --epochs N to extend, checkpointing, logging).
        seed: random seed (weights, architecture sampling, data order).
        seeds: several seeds, e.g. '0,1,2' or '0-4': one run per seed plus a summary table.
        dry_run: build the supernet, run one step on a synthetic batch, report time and peak memory.
        memory_budget: with --dry-run: memory available (e.g. '16GiB'); suggests a batch size that fits.
        checkpoint_every: also checkpoint every STEPS optimisation steps (default: at epoch ends only).
        keep_last: checkpoints to keep.
        progress: progress bar (default: on a terminal; log lines otherwise).
        log_every: steps between progress log lines.
        early_stop_collapse: stop when the derived cells collapse to parameter-free ops for 3 epochs.
        device: torch device (default: cuda:LOCAL_RANK when available, else cpu).
        report: write report.html/report.md at the end.
        restart: start again from step 0 in the --out directory although it holds a run (e.g. one whose
            checkpoints are all damaged); its files are moved to previous/<timestamp>/.
        verbose: more log output (-vv: debug).
        debug: show the Python traceback of an error.
    """

    out: Path | None = None
    resume: Path | None = None
    seed: int = 0
    seeds: str | None = None
    dry_run: bool = False
    memory_budget: str | None = None
    checkpoint_every: int | None = None
    keep_last: int = 3
    progress: bool | None = None
    log_every: int = 50
    early_stop_collapse: bool = False
    device: str | None = None
    report: bool = True
    restart: bool = False
    verbose: int = 0
    debug: bool = False

    def __post_init__(self) -> None:
        check_positive(self, "keep_last", "checkpoint_every", "log_every")


#: How the flags of :class:`RuntimeArgs` differ from their type's flag form: switches without a ``--no-`` form
#: and a counted ``-v``.
_ACTIONS = {"dry_run": "store_true", "restart": "store_true", "debug": "store_true", "verbose": "count"}
_ALIASES = {"verbose": ("-v",)}
_METAVARS = {"resume": "RUN_DIR", "checkpoint_every": "STEPS"}


def add_runtime_args(
    parser: argparse.ArgumentParser,
    fields: Iterable[str] | None = None,
    *,
    help: Mapping[str, str] | None = None,  # noqa: A002 - mirrors argparse's keyword
    defaults: Mapping[str, Any] | None = None,
    required: Iterable[str] = (),
    config: bool | None = None,
) -> argparse.ArgumentParser:
    """Add the runtime flags (a "runtime" argument group) generated from :class:`RuntimeArgs`.

    ``--out DIR``, ``--resume RUN_DIR``, ``--seed N`` / ``--seeds 0,1,2``, ``--dry-run``,
    ``--memory-budget 8GiB``, ``--checkpoint-every STEPS``, ``--keep-last K``, ``--progress/--no-progress``,
    ``--early-stop-collapse``, ``--device``, ``--report/--no-report``, ``--restart``, ``--log-every``,
    ``--verbose``/``-v``, ``--debug``, and ``--config``/``--print-config`` (read by
    :func:`~datanas_core.cli_options.parse_cli`).

    Args:
        fields: only these :class:`RuntimeArgs` fields (a retraining CLI: ``["out", "seed", "device",
            "verbose"]``); default: all of them.
        help: per-CLI help that replaces the field's (e.g. where ``--out`` goes by default).
        defaults: per-CLI defaults.
        required: fields that must be given.
        config: add ``--config`` and ``--print-config`` (default: with every field, not with ``fields``).

    Returns:
        ``parser``, reporting a bad flag on one line (exit status 2).
    """
    g = parser.add_argument_group("runtime")
    names = None if fields is None else list(fields)
    add_dataclass_options(
        g,
        RuntimeArgs,
        names,
        help=help,
        defaults=defaults,
        required=required,
        actions={k: v for k, v in _ACTIONS.items() if names is None or k in names},
        aliases=_ALIASES,
        metavars=_METAVARS,
    )
    if config if config is not None else names is None:
        add_options(g, ["--config", "--print-config"])
    return one_line_errors(parser)
