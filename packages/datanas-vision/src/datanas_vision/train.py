"""Retrain a derived architecture and evaluate it: ``python -m datanas_vision.train``.

Follows the DARTS evaluation protocol (auxiliary head 0.4, linearly ramped drop-path, cutout, cosine LR,
SGD with momentum via timm's optimizer and scheduler factories) with configurable width, depth and epochs,
then reports top-1/top-5 on the test split. Results go to ``results.json`` next to per-epoch
``metrics.jsonl``, the resolved ``config.json`` and the trained weights (``model.pth`` plus the timm
arguments that rebuild the model) in the output directory: by default ``RUN_DIR/train-<data>`` when the
genotype comes from a search run directory.

Examples::

    python -m datanas_vision.train --genotype runs/20260101-120000/genotype.json
    python -m datanas_vision.train --genotype darts_v2 --data cifar10 --data-dir ~/data \\
        --C 36 --layers 20 --epochs 600 --batch-size 96 --out runs/darts_v2_cifar
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datanas_core import cli_options
from datanas_core.cli_options import add_options, print_summary
from datanas_core.errors import ConfigError
from datanas_vision._cli import add_data_args, data_config, load_data_from_args, set_threads
from datanas_vision.cli_config import VisionTrainOptions

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m datanas_vision.train`` (built on demand)."""
    from datanas_core.runtime import add_runtime_args
    from datanas_vision.retrain_config import RetrainConfig

    p = cli_options.new_parser(
        "python -m datanas_vision.train",
        "Retrain a derived architecture from scratch and evaluate top-1 (datanas).",
    )
    add_options(p, ["--genotype"], required=["--genotype"])
    add_data_args(p)
    n = p.add_argument_group("network")
    cli_options.add_dataclass_options(
        n,
        RetrainConfig,
        ["C", "layers", "auxiliary", "auxiliary_weight", "drop_path"],
        defaults={"C": 8, "layers": 5},
        help={
            "C": "initial width (DARTS CIFAR protocol: 36)",
            "layers": "cells (DARTS CIFAR: 20); NB201: cells per stage",
            "auxiliary": "auxiliary head (default: on when the images are at least 32x32)",
        },
    )
    o = p.add_argument_group("optimisation")
    cli_options.add_dataclass_options(
        o,
        RetrainConfig,
        ["epochs", "batch_size", "lr", "min_lr", "momentum", "weight_decay", "grad_clip", "cutout"],
        defaults={"epochs": 30},
        help={
            "lr": "initial learning rate (cosine to --min-lr)",
            "min_lr": "final learning rate",
            "momentum": "SGD momentum",
            "weight_decay": "SGD weight decay",
        },
    )
    cli_options.add_dataclass_options(o, RetrainConfig, ["label_smoothing"])
    cli_options.add_dataclass_options(o, VisionTrainOptions, ["eval_every"])
    add_options(
        p,
        ["--threads"],
        help={
            "--threads": "CPU threads for torch (default: 1 for images below 32x32 on the CPU, else torch's)"
        },
    )
    add_runtime_args(
        p,
        ["out", "seed", "device", "progress", "verbose"],
        help={
            "out": "output directory (default: RUN_DIR/train-<data>)",
            "seed": "random seed (weights, data order, augmentation, drop-path masks)",
            "device": "torch device (default: cuda if available, else cpu)",
            "progress": "progress bar (default: on a terminal; one log line per epoch otherwise)",
            "verbose": "more log output",
        },
    )
    cli_options.add_dataclass_options(
        p, VisionTrainOptions, ["overwrite"], actions={"overwrite": "store_true"}
    )
    return p


def _default_out(genotype_arg: str, data: str) -> Path:
    path = Path(genotype_arg).expanduser()
    if path.is_dir():
        return path / f"train-{data}"
    if path.is_file():
        return path.parent / f"train-{data}"
    return Path("runs") / f"train-{genotype_arg}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


