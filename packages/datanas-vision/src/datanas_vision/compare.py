"""Searched cell versus random cells at equal retraining budget: ``python -m datanas_vision.compare``.

1. Searches the space once (EGS with ADC by default, the same settings as ``datanas_vision.search``), or takes
   the genotype of an earlier search (``--genotype``).
2. Draws ``--random`` cells uniformly from the same space (DARTS' random baseline: for every node two
   distinct earlier nodes and, for each, a uniformly drawn non-``none`` op; NB201: a uniform op per edge).
3. Retrains every cell from scratch with the same protocol, seed, width, depth and epochs, and measures test
   top-1.
4. Writes ``compare.json`` and ``compare.md`` (one row per cell; median, mean and standard deviation of the
   random cells; the searched cell's rank) into ``--out``.

Each finished retraining is stored under ``--out/cells/`` and reused when the command is run again, so an
interrupted comparison continues where it stopped. ``--jobs N`` runs the search and the retrainings in up to
N child processes at once (``python -m datanas_vision.compare ... --only NAME``; the random cells start while
the search runs, the searched cell when it has finished); every cell still gets the same seed and protocol,
so the table is the one a sequential run would give up to the nondeterminism of GPU kernels. Useful on a GPU
(small cells leave most of it idle) or on a machine with many cores (``--threads 1`` per job).

Example (CIFAR-10 subset from a JPEG zip, 10k training images)::

    python -m datanas_vision.compare --data imagezip --data-dir cifar10-jpeg.zip \\
        --max-per-class 1000 --test-max-per-class 200 --random 10 --out runs/compare
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.cli_options import add_dataclass_options, add_options, dataclass_from_args, print_summary
from datanas_core.entry import cli_entry
from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_vision._cli import add_data_args, data_config, load_data_from_args, set_threads, write_out
from datanas_vision.cli_config import VisionCompareConfig, VisionCompareSearch, VisionMethodOptions

if TYPE_CHECKING:
    import torch

    from datanas_vision.data import VisionData

__all__ = ["build_parser", "main", "random_genotype", "summarize"]

logger = logging.getLogger(__name__)


def random_genotype(space: Any, generator: torch.Generator) -> Genotype:
    """A uniformly random genotype of ``space`` (``darts``, ``darts_ext`` or ``nb201``).

    DARTS spaces: every intermediate node takes two distinct earlier nodes, each through a uniformly drawn
    op other than ``none`` (the random baseline of the DARTS paper). NB201: every edge gets a uniformly
    drawn op, ``none`` included (an edge drawn as ``none`` is absent).

    Raises:
        ConfigError: a space this sampler does not know.
    """
    import torch

    cells: dict[str, CellGenotype] = {}
    if space.name in ("darts", "darts_ext"):
        for ct, spec in space.cells().items():
            ops = [o for o in spec.ops if o != "none"]
            edges = []
            for node in spec.nodes:
                srcs = torch.randperm(node, generator=generator)[:2].tolist()
                for src in sorted(srcs):
                    op = ops[int(torch.randint(len(ops), (1,), generator=generator))]
                    edges.append(EdgeChoice(int(src), node, op))
            cells[ct] = CellGenotype(tuple(edges), spec.concat)
    elif space.name == "nb201":
        for ct, spec in space.cells().items():
            edges = []
            for src, dst in spec.edges:
                op = spec.ops[int(torch.randint(len(spec.ops), (1,), generator=generator))]
                if op != "none":
                    edges.append(EdgeChoice(src, dst, op))
            cells[ct] = CellGenotype(tuple(edges), spec.concat)
    else:
        raise ConfigError(f"no random sampler for space {space.name!r}; valid: darts, darts_ext, nb201")
    genotype = Genotype(space.name, cells)
    space.validate(genotype)
    return genotype


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of the random cells' top-1 and how the searched cell ranks among all cells."""
    searched = [r for r in rows if r["kind"] == "searched"]
    random_acc = [r["top1"] for r in rows if r["kind"] == "random"]
    out: dict[str, Any] = {"num_random": len(random_acc)}
    if random_acc:
        out.update(
            random_median=statistics.median(random_acc),
            random_mean=statistics.fmean(random_acc),
            random_std=statistics.stdev(random_acc) if len(random_acc) > 1 else 0.0,
            random_min=min(random_acc),
            random_max=max(random_acc),
        )
    if searched:
        acc = searched[0]["top1"]
        out["searched_top1"] = acc
        if random_acc:
            # accuracies are float32 fractions of the test set: compare at 1e-6, so a tie is not a win
            def gt(a: float, b: float) -> bool:
                return round(a - b, 6) > 0

            out["searched_minus_median"] = acc - out["random_median"]
            out["beats_random_median"] = gt(acc, out["random_median"])
            out["searched_rank"] = 1 + sum(gt(a, acc) for a in random_acc)  # 1 = best of all cells
            out["random_better_than_searched"] = sum(gt(a, acc) for a in random_acc)
    return out


