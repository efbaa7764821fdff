"""Compare a searched cell with random cells and an LSTM at the same budget: ``python -m datanas_lm.compare``.

Trains, one after another and with the same data order, initial seed and budget (``--size`` sizes,
epochs and tokens per epoch): the given cell (``--genotype``), ``--random N`` uniformly random cells of the
space (one predecessor and one activation per node, drawn from seeds ``1..N``) and, with ``--lstm``, a
same-size ``torch.nn.LSTM``. Each model gets a run directory under ``--out``; ``comparison.json`` and
``comparison.md`` hold the table of validation/test perplexities with the median of the random cells.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.errors import NumericalError
from datanas_core.genotype import Genotype
from datanas_lm.cli_config import TRAIN_SIZES, LMCompareOptions, LMTrainSettings, resolve_settings

if TYPE_CHECKING:
    pass

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from datanas_core.runtime import add_runtime_args
    from datanas_lm.search import TRAIN_FLAGS, add_data_args, add_model_args, add_settings_args, add_size_arg

    parser = cli_options.new_parser(
        "python -m datanas_lm.compare",
        "Train a searched recurrent cell, random cells and an LSTM at the same budget.",
    )
    cli_options.add_options(
        parser,
        ["--genotype"],
        required=["--genotype"],
        help={"--genotype": "the cell to evaluate (bundled name, JSON path or search run directory)"},
    )
    cli_options.add_dataclass_options(parser, LMCompareOptions, ["random", "lstm"])
    add_data_args(parser)
    add_size_arg(parser)
    add_model_args(parser)
    add_settings_args(parser, LMTrainSettings, TRAIN_FLAGS, "optimisation (defaults from --size)")
    cli_options.add_dataclass_options(parser, LMCompareOptions, ["jobs"])
    add_runtime_args(
        parser,
        ["seed", "out", "device", "verbose"],
        help={
            "seed": "training seed shared by every model",
            "out": "output directory, one run directory per model",
            "device": "torch device (default: cpu)",
        },
        defaults={"out": Path("runs/lm-compare")},
    )
    return parser


def _markdown(
    rows: list[dict[str, Any]], median: dict[str, float | None] | None, settings: LMTrainSettings
) -> str:
    lines = [
        "| model | cell | params | valid ppl | test ppl | train time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['cell']} | {r['params']:,} | {_ppl(r['val_ppl'])} | {_ppl(r['test_ppl'])} | "
            f"{r['time_s']:.0f} |"
        )
    if median is not None:
        lines.append(
            f"| median of random cells | | | {_ppl(median['val_ppl'])} | {_ppl(median['test_ppl'])} | |"
        )
    budget = (
        f"Budget per model: {settings.epochs} epochs x "
        f"{settings.train_tokens or 'all'} training tokens, embedding = hidden = {settings.emsize}, "
        f"batch {settings.batch_size}, BPTT {settings.bptt}."
    )
    return "\n".join(lines) + "\n\n" + budget + "\n"


def _median_random(rand: list[dict[str, Any]]) -> dict[str, float | None] | None:
    """Median perplexities of the random cells, a diverged cell counting as the worst (``None`` where the
    median itself is a diverged cell)."""
    if not rand:
        return None
    out: dict[str, float | None] = {}
    for k in ("val_ppl", "test_ppl"):
        m = statistics.median(math.inf if r[k] is None else r[k] for r in rand)
        out[k] = m if math.isfinite(m) else None
    return out


def _summary_metrics(
    searched: dict[str, Any] | None, median: dict[str, float | None] | None
) -> dict[str, Any]:
    """The searched cell's and the random median's perplexities (a diverged one as ``searched_diverged``)."""
    out: dict[str, Any] = {}
    if searched is not None:
        if searched.get("diverged"):
            out["searched_diverged"] = True
        out.update({f"searched_{k}": searched[k] for k in ("val_ppl", "test_ppl") if searched[k] is not None})
    out.update({f"random_median_{k}": v for k, v in (median or {}).items() if v is not None})
    return out


def _ppl(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.2f}"


def _cell_text(genotype: Any) -> str:
    cell = genotype.cells["recurrent"]
    return " ".join(
        f"{e.dst}<-{e.op}({e.src})" for e in sorted(cell.edges, key=lambda e: (e.dst, e.src, e.op))
    )


def _train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model of the comparison (runs in the main process or in a worker process)."""
    import torch

    from datanas_core.runtime import configure_logging, seed_everything
    from datanas_lm.data import load_corpus
    from datanas_lm.train import build_model

    if job["threads"] is not None:
        torch.set_num_threads(int(job["threads"]))
    if job["worker"]:
        configure_logging(job["verbose"])
    corpus = job["corpus"] if job.get("corpus") is not None else load_corpus(job["data"], job["data_dir"])
    genotype = Genotype.from_dict(job["genotype"]) if job["genotype"] is not None else None
    settings = job["settings"]
    seed_everything(job["seed"])
    model = build_model(job["kind"], genotype, len(corpus.vocab), settings).to(job["device"])
    t0 = time.time()
    cell = "LSTM" if genotype is None else _cell_text(genotype)
    try:
        scores = _train(job, model, corpus, genotype, settings)
    except NumericalError as exc:
        # a model whose training diverges is a result of the comparison (the worst one), not the end of it
        logger.warning("%s diverged: %s", job["name"], exc)
        return {
            "name": job["name"],
            "cell": cell,
            "params": sum(p.numel() for p in model.parameters()),
            "val_ppl": None,
            "test_ppl": None,
            "diverged": str(exc),
            "time_s": time.time() - t0,
        }
    row = {
        "name": job["name"],
        "cell": cell,
        "params": scores["params"],
        "val_ppl": scores["val_ppl"],
        "test_ppl": scores["test_ppl"],
        "time_s": time.time() - t0,
    }
    logger.info("%s: valid ppl %.2f, test ppl %.2f", job["name"], row["val_ppl"], row["test_ppl"])
    return row