class _Progress:
    """tqdm over steps on a terminal, one log line per epoch otherwise."""

    def __init__(self, enabled: bool | None, epochs: int) -> None:
        self.use_bar = sys.stderr.isatty() if enabled is None else enabled
        self.epochs = epochs
        self.bar: Any = None
        if self.use_bar:
            try:
                from tqdm import tqdm
            except ImportError:
                self.use_bar = False
            else:
                self.bar = tqdm(total=None, desc="train", unit="step", dynamic_ncols=True)

    def step(self, i: int, n: int) -> None:
        if self.bar is not None:
            if self.bar.total is None:
                self.bar.total = n * self.epochs
            self.bar.update(1)

    def epoch(self, record: Mapping[str, Any]) -> None:
        msg = (
            f"epoch {record['epoch'] + 1}/{self.epochs} loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.4f} lr {record['lr']:.4g}"
        )
        if "test_top1" in record:
            msg += f" test {record['test_top1']:.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(msg.split(" ", 2)[2])
        else:
            logger.info("%s", msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(args: argparse.Namespace) -> int:
    import torch

    from datanas_core.io import atomic_write_text
    from datanas_vision.models import resolve_genotype
    from datanas_vision.retrain import RetrainConfig, retrain

    options = cli_options.dataclass_from_args(VisionTrainOptions, args)
    config = cli_options.dataclass_from_args(RetrainConfig, args)  # every field has its flag
    genotype = resolve_genotype(args.genotype)
    out = args.out or _default_out(args.genotype, args.data)
    if (out / "results.json").exists() and not options.overwrite:
        raise ConfigError(
            f"{str(out)!r} already holds results.json; pass --overwrite or choose another --out"
        )
    data = load_data_from_args(args)
    device = cli_options.torch_device(args.device)
    set_threads(args.threads, data.image_size, device)
    for note in data.notes:
        logger.info("data: %s", note)
    from datanas_core.runtime.rundir import prepare_run_dir

    prepare_run_dir(out)  # one-line error for a file or a read-only path
    run_config = {
        "genotype_arg": str(args.genotype),
        "genotype": genotype.to_dict(),
        **data_config(args, data),
        "retrain": config.to_dict(),
        "device": str(device),
    }
    atomic_write_text(out / "config.json", json.dumps(run_config, indent=2, sort_keys=True) + "\n")
    metrics = out / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    progress = _Progress(args.progress, args.epochs)

    def on_epoch(record: Mapping[str, Any]) -> None:
        progress.epoch(record)
        with metrics.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(record), sort_keys=True) + "\n")

    try:
        result = retrain(
            genotype,
            data,
            config,
            device=device,
            on_epoch_end=on_epoch,
            on_step_end=progress.step,
            eval_every=options.eval_every,
        )
    finally:
        progress.close()
    model = result.pop("model")
    torch.save(model.state_dict(), out / "model.pth")
    results = {
        **result,
        "data": args.data,
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
    test = result["test"]
    print_summary(
        "vision train",
        run_dir=out,
        genotype=genotype,
        metrics={
            "test_top1": test["top1"],
            "test_top5": test["top5"],
            "test_images": test["num_images"],
            "params_M": result["params"] / 1e6,
            "seconds": result["seconds"],
        },
        extra={"results": out / "results.json"},
    )
    _append_to_search_run(args.genotype, results, out)
    return 0


def _append_to_search_run(genotype_arg: str, results: Mapping[str, Any], out: Path) -> None:
    """Add the retraining results to the search run's summary and report when the genotype came from one."""
    from datanas_core.runtime import record_retraining

    test = results.get("test") or {}
    metrics = {f"test_{k}": v for k, v in test.items() if isinstance(v, (int, float))}
    metrics.update({k: results[k] for k in ("params", "seconds", "data") if k in results})
    epochs = (results.get("config") or {}).get("epochs")
    if epochs is not None:
        metrics["epochs"] = epochs
    record_retraining(genotype_arg, f"retrain ({results.get('data', 'data')})", metrics, source=out)


#: ``main(argv=None) -> int``: parse, run, one-line errors (exit status 2), the Ctrl-C line.
main = cli_options.command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
