#!/usr/bin/env python
"""NB201 / CIFAR-10 search study: an estimator x setting grid, several seeds, scored with benchmark mode.

Every search runs ``python -m datanas_vision.search`` on the NAS-Bench-201 space with one CPU thread, at the
budget below (the defaults are the CPU budget of issue #16), and its derived cell is scored against the
published NAS-Bench-201 200-epoch CIFAR-10 test accuracies (``--benchmark``). The study writes
``results.md`` and ``results.json`` to ``--out`` (default ``docs/results/nb201-study``).

The NB201 results table is not part of the repository: pass a CSV export with the columns
``ArchitectureString`` and ``CIFAR10TestAccuracy200Epochs`` (see docs/results/nb201-study/README.md for where
to get one) or an official NATS-Bench / NAS-Bench-201 file (needs ``nats_bench`` / ``nas_201_api``).

Runs are resumable: a finished run (``summary.json`` with status completed) is not run again, so the same
command continues an interrupted study; ``--summarize`` only rebuilds the tables from the finished runs.

Examples::

    python tools/study_nb201.py --table ~/nb201/nats_bench.csv --list
    python tools/study_nb201.py --table ~/nb201/nats_bench.csv --settings egs_m4,darts --seeds 0,1,2
    python tools/study_nb201.py --table ~/nb201/nats_bench.csv --summarize
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"

#: The settings of the grid: name -> (estimator, description, flags of datanas_vision.search).
#: Settings without ``--preset`` spell out every option the vision CLI's no-preset defaults would otherwise set
#: (``datanas_vision.search.DEFAULT_METHOD``: w_lr, schedule unit, architecture-lr schedule), so a setting
#: keeps its meaning when those defaults change.
#: The executor and the derivation rule are always explicit: EGS, DARTS and DrNAS run the exact mixed edge
#: (DATA's straight-through gradient for EGS), GDAS its sparse one (only the sampled op runs, as in AutoDL's
#: GDAS); every setting derives one op per NB201 edge (``argmax_edge``, NB201's rule).
SETTINGS: dict[str, tuple[str, str, list[str]]] = {
    "egs_m4": (
        "EGS (DATA)",
        "M=4, a_lr 3e-3, 3 warm-up epochs, ADC 0.1 (the core README's short-search advice)",
        "--estimator egs --samples 4 --a-lr 3e-3 --arch-warmup-epochs 3 --reg adc:0.1 --executor exact "
        "--w-lr 0.025 --schedule-unit epoch --a-lr-schedule const:1".split(),
    ),
    "egs_m4_decide": (
        "EGS (DATA)",
        "EGS M=4, a_lr 3e-3 under a cosine decay per architecture step, w_lr 0.1, 3 warm-up epochs, ADC 0.1, "
        "progressive edge decisions between 10 % and 70 % of the architecture steps (the cell is final for "
        "the last 30 %); the configuration of --preset data_decide before 2026-12-07 (now decisions 30-70 %)",
        "--estimator egs --samples 4 --a-lr 3e-3 --arch-warmup-epochs 3 --reg adc:0.1 --executor exact "
        "--progressive-decisions 0.1 0.7 --w-lr 0.1 --schedule-unit step --a-lr-schedule cosine:1:0".split(),
    ),
    "egs_m4_uniform": (
        "EGS (DATA)",
        "egs_m4 + uniform (fair) path sampling for the weight step",
        "--estimator egs --samples 4 --a-lr 3e-3 --arch-warmup-epochs 3 --reg adc:0.1 --executor exact "
        "--weight-sampling uniform --w-lr 0.025 --schedule-unit epoch --a-lr-schedule const:1".split(),
    ),
    "egs_m4_travel": (
        "EGS (DATA)",
        "egs_m4 with the budget-aware architecture lr of data_short (arch_travel 24 over the architecture "
        "steps, cosine decay, per-step schedules) and distribution weight sampling",
        "--estimator egs --samples 4 --schedule-unit step --arch-travel 24 --a-lr-schedule cosine:1:0 "
        "--arch-warmup-epochs 3 --reg adc:0.1 --executor exact --w-lr 0.025".split(),
    ),
    "egs_m4_t8": (
        "EGS (DATA)",
        "egs_m4 with a shorter budget-aware travel (arch_travel 8 over the architecture steps, cosine decay)",
        "--estimator egs --samples 4 --schedule-unit step --arch-travel 8 --a-lr-schedule cosine:1:0 "
        "--arch-warmup-epochs 3 --reg adc:0.1 --executor exact --w-lr 0.025".split(),
    ),
    "egs_m4_t8_w5": (
        "EGS (DATA)",
        "egs_m4_t8 with 5 weights-only warm-up epochs (decisions start on a better-trained supernet)",
        "--estimator egs --samples 4 --schedule-unit step --arch-travel 8 --a-lr-schedule cosine:1:0 "
        "--arch-warmup-epochs 5 --reg adc:0.1 --executor exact --w-lr 0.025".split(),
    ),
    "egs_m4_t12_ramp": (
        "EGS (DATA)",
        "travel 12 with the architecture lr ramped over the first 40 % of architecture steps, then cosine",
        "--estimator egs --samples 4 --schedule-unit step --arch-travel 12 --a-lr-warmup 0.4 "
        "--a-lr-schedule cosine:1:0 --arch-warmup-epochs 3 --reg adc:0.1 --executor exact --w-lr 0.025".split(),
    ),
    "data_short": (
        "EGS (DATA)",
        "--preset data_short (per-step schedules, budget-aware a_lr, uniform weight sampling)",
        "--preset data_short --executor exact".split(),
    ),
    "data_decide": (
        "EGS (DATA)",
        "--preset data_decide (EGS M=4, 3 weights-only epochs, arch lr 0.84 / arch steps under a cosine decay, "
        "progressive edge decisions between 30 % and 70 % of the architecture steps)",
        "--preset data_decide --executor exact".split(),
    ),
    "data_decide_30_80": (
        "EGS (DATA)",
        "--preset data_decide with progressive edge decisions between 30 % and 80 % of the architecture steps "
        "(the last decision falls in the ninth of 10 epochs)",
        "--preset data_decide --progressive-decisions 0.3 0.8 --executor exact".split(),
    ),
    "data_decide_10_70": (
        "EGS (DATA)",
        "--preset data_decide with its first window, decisions between 10 % and 70 % of the architecture steps",
        "--preset data_decide --progressive-decisions 0.1 0.7 --executor exact".split(),
    ),
    "data_decide_10_70_w5": (
        "EGS (DATA)",
        "data_decide_10_70 with 5 weights-only epochs instead of 3",
        "--preset data_decide --progressive-decisions 0.1 0.7 --arch-warmup-epochs 5 --executor exact".split(),
    ),
    "data_decide_10_70_fix": (
        "EGS (DATA)",
        "data_decide_10_70 with the measured decision criterion 'fix' (8 held-out batches x 2 samples)",
        "--preset data_decide --progressive-decisions 0.1 0.7 --decision-criterion fix --executor exact".split(),
    ),
    "data_short_decide": (
        "EGS (DATA)",
        "--preset data_short + progressive edge decisions between 10 % and 50 % of the architecture steps",
        "--preset data_short --progressive-decisions 0.1 0.5 --executor exact".split(),
    ),
    "data_m4": (
        "EGS (DATA)",
        "--preset data_m4 (published recipe, M=4, a_lr as published)",
        "--preset data_m4 --executor exact".split(),
    ),
    "darts": (
        "DARTS",
        "--preset darts (first order, a_lr 3e-4 as published)",
        "--preset darts --executor exact".split(),
    ),
    "darts_lr3e-3": (
        "DARTS",
        "--preset darts with a_lr 3e-3",
        "--preset darts --a-lr 3e-3 --executor exact".split(),
    ),
    "gdas": (
        "GDAS",
        "--preset gdas (tau 10 -> 0.1, sparse executor as in AutoDL)",
        "--preset gdas --executor sparse".split(),
    ),
    "gdas_w3": (
        "GDAS",
        "--preset gdas with 3 weights-only warm-up epochs (not in the published recipe)",
        "--preset gdas --arch-warmup-epochs 3 --executor sparse".split(),
    ),
    "gdas_w3_travel": (
        "GDAS",
        "gdas_w3 with the budget-aware architecture lr (arch_travel 24 over the architecture steps, cosine)",
        "--preset gdas --arch-warmup-epochs 3 --schedule-unit step --arch-travel 24 --a-lr-schedule cosine:1:0 "
        "--executor sparse".split(),
    ),
    "gdas_w3_decide": (
        "GDAS",
        "gdas_w3 + progressive edge decisions between 10 % and 70 % of the architecture steps",
        "--preset gdas --arch-warmup-epochs 3 --progressive-decisions 0.1 0.7 --executor sparse".split(),
    ),
    "gdas_w3_decide_30_70": (
        "GDAS",
        "gdas_w3 + progressive edge decisions between 30 % and 70 % of the architecture steps (data_decide's "
        "window since 2026-12-07)",
        "--preset gdas --arch-warmup-epochs 3 --progressive-decisions 0.3 0.7 --executor sparse".split(),
    ),
    "gdas_decide_early": (
        "GDAS",
        "--preset gdas (no warm-up) + progressive edge decisions between 2 % and 30 % of the architecture steps "
        "(decide before the drift to parameter-free ops)",
        "--preset gdas --progressive-decisions 0.02 0.3 --executor sparse".split(),
    ),
    "gdas_uniform": (
        "GDAS",
        "--preset gdas with uniform (fair) path sampling in the weight step",
        "--preset gdas --weight-sampling uniform --executor sparse".split(),
    ),
    "gdas_w3_uniform": (
        "GDAS",
        "gdas_w3 with uniform (fair) path sampling in the weight step",
        "--preset gdas --arch-warmup-epochs 3 --weight-sampling uniform --executor sparse".split(),
    ),
    "gdas_w3_uniform_decide": (
        "GDAS",
        "gdas_w3_uniform + progressive edge decisions between 10 % and 70 % of the architecture steps",
        "--preset gdas --arch-warmup-epochs 3 --weight-sampling uniform --progressive-decisions 0.1 0.7 "
        "--executor sparse".split(),
    ),
    "drnas": (
        "DrNAS",
        "--preset drnas with 3 warm-up epochs (the preset's 10 do not fit 10 epochs)",
        "--preset drnas --arch-warmup-epochs 3 --executor exact".split(),
    ),
    "drnas_lr3e-3": (
        "DrNAS",
        "--preset drnas, a_lr 3e-3, 3 warm-up epochs",
        "--preset drnas --a-lr 3e-3 --arch-warmup-epochs 3 --executor exact".split(),
    ),
    "snas": (
        "SNAS",
        "--preset snas (single level)",
        "--preset snas --executor exact".split(),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, required=True, help="NB201 results (CSV export or official file)")
    p.add_argument("--data-zip", type=Path, default=DEFAULT_ZIP, help="CIFAR-10 as a zip of JPEG folders")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated setting names")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated search seeds")
    p.add_argument("--max-per-class", type=int, default=500, help="training images per class")
    p.add_argument("--C", type=int, default=8, help="supernet width")
    p.add_argument("--layers", type=int, default=1, help="cells per stage N")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per search")
    p.add_argument(
        "--max-cpu-minutes", type=float, default=30.0, help="kill a search after this much CPU time"
    )
    p.add_argument("--runs", type=Path, default=Path("/tmp/nb201-study/runs"), help="run directories")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "nb201-study", help="table folder")
    p.add_argument("--extra", default="", help="extra flags for every search (quoted)")
    p.add_argument("--list", action="store_true", help="print the commands and exit")
    p.add_argument("--summarize", action="store_true", help="only rebuild the tables from finished runs")
    return p


def budget(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data": f"CIFAR-10 ({args.data_zip.name}), {args.max_per_class} training images per class, "
        "half for the weights and half for the architecture",
        "supernet": f"NB201, C={args.C}, N={args.layers}",
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": args.threads,
        "max_cpu_minutes": args.max_cpu_minutes,
    }


def command(args: argparse.Namespace, setting: str, seed: int, run_dir: Path) -> list[str]:
    flags = SETTINGS[setting][2]
    return [
        sys.executable,
        "-m",
        "datanas_vision.search",
        "--data",
        "imagezip",
        "--data-dir",
        str(args.data_zip),
        "--max-per-class",
        str(args.max_per_class),
        "--test-max-per-class",
        "1",  # the search never reads the test split
        "--space",
        "nb201",
        "--C",
        str(args.C),
        "--layers",
        str(args.layers),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
        *flags,
        "--rule",
        "argmax_edge",
        *shlex.split(args.extra),
        "--benchmark",
        str(args.table),
        "--no-progress",
        "--seed",
        str(seed),
        "--out",
        str(run_dir),
    ]


def _done(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    except (OSError, ValueError, KeyError):
        return False


def run_one(args: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    """Run one search (unless finished) with one thread; record its CPU time in study.json."""
    run_dir = args.runs / setting / f"seed_{seed}"
    if _done(run_dir):
        return {"setting": setting, "seed": seed, "skipped": True}
    if run_dir.exists():  # an interrupted attempt: start it again
        import shutil

        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = command(args, setting, seed, run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    log = run_dir.parent / f"seed_{seed}.log"
    t0 = time.time()
    limit = args.max_cpu_minutes * 60
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        status = None
        while status is None:
            time.sleep(2)
            status = proc.poll()
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                cpu = 0.0
            if status is None and cpu > limit:
                proc.kill()
                proc.wait()
                status = "killed (CPU budget)"
    usage = _child_cpu()
    info = {
        "setting": setting,
        "seed": seed,
        "command": shlex.join(cmd),
        "returncode": status,
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(usage - run_one.cpu_before, 1),  # type: ignore[attr-defined]
        "host": platform.node(),
    }
    run_one.cpu_before = usage  # type: ignore[attr-defined]
    if run_dir.exists():
        (run_dir / "study.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _child_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


run_one.cpu_before = _child_cpu()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- summary
def _epochs(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "epoch":
            out.append(rec)
    return out


def collect(args: argparse.Namespace, table: Any) -> list[dict[str, Any]]:
    """One row per finished run: final cell, its benchmark score, entropy, stability, CPU time."""
    from datanas_core.genotype import Genotype

    rows = []
    for setting in [s for s in args.settings.split(",") if s]:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            run_dir = args.runs / setting / f"seed_{seed}"
            if not _done(run_dir):
                continue
            summary = json.loads((run_dir / "summary.json").read_text())
            epochs = _epochs(run_dir)
            score = table.score(Genotype.from_dict(summary["genotype"]))
            archs = [table.score(Genotype.from_dict(r["genotype"])).arch for r in epochs]
            # "unchanged over the last 20 % of epochs": no epoch of that window changed the cell, i.e.
            # the cells derived after the last tail+1 epochs are the same
            tail = max(1, round(0.2 * len(archs)))
            probs = epochs[-1].get("probs", {}).get("cell") or []
            top = [max(p) for p in probs]
            study = {}
            if (run_dir / "study.json").is_file():
                study = json.loads((run_dir / "study.json").read_text())
            rows.append(
                {
                    "setting": setting,
                    "seed": seed,
                    "arch": score.arch,
                    "in_table": score.in_table,
                    "cifar10": score.values.get("cifar10"),
                    "rank": score.ranks.get("cifar10"),
                    "percentile": score.percentiles.get("cifar10"),
                    "entropy": epochs[-1].get("collapse_entropy"),
                    "max_top_prob": max(top) if top else None,
                    "stable_last_20pct": len(set(archs[-tail - 1 :])) == 1,
                    "per_epoch_cifar10": [(r.get("benchmark") or {}).get("cifar10") for r in epochs],
                    "train_acc": epochs[-1].get("train_acc"),
                    "cpu_s": study.get("cpu_s"),
                    "wall_s": study.get("wall_s"),
                    "command": study.get("command"),
                }
            )
    return rows


def merge_previous(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the rows of ``--out``'s ``results.json`` whose runs are not in ``rows``.

    Run directories live outside the repository (``/tmp`` by default) and may be gone when a later session
    adds settings; the table in ``--out`` is the record. A previous row is kept only when its table was
    written at the same budget, and a fresh run of the same (setting, seed) replaces it. Previous rows keep
    their order; new (setting, seed) pairs follow.
    """
    prev_path = args.out / "results.json"
    if not prev_path.is_file():
        return rows
    prev = json.loads(prev_path.read_text())
    if prev.get("budget") != budget(args):
        return rows
    fresh = {(r["setting"], r["seed"]): r for r in rows}
    merged = [fresh.pop((r["setting"], r["seed"]), r) for r in prev.get("runs", [])]
    return merged + [r for r in rows if (r["setting"], r["seed"]) in fresh]


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def write_tables(args: argparse.Namespace, table: Any, rows: list[dict[str, Any]]) -> None:
    st = table.stats("cifar10")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    summary = []
    for setting, rs in groups.items():
        accs = [r["cifar10"] for r in rs if r["cifar10"] is not None]
        ents = [r["entropy"] for r in rs if r["entropy"] is not None]
        cpus = [r["cpu_s"] for r in rs if r["cpu_s"]]
        summary.append(
            {
                "setting": setting,
                "method": SETTINGS[setting][0] if setting in SETTINGS else "?",
                "description": SETTINGS[setting][1] if setting in SETTINGS else "",
                "seeds": [r["seed"] for r in rs],
                "mean": statistics.fmean(accs) if accs else None,
                "min": min(accs) if accs else None,
                "per_seed": accs,
                "ranks": [r["rank"] for r in rs],
                "percentiles": [r["percentile"] for r in rs],
                "entropy": ents,
                "stable": sum(bool(r["stable_last_20pct"]) for r in rs),
                "cpu_min_mean": statistics.fmean(cpus) / 60 if cpus else None,
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "budget": budget(args),
        "table": {"source": os.path.basename(str(table.source)), "cells": len(table), "cifar10": st},
        "settings": {k: {"method": v[0], "description": v[1], "flags": v[2]} for k, v in SETTINGS.items()},
        "summary": summary,
        "runs": rows,
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    b = budget(args)
    lines = [
        "# NB201 / CIFAR-10 study: results",
        "",
        f"Written by `tools/study_nb201.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Budget: {b['data']}; supernet {b['supernet']}; batch {b['batch_size']}; {b['epochs']} epochs; "
        f"{b['threads']} thread. Scores: NAS-Bench-201 200-epoch CIFAR-10 test accuracy of the derived cell "
        f"({len(table)} cells: median {st['median']:.2f}, top 10 % from {st['top10']:.2f}, top 5 % from "
        f"{st['top5']:.2f}, best {st['best']:.2f}).",
        "",
        "| setting | method | seeds | mean | min | per seed | rank (percentile) | final entropy | "
        "stable last 20 % | CPU min / search |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        ranks = ", ".join(f"{r} ({p:.1f})" for r, p in zip(s["ranks"], s["percentiles"], strict=True) if r)
        lines.append(
            f"| {s['setting']} | {s['method']} | {len(s['seeds'])} | {_fmt(s['mean'])} | {_fmt(s['min'])} | "
            f"{' / '.join(_fmt(a) for a in s['per_seed'])} | {ranks} | "
            f"{' / '.join(_fmt(e, 3) for e in s['entropy'])} | {s['stable']}/{len(s['seeds'])} | "
            f"{_fmt(s['cpu_min_mean'], 1)} |"
        )
    lines += ["", "Settings:", ""]
    for s in summary:
        lines.append(f"- `{s['setting']}`: {s['description']} (`{' '.join(SETTINGS[s['setting']][2])}`)")
    lines += ["", "Per run (derived cell, CIFAR-10 accuracy of each epoch's cell):", ""]
    lines += ["| setting | seed | cell | acc per epoch | train acc |", "|---|---|---|---|---|"]
    for r in rows:
        curve = " ".join(_fmt(a, 1) for a in r["per_epoch_cifar10"])
        arch = r["arch"].replace("|", "\\|")  # a pipe in a code span still splits a Markdown table cell
        lines.append(f"| {r['setting']} | {r['seed']} | `{arch}` | {curve} | {_fmt(r['train_acc'], 3)} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; valid: {', '.join(SETTINGS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    from datanas_core.benchmarks import load_benchmark

    table = load_benchmark(args.table)
    if args.list:
        for s in settings:
            for seed in seeds:
                print(shlex.join(command(args, s, seed, args.runs / s / f"seed_{seed}")))
        return 0
    if not args.summarize:
        if not args.data_zip.is_file():
            raise SystemExit(f"CIFAR-10 zip {args.data_zip} not found (see --data-zip)")
        for seed in seeds:  # seed-major: every setting gets its first seed before any gets a third
            for s in settings:
                info = run_one(args, s, seed)
                print(json.dumps(info), flush=True)
                write_tables(args, table, merge_previous(args, collect(args, table)))
    write_tables(args, table, merge_previous(args, collect(args, table)))
    print(f"wrote {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
