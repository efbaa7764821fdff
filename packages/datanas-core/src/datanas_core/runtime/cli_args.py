"""``add_runtime_args``: the runtime flags every domain CLI shares, without torch (``--help`` stays fast).
:mod:`datanas_core.runtime.runner` re-exports it."""

from __future__ import annotations

import argparse
from pathlib import Path

from datanas_core.cli_options import add_options
from datanas_core.entry import one_line_errors

__all__ = ["add_runtime_args"]


def add_runtime_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags every domain CLI shares (a "runtime" argument group).

    ``--out DIR``, ``--resume RUN_DIR``, ``--seed N`` / ``--seeds 0,1,2``, ``--dry-run``,
    ``--memory-budget 8GiB``, ``--checkpoint-every STEPS``, ``--keep-last K``, ``--progress/--no-progress``,
    ``--early-stop-collapse``, ``--device``, ``--report/--no-report``, ``--log-every``, ``--verbose``.
    """
    g = parser.add_argument_group("runtime")
    g.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<timestamp>)")
    g.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest good checkpoint with the run's own options (flags "
        "given with it override them: learning rates, --epochs N to extend, checkpointing, logging)",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="random seed (weights, architecture sampling, data order)"
    )
    g.add_argument(
        "--seeds",
        type=str,
        default=None,
        help="several seeds, e.g. '0,1,2' or '0-4': one run per seed plus a summary table",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="build the supernet, run one step on a synthetic batch, report time and peak memory",
    )
    g.add_argument(
        "--memory-budget",
        type=str,
        default=None,
        help="with --dry-run: memory available (e.g. '16GiB'); suggests a batch size that fits",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="also checkpoint every STEPS optimisation steps (default: at epoch ends only)",
    )
    g.add_argument("--keep-last", type=int, default=3, help="checkpoints to keep")
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal; log lines otherwise)",
    )
    g.add_argument("--log-every", type=int, default=50, help="steps between progress log lines")
    g.add_argument(
        "--early-stop-collapse",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="stop when the derived cells collapse to parameter-free ops for 3 epochs",
    )
    g.add_argument(
        "--device",
        type=str,
        default=None,
        help="torch device (default: cuda:LOCAL_RANK when available, else cpu)",
    )
    g.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write report.html/report.md at the end",
    )
    g.add_argument(
        "--restart",
        action="store_true",
        help="start again from step 0 in the --out directory although it holds a run (e.g. one whose "
        "checkpoints are all damaged); its files are moved to previous/<timestamp>/",
    )
    g.add_argument("--verbose", "-v", action="count", default=0, help="more log output (-vv: debug)")
    g.add_argument("--debug", action="store_true", help="show the Python traceback of an error")

    add_options(g, ["--config", "--print-config"])  # read with datanas_core.cli_options.parse_cli

    return one_line_errors(parser)