def to_markdown(rows: Sequence[dict[str, Any]], summary: dict[str, Any], header: str) -> str:
    bench = any("benchmark" in r for r in rows)
    lines = [
        header,
        "",
        "| cell | kind | params (M) | test top-1 (%) | train time (s) |"
        + (" NB201 CIFAR-10 (rank) |" if bench else ""),
        "|---|---|---|---|---|" + ("---|" if bench else ""),
    ]
    for r in sorted(rows, key=lambda r: (r["kind"] != "searched", -r["top1"])):
        line = (
            f"| {r['name']} | {r['kind']} | {r['params'] / 1e6:.3f} | {r['top1'] * 100:.2f} "
            f"| {r['seconds']:.0f} |"
        )
        if bench:
            b = r.get("benchmark") or {}
            line += f" {b['cifar10']:.2f} ({b['cifar10_rank']}) |" if "cifar10" in b else " not in table |"
        lines.append(line)
    lines.append("")
    if "random_median" in summary:
        lines.append(
            f"Random cells (n={summary['num_random']}): median {summary['random_median'] * 100:.2f} %, "
            f"mean {summary['random_mean'] * 100:.2f} % (std {summary['random_std'] * 100:.2f}), "
            f"range {summary['random_min'] * 100:.2f}-{summary['random_max'] * 100:.2f} %."
        )
    if "searched_top1" in summary and "random_median" in summary:
        verdict = "beats" if summary["beats_random_median"] else "does not beat"
        if not summary["beats_random_median"] and abs(summary["searched_minus_median"]) < 1e-6:
            verdict = "ties"
        lines.append(
            f"Searched cell: {summary['searched_top1'] * 100:.2f} % ({verdict} the random median by "
            f"{summary['searched_minus_median'] * 100:+.2f} points; rank {summary['searched_rank']} of "
            f"{summary['num_random'] + 1})."
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m datanas_vision.compare`` (built on demand)."""
    from datanas_core.runtime import add_runtime_args
    from datanas_vision.retrain_config import RetrainConfig

    p = cli_options.new_parser(
        "python -m datanas_vision.compare",
        "Searched cell vs random cells of the same space at equal retraining budget (datanas).",
    )
    add_data_args(p)
    add_dataclass_options(p, VisionCompareConfig, ["space", "random"])
    add_options(
        p,
        ["--genotype"],
        help={
            "--genotype": "use this searched genotype (JSON file, run directory, bundled name or NB201 string) "
            "instead of searching"
        },
    )
    s = p.add_argument_group("search (skipped with --genotype)")
    add_dataclass_options(s, VisionCompareSearch)
    add_options(
        s,
        [
            "--preset",
            "--estimator",
            "--samples",
            "--executor",
            "--reg",
            "--a-lr",
            "--w-lr",
            "--arch-warmup-epochs",
        ],
        defaults={"--estimator": "egs", "--samples": 4},
        help={
            "--preset": "method preset of the search (see datanas_vision.search)",
            "--samples": "EGS samples M (4: the setting that beat random cells, see README)",
            "--reg": "regularizer spec of the search (see datanas_vision.search)",
            "--a-lr": "architecture learning rate of the search (default: the search CLI's budget-aware lr, "
            "--arch-travel 24 over the architecture steps; DATA's 3e-4 barely moves the distribution in a short "
            "search)",
            "--w-lr": "supernet weight learning rate (default: the search CLI's, 0.1 without --preset)",
            "--arch-warmup-epochs": "search epochs before the architecture is updated",
        },
    )
    add_options(s, ["--rule"], help={"--rule": "derivation rule of the search (default: the space's)"})
    # --weight-sampling, the schedule flags, --progressive-decisions, --precision, --compile: the search CLI's
    # shared declaration, passed on to the search
    add_options(
        s,
        cli_options.SEARCH_CONFIG_OPTIONS,
        help={
            name: f"applies to the search (skipped with --genotype): {cli_options.SHARED_OPTIONS[name].help}"
            for name in cli_options.SEARCH_CONFIG_OPTIONS
        },
    )
    add_dataclass_options(
        s,
        VisionMethodOptions,
        VisionMethodOptions.REPEATED,
        actions={name: "append" for name in VisionMethodOptions.REPEATED},
        metavars={name: "KEY=VALUE" for name in VisionMethodOptions.REPEATED},
    )
    t = p.add_argument_group("retraining (the same for every cell)")
    add_dataclass_options(t, VisionCompareConfig, ["train_epochs"])
    add_dataclass_options(
        t,
        RetrainConfig,
        ["C", "layers", "batch_size", "lr", "cutout", "drop_path", "auxiliary"],
        defaults={"C": 8, "layers": 5},
        help={"C": "retraining width", "layers": "retraining cells (NB201: cells per stage)"},
    )
    add_options(p, ["--threads"], help={"--threads": "CPU threads for torch (default: torch's)"})
    add_dataclass_options(p, VisionCompareConfig, ["jobs", "benchmark"], metavars={"benchmark": "PATH"})
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # child process: one task, no summary
    add_runtime_args(
        p,
        ["out", "seed", "device", "verbose"],
        required=["out"],
        help={
            "out": "output directory (re-running continues it)",
            "seed": "seed of the search, the random cells and retraining",
            "device": "torch device (default: cuda if available, else cpu)",
            "verbose": "more log output",
        },
    )
    return p


def _search_config_argv(args: argparse.Namespace) -> list[str]:
    """The shared search options given to compare (:data:`~datanas_core.cli_options.SEARCH_CONFIG_OPTIONS`:
    ``--weight-sampling``, ``--schedule-unit``, ``--arch-travel``, ``--progressive-decisions``, ``--precision``,
    ...) as flags of the search; none when not given (the search then takes the preset's, its own or
    SearchConfig's value)."""
    argv: list[str] = []
    for name in cli_options.SEARCH_CONFIG_OPTIONS:
        value = getattr(args, cli_options.SHARED_OPTIONS[name].dest, None)
        if value is not None:
            argv += [name, *(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))]
    return argv


def _search(args: argparse.Namespace, data: VisionData, out: Path, device: torch.device) -> Genotype:
    """Run (or reuse) the search in ``out/search``."""
    from datanas_core.io import atomic_write_text
    from datanas_vision import search as search_cli

    run_dir = out / "search"
    if (run_dir / "genotype.json").is_file():
        logger.info("reusing the search in %s", run_dir)
        return Genotype.load(run_dir / "genotype.json")
    argv = [
        "--data", args.data,
        "--epochs", str(args.search_epochs),
        "--C", str(args.search_C),
        "--layers", str(args.search_layers),
        "--batch-size", str(args.search_batch_size),
        "--space", args.space,
        "--estimator", args.estimator,
        "--seed", str(args.seed if args.search_seed is None else args.search_seed),
        "--out", str(run_dir),
        "--no-progress",
        "--no-report",
    ]  # fmt: skip
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    for flag, value in (
        ("--max-per-class", args.max_per_class),
        ("--test-max-per-class", args.test_max_per_class),
        ("--image-size", args.image_size),
        ("--samples", args.samples if args.estimator in ("egs", "gumbel") else None),
        ("--executor", args.executor),
        ("--a-lr", args.a_lr),
        ("--w-lr", args.w_lr),
        ("--threads", args.threads),
        ("--device", str(device)),
        ("--preset", args.preset),
        ("--arch-warmup-epochs", args.arch_warmup_epochs),
        ("--rule", args.rule),
        ("--train-fraction", args.search_train_fraction),
        ("--benchmark", args.benchmark),
    ):
        if value is not None:
            argv += [flag, str(value)]
    argv += _search_config_argv(args)
    for r in args.reg or ():
        argv += ["--reg", r]
    for kv in args.estimator_option or ():
        argv += ["--estimator-option", kv]
    for kv in args.rule_option or ():
        argv += ["--rule-option", kv]
    if run_dir.exists():
        argv = ["--resume", str(run_dir), *[a for a in argv if a not in ("--out", str(run_dir))]]
    t0 = time.time()
    status = search_cli.main(argv)
    if status != 0 or not (run_dir / "genotype.json").is_file():
        raise ConfigError(f"the search in {run_dir} failed (exit status {status}); see the log above")
    logger.info("search finished in %.0f s", time.time() - t0)
    atomic_write_text(run_dir / "search_seconds.txt", f"{time.time() - t0:.1f}\n")
    return Genotype.load(run_dir / "genotype.json")


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison CLI; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the child processes of --jobs get the same options
    return cli_options.run_logged(_run, args)


def _child_argv(argv: Sequence[str], only: str) -> list[str]:
    """The parent's arguments without ``--jobs``/``--only``, plus ``--jobs 1 --only ONLY``."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--jobs", "--only"):
            skip = True
            continue
        if a.startswith(("--jobs=", "--only=")):
            continue
        out.append(a)
    return [*out, "--jobs", "1", "--only", only]


def _run_children(args: argparse.Namespace, out: Path, names: list[str], need_search: bool) -> None:
    """Run the search (when ``need_search``) and the retraining of ``names`` in up to ``--jobs`` processes.

    The searched cell waits for the search; everything else starts in order as slots free up.

    Raises:
        DataNASError: a child process failed (its log file is named).
    """
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pending = (["search"] if need_search else []) + [n for n in names if n != "searched"]
    if "searched" in names:
        pending.insert(1 if need_search else 0, "searched")
    done: set[str] = set()
    running: list[tuple[str, subprocess.Popen[bytes], Any]] = []
    failed: list[str] = []
    while pending or running:
        for name in list(pending):
            if len(running) >= args.jobs:
                break
            if name == "searched" and need_search and "search" not in done:
                continue
            pending.remove(name)
            log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed when the child ends
            cmd = [sys.executable, "-m", "datanas_vision.compare", *_child_argv(args.argv, name)]
            logger.info("starting %s (log: %s)", name, log_dir / f"{name}.log")
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(0.5)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            if proc.returncode == 0:
                done.add(name)
                logger.info("%s finished", name)
            else:
                failed.append(name)
                logger.error("%s failed (exit %d); see %s", name, proc.returncode, log_dir / f"{name}.log")
                if name == "search":
                    pending = [n for n in pending if n != "searched"]
    if failed:
        raise ConfigError(
            f"{len(failed)} child process(es) failed: {', '.join(failed)}; logs in {log_dir} "
            "(re-running the command keeps the finished cells)"
        )


def _run(args: argparse.Namespace) -> int:
    import torch

    from datanas_core.io import atomic_write_text
    from datanas_vision.data import materialize
    from datanas_vision.models import resolve_genotype
    from datanas_vision.retrain import RetrainConfig, retrain

    dataclass_from_args(VisionCompareConfig, args)  # refuses --random -1, --jobs 0, ...
    dataclass_from_args(VisionCompareSearch, args)
    device = cli_options.torch_device(args.device)
    out: Path = args.out
    table = None
    if args.benchmark is not None:
        if args.space != "nb201":
            raise ConfigError(f"--benchmark scores NAS-Bench-201 cells; use --space nb201, not {args.space}")
        from datanas_core.benchmarks import load_benchmark

        table = load_benchmark(args.benchmark)
    from datanas_core.runtime.rundir import prepare_run_dir

    prepare_run_dir(out)  # one-line error for a file or a read-only path
    t_start = time.time()
    data = load_data_from_args(args)
    set_threads(args.threads, data.image_size, device)
    t0 = time.time()
    data.train, data.test = materialize(data.train), materialize(data.test)
    logger.info(
        "data: %d training / %d test images decoded into memory in %.0f s",
        len(data.train),  # type: ignore[arg-type]
        len(data.test),  # type: ignore[arg-type]
        time.time() - t0,
    )
    from datanas_vision.search import _space

    space = _space(args.space)
    names = ["searched"] + [f"random_{i:02d}" for i in range(args.random)]
    if args.only is not None and args.only not in ("search", *names):
        raise ConfigError(f"--only {args.only!r}: valid: search, {', '.join(names)}")
    config = dataclass_from_args(RetrainConfig, args, epochs=args.train_epochs)  # its flags; the rest default
    cell_dir = out / "cells"
    cell_dir.mkdir(exist_ok=True)

    def cached(name: str, genotype: Genotype) -> dict[str, Any] | None:
        path = cell_dir / f"{name}.json"
        if not path.is_file():
            return None
        row = json.loads(path.read_text(encoding="utf-8"))
        same = row.get("genotype") == genotype.to_dict() and row.get("config") == config.to_dict()
        return row if same else None

    gen = torch.Generator().manual_seed(args.seed + 1_000_003)
    randoms = [(f"random_{i:02d}", "random", random_genotype(space, gen)) for i in range(args.random)]
    if args.jobs > 1 and args.only is None:
        known = resolve_genotype(args.genotype) if args.genotype else None
        if known is None and (out / "search" / "genotype.json").is_file():
            known = Genotype.load(out / "search" / "genotype.json")
        unfinished = [n for n, _, g in randoms if cached(n, g) is None]
        if known is None or cached("searched", known) is None:
            unfinished.insert(0, "searched")
        _run_children(args, out, unfinished, need_search=known is None)
    if args.only is not None and args.only.startswith("random_"):
        searched = None  # a random cell's child process does not need the search
    else:
        searched = resolve_genotype(args.genotype) if args.genotype else _search(args, data, out, device)
    if args.only == "search":
        return 0
    timing = out / "search" / "search_seconds.txt"  # written by the (possibly child) process that searched
    search_seconds = float(timing.read_text()) if args.genotype is None and timing.is_file() else None
    cells = ([("searched", "searched", searched)] if searched is not None else []) + randoms
    if args.only is not None:
        cells = [c for c in cells if c[0] == args.only]
    rows: list[dict[str, Any]] = []
    for idx, (name, kind, genotype) in enumerate(cells):
        path = cell_dir / f"{name}.json"
        row = cached(name, genotype)
        if row is not None:
            logger.info("[%d/%d] %s: reusing %.2f %%", idx + 1, len(cells), name, row["top1"] * 100)
            rows.append(row)
            continue
        logger.info("[%d/%d] retraining %s", idx + 1, len(cells), name)
        res = retrain(genotype, data, config, device=device)
        row = {
            "name": name,
            "kind": kind,
            "top1": res["test"]["top1"],
            "top5": res["test"]["top5"],
            "params": res["params"],
            "seconds": res["seconds"],
            "final_train_acc": res["history"][-1]["train_acc"],
            "genotype": genotype.to_dict(),
            "config": config.to_dict(),
        }
        atomic_write_text(path, json.dumps(row, indent=2, sort_keys=True) + "\n")
        logger.info("[%d/%d] %s: test top-1 %.2f %%", idx + 1, len(cells), name, row["top1"] * 100)
        rows.append(row)
    if args.only is not None:
        return 0
    if table is not None:
        for r in rows:
            r["benchmark"] = table.score(Genotype.from_dict(r["genotype"])).to_record()
    summary = summarize(rows)
    header = (
        f"# Searched vs random cells ({args.space} space, {args.data}: {len(data.train)} train / "  # type: ignore[arg-type]
        f"{len(data.test)} test images; retraining C={args.C}, layers={args.layers}, "  # type: ignore[arg-type]
        f"{args.train_epochs} epochs, seed {args.seed}; torch threads {torch.get_num_threads()})"
    )
    doc = {
        "summary": summary,
        "rows": [{k: v for k, v in r.items() if k != "config"} for r in rows],
        "retrain_config": config.to_dict(),
        "data": data_config(args, data),
        "search_seconds": search_seconds,
        "total_seconds": time.time() - t_start,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    atomic_write_text(out / "compare.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    text = to_markdown(rows, summary, header)
    atomic_write_text(out / "compare.md", text)
    write_out(text)
    searched = next((r for r in rows if r["kind"] == "searched"), None)
    print_summary(
        "vision compare",
        run_dir=out,
        genotype=Genotype.from_dict(searched["genotype"]) if searched else None,
        metrics={k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        warnings=[]
        if summary.get("beats_random_median", True)
        else ["the searched cell does not beat the random median"],
        extra={"table": out / "compare.md"},
    )
    from datanas_core.runtime import record_retraining

    record_retraining(
        args.genotype or out / "search",
        f"compare ({args.data}, {summary['num_random']} random cells)",
        {k: v for k, v in summary.items() if isinstance(v, (int, float))},
        source=out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