def _train(job: dict[str, Any], model: Any, corpus: Any, genotype: Any, settings: Any) -> dict[str, Any]:
    """Train ``model`` for the comparison; raises :class:`NumericalError` if its loss diverges."""
    from datanas_lm.search import data_files, run_settings
    from datanas_lm.train import run_training, train_config

    return run_training(
        model,
        corpus,
        train_config(settings, job["seed"]),
        run_dir=job["out"],
        genotype=genotype,
        run_config={
            "model": job["kind"],
            "name": job["name"],
            "settings": run_settings(settings),
            "data": job["data"],
        },
        data_files=data_files(job["data"], Path(job["data_dir"])),
        log_every=10**9,
    )


def _run(args: argparse.Namespace) -> int:
    """The comparison of the parsed options."""
    from datanas_lm.search import apply_threads, load_data, run_settings
    from datanas_lm.train import resolve_genotype

    options = cli_options.dataclass_from_args(LMCompareOptions, args)
    settings = resolve_settings(TRAIN_SIZES, args.preset, args)
    threads = settings.threads
    apply_threads(settings)
    device = args.device or "cpu"
    corpus, data_dir = load_data(args)
    models: list[tuple[str, str, Any]] = [("searched", "cell", resolve_genotype(args.genotype, args.seed))]
    models += [(f"random_{k}", "cell", resolve_genotype("random", k)) for k in range(1, options.random + 1)]
    if options.lstm:
        models.append(("lstm", "lstm", None))
    jobs = [
        {
            "name": name,
            "kind": kind,
            "genotype": None if g is None else g.to_dict(),
            "settings": settings,
            "seed": args.seed,
            "data": args.data,
            "data_dir": str(data_dir),
            "device": device,
            "out": str(args.out / name),
            "threads": threads,
            "verbose": args.verbose,
            "worker": options.jobs > 1,
            "corpus": corpus if options.jobs == 1 else None,
        }
        for name, kind, g in models
    ]
    if options.jobs == 1:
        rows = [_train_one(job) for job in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=options.jobs, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(_train_one, jobs))
    rand = [r for r in rows if r["name"].startswith("random_")]
    median = _median_random(rand)
    doc = {"rows": rows, "median_random": median, "settings": run_settings(settings), "seed": args.seed}
    from datanas_core.runtime.rundir import prepare_run_dir

    prepare_run_dir(args.out)  # one-line error for a file or a read-only path
    (args.out / "comparison.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md = _markdown(rows, median, settings)
    (args.out / "comparison.md").write_text(md, encoding="utf-8")
    sys.stdout.write(md)
    searched = next((r for r in rows if r["name"] == "searched"), None)
    metrics = _summary_metrics(searched, median)
    diverged = [r["name"] for r in rows if r.get("diverged")]
    cli_options.print_summary(
        "lm compare",
        run_dir=args.out,
        genotype=args.genotype,
        metrics=metrics,
        extra={
            "table": args.out / "comparison.md",
            **({"diverged": ", ".join(diverged)} if diverged else {}),
        },
    )
    if searched is not None and args.genotype:
        from datanas_core.runtime import record_retraining

        record_retraining(
            args.genotype,
            f"compare ({args.data}, {len(rand)} random cells)",
            {**metrics, "num_random": len(rand)},
            source=args.out,
        )
    return 0


#: ``main(argv=None) -> int``: parse (``--config``/``--resume`` where offered), run, one-line errors.
main = cli_options.command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
