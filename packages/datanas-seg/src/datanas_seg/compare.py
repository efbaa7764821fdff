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
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core.cli_options import (
    add_dataclass_options,
    command,
    dataclass_from_args,
    print_summary,
    torch_device,
)
from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_seg import _cli
from datanas_seg.cli_config import SegCompareConfig, SegDataConfig, SegModelConfig, SegTrainConfig
from datanas_seg.train import build_parser as train_parser
from datanas_seg.train import parse_genotype, train_and_evaluate

if TYPE_CHECKING:
    pass

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The train parser plus ``--random``, ``--tolerance`` and ``--random-seed``."""
    p = train_parser()
    p.prog = "python -m datanas_seg.compare"
    p.description = "Train a searched backbone and parameter-matched random backbones with the same budget."
    for action in p._actions:  # train's --out help names train's default folder
        if action.dest == "out":
            action.help = "output folder, one subfolder per model (default: runs/seg-compare/<time>)"
    g = p.add_argument_group("comparison")
    add_dataclass_options(g, SegCompareConfig)
    g.add_argument(
        "--evaluate-only",
        action="store_true",
        help="re-evaluate the models already trained in --out (OUT/<name>/model.pt) with the current "
        "evaluation options (e.g. --test-mode) instead of training",
    )
    return p


def _reevaluate(
    args: argparse.Namespace, count: int, out: Path, splits: _cli.Splits, crop: int, device: Any
) -> list[dict]:
    from datanas_core.io import atomic_write_text

    rows = []
    model_config = dataclass_from_args(SegModelConfig, args)
    batch_size = dataclass_from_args(SegDataConfig, args).batch_size
    names = ["searched"] + [f"random{i}" for i in range(count)]
    for name in names:
        folder = out / name
        old_path = folder / "metrics.json"
        if not (folder / "model.pt").is_file() or not old_path.is_file():
            raise ConfigError(
                f"--evaluate-only: {str(folder)!r} has no model.pt / metrics.json to re-evaluate"
            )
        g = Genotype.load(folder / "genotype.json")
        train = dataclass_from_args(SegTrainConfig, args, iters=0, init_weights=folder / "model.pt")
        fresh = train_and_evaluate(
            model_config, train, g, splits, batch_size=batch_size, crop=crop, device=device, out=None
        )
        rec = json.loads(old_path.read_text())
        rec.update(
            val=fresh["val"],
            test=fresh["test"],
            test_mode=fresh["test_mode"],
            eval_seconds=fresh["eval_seconds"],
        )
        atomic_write_text(old_path, json.dumps(rec, indent=2, sort_keys=True) + "\n")
        logger.info("%s: val mIoU %.4f | test mIoU %.4f", name, rec["val"]["mIoU"], rec["test"]["mIoU"])
        rec["name"] = name
        rows.append(rec)
    return rows


def _train_argv(args: argparse.Namespace, genotype: Path, out: Path) -> list[str]:
    """``python -m datanas_seg.train`` arguments reproducing this run's training options for one model."""
    argv = ["--genotype", str(genotype), "--out", str(out)]
    skip = {"genotype", "out", "export_config", "help", "init_weights"}
    for action in train_parser()._actions:
        if not action.option_strings or action.dest in skip:
            continue
        value = getattr(args, action.dest, None)
        flag = action.option_strings[0]
        if value is None:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(action, argparse._CountAction):
            argv += [flag] * int(value)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def _train_in_processes(
    args: argparse.Namespace, jobs: list[tuple[str, Genotype]], out: Path, workers: int
) -> list[dict[str, Any]]:
    pending = list(jobs)
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    while pending or running:
        while pending and len(running) < workers:
            name, g = pending.pop(0)
            (out / name).mkdir(parents=True, exist_ok=True)
            gpath = g.save(out / name / "genotype.json")
            log = open(out / name / "train.log", "wb")  # noqa: SIM115 - closed when the process ends
            cmd = [sys.executable, "-m", "datanas_seg.train", *_train_argv(args, gpath, out / name)]
            logger.info("starting %s: %s", name, " ".join(cmd[1:]))
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            p.log = log  # type: ignore[attr-defined]
            running.append((name, p))
        time.sleep(1.0)
        for item in list(running):
            name, p = item
            if p.poll() is not None:
                p.log.close()  # type: ignore[attr-defined]
                running.remove(item)
                if p.returncode != 0:
                    raise ConfigError(
                        f"training {name} failed (exit {p.returncode}); see {out / name / 'train.log'}"
                    )
                logger.info("%s finished", name)
    rows = []
    for name, _ in jobs:
        rec = json.loads((out / name / "metrics.json").read_text())
        rec["name"] = name
        rows.append(rec)
    return rows


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
    from datanas_core.io import atomic_write_text
    from datanas_core.runtime import seed_everything
    from datanas_seg.space import SegDartsSpace
    from datanas_seg.training import param_matched_random_genotypes

    data = dataclass_from_args(SegDataConfig, args)
    model_config = dataclass_from_args(SegModelConfig, args)
    train = dataclass_from_args(SegTrainConfig, args)
    compare = dataclass_from_args(SegCompareConfig, args)
    _cli.set_threads(args.threads)
    seed_everything(train.seed)
    space = SegDartsSpace()
    searched = parse_genotype(args.genotype, space)
    space.validate(searched)
    splits = _cli.load_splits(data)
    out = args.out or Path("runs/seg-compare") / time.strftime("%Y%m%d-%H%M%S")
    crop = data.crop
    device = torch_device(args.device)
    if args.evaluate_only:
        rows = _reevaluate(args, compare.random, out, splits, crop, device)
    else:
        randoms = param_matched_random_genotypes(
            space,
            searched,
            compare.random,
            C=model_config.C,
            cells_per_stage=model_config.stages,
            num_stages=model_config.num_stages,
            tolerance=compare.tolerance,
            seed=compare.random_seed,
        )
        models = [("searched", searched)] + [(f"random{i}", r) for i, r in enumerate(randoms)]
        if compare.jobs > 1:
            rows = _train_in_processes(args, models, out, compare.jobs)
        else:
            rows = []
            for name, g in models:
                logger.info("=== %s ===", name)
                rec = train_and_evaluate(
                    model_config,
                    train,
                    g,
                    splits,
                    batch_size=data.batch_size,
                    crop=crop,
                    device=device,
                    out=out / name,
                )
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
    print_summary(
        "seg compare",
        run_dir=out,
        genotype=searched,
        metrics={
            "searched_test_mIoU": summary["searched_test_mIoU"],
            "random_median_test_mIoU": median,
            "num_random": len(rows) - 1,
        },
        warnings=[]
        if summary["searched_beats_median"]
        else ["the searched backbone does not beat the random median"],
        extra={"table": out / "comparison.md"},
    )
    return 0


#: ``main(argv=None) -> int``: parse (``--config``/``--resume`` where offered), run, one-line errors.
main = command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
