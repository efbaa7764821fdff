"""Command line: a searched backbone against random backbones of the space at equal parameters and budget.

Example::

    python -m datanas_seg.compare --genotype runs/seg-search/genotype.json --random 5 \
        --data isbi2012 --data-dir DIR --out runs/seg-compare

Draws ``--random`` distinct random genotypes whose backbone parameter count is within ``--tolerance`` of the
searched one (:func:`datanas_seg.training.param_matched_random_genotypes`), trains every model with the same
budget, head, crops and seed (``python -m datanas_seg.train`` options), and writes ``OUT/comparison.json`` and
``OUT/comparison.md`` (test mIoU of the searched backbone, of each random one, and their median).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from datanas_core.errors import DataNASError
from datanas_core.io import atomic_write_text
from datanas_core.runtime import configure_logging, seed_everything
from datanas_seg import _cli
from datanas_seg.space import SegDartsSpace
from datanas_seg.train import build_parser as train_parser
from datanas_seg.train import parse_genotype, train_and_evaluate
from datanas_seg.training import param_matched_random_genotypes

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The train parser plus ``--random``, ``--tolerance`` and ``--random-seed``."""
    p = train_parser()
    p.prog = "python -m datanas_seg.compare"
    p.description = "Train a searched backbone and parameter-matched random backbones with the same budget."
    g = p.add_argument_group("comparison")
    g.add_argument("--random", type=int, default=5, help="random backbones (default 5)")
    g.add_argument("--tolerance", type=float, default=0.1, help="relative parameter tolerance (default 0.1)")
    g.add_argument("--random-seed", type=int, default=0, help="seed of the random architectures (default 0)")
    return p


def _markdown(rows: list[dict[str, Any]], median: float, searched: dict[str, Any]) -> str:
    lines = [
        "| model | backbone params | val mIoU | test mIoU | train s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['params_backbone']:,} | {r['val']['mIoU'] * 100:.2f} | "
            f"{r['test']['mIoU'] * 100:.2f} | {r['train_seconds']:.0f} |"
        )
    verdict = "beats" if searched["test"]["mIoU"] > median else "does not beat"
    lines += [
        "",
        f"Median test mIoU of the random backbones: {median * 100:.2f}. "
        f"The searched backbone ({searched['test']['mIoU'] * 100:.2f}) {verdict} it.",
    ]
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    _cli.check_positive(iters=args.iters, batch_size=args.batch_size, C=args.C, threads=args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    space = SegDartsSpace()
    searched = parse_genotype(args.genotype, space)
    space.validate(searched)
    splits = _cli.load_splits(args)
    out = args.out or Path("runs/seg-compare") / time.strftime("%Y%m%d-%H%M%S")
    crop = args.crop_size or 64
    device = _cli.pick_device(args.device)
    cps = _cli.cells_per_stage(args)
    randoms = param_matched_random_genotypes(
        space,
        searched,
        args.random,
        C=args.C,
        cells_per_stage=cps,
        num_stages=args.num_stages,
        tolerance=args.tolerance,
        seed=args.random_seed,
    )
    rows = []
    for name, g in [("searched", searched)] + [(f"random{i}", r) for i, r in enumerate(randoms)]:
        logger.info("=== %s ===", name)
        rec = train_and_evaluate(args, g, splits, crop=crop, device=device, out=out / name)
        g.save(out / name / "genotype.json")
        rec["name"] = name
        rows.append(rec)
    median = statistics.median(r["test"]["mIoU"] for r in rows[1:]) if rows[1:] else float("nan")
    summary = {
        "searched_test_mIoU": rows[0]["test"]["mIoU"],
        "random_test_mIoU": [r["test"]["mIoU"] for r in rows[1:]],
        "random_median_test_mIoU": median,
        "searched_beats_median": rows[0]["test"]["mIoU"] > median,
        "rows": [{k: v for k, v in r.items() if k != "history"} for r in rows],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    atomic_write_text(out / "comparison.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "comparison.md", _markdown(rows, median, rows[0]))
    logger.info("comparison:\n%s", _markdown(rows, median, rows[0]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m datanas_seg.compare``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return _run(args)
    except DataNASError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
