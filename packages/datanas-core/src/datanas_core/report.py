"""``python -m datanas_core.report RUN_DIR``: write report.html and report.md for a search run.

For a multi-seed directory (``multiseed.json``, one ``seed_*`` run per seed) it reports every seed and the
summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datanas_core.entry import cli_entry, one_line_errors

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datanas_core.report", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="run directory (or multi-seed parent directory)")
    p.add_argument(
        "--engine",
        choices=("builtin", "dot", "auto"),
        default="builtin",
        help="cell drawing: built-in SVG layout, Graphviz 'dot', or dot when installed",
    )
    p.add_argument("--title", default=None, help="report title")
    return one_line_errors(p)  # a bad flag: one line, exit status 2


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from datanas_core.errors import DataNASError
    from datanas_core.runtime.report import build_multiseed_report, build_report

    try:
        if (args.run_dir / "multiseed.json").is_file() and not (args.run_dir / "config.json").is_file():
            paths = build_multiseed_report(args.run_dir, engine=args.engine, title=args.title)
        else:
            paths = build_report(args.run_dir, engine=args.engine, title=args.title)
    except DataNASError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(paths["html"])
    print(paths["md"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
