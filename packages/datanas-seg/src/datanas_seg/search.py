"""Command line: differentiable architecture search of a segmentation backbone.

Example::

    python -m datanas_seg.search --data isbi2012 --data-dir ../shared/data --out runs/seg-search

With ``--framework mmseg`` (default) the supernet backbone sits inside mmseg's ``EncoderDecoder`` with an
mmseg decode head (ASPPHead by default), and both the weight and the architecture steps use the segmentor's
loss. The derived genotype is written to ``OUT/genotype.json``; train it with ``python -m datanas_seg.train
--genotype OUT/genotype.json``.

CPU defaults (about 1.5 CPU-minutes with ``--threads 1``): C=8, one normal cell per stage, 64x64 crops,
batch 8, 10 epochs of 24 steps of which the first 4 train only the weights, DATA's EGS estimator (M=2) with
its exact executor (``--executor sparse``: a faster approximation, flagged in the log and summary), ADC
regulariser and the ``data`` derivation rule, architecture learning rate 3e-3 (DATA
uses 3e-4 over ~20k steps; this search has 144 architecture steps), median-frequency class weights.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_seg import _cli
from datanas_seg.cli_config import SegSearchBudget

if TYPE_CHECKING:
    from datanas_core.runtime import (
        RuntimeOptions,
    )
    from datanas_core.search import SearchConfig, Searcher
    from datanas_seg.data import CropLoader

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m datanas_seg.search``."""
    from datanas_core.runtime import add_runtime_args
    from datanas_core.search import PRESETS

    p = cli_options.new_parser(
        "python -m datanas_seg.search", "Search a segmentation backbone of DARTS cells (space seg.darts)."
    )
    _cli.add_data_args(p, class_weight="balanced")
    _cli.add_model_args(p, C=8, head_channels=16)
    g = p.add_argument_group("search")
    cli_options.add_options(
        g,
        ["--preset", "--epochs"],
        choices={"--preset": sorted(PRESETS)},
        defaults={"--preset": "data", "--epochs": 24},
        help={
            "--preset": "method preset, the method's published recipe for seg.darts (default data); presets "
            "that do not support the space (e.g. e2nas) are refused with the supported spaces",
        },
    )
    cli_options.add_dataclass_options(g, SegSearchBudget)
    cli_options.add_options(
        g,
        ["--samples", "--executor", "--w-lr", "--a-lr", "--arch-warmup-epochs", "--rule", "--reg"],
        defaults={"--samples": 4, "--w-lr": 0.05, "--a-lr": 1e-2, "--arch-warmup-epochs": 8},
        help={
            "--samples": "EGS/Gumbel ensemble size M (default 4, DATA-M4; 0: the preset's; ignored by other "
            "estimators)",
            "--executor": "mixed-op executor (default: the estimator's native one, exact for EGS; sparse with "
            "EGS is an approximation)",
            "--rule": "derivation rule (default: the preset's)",
            "--reg": "regulariser NAME[:WEIGHT][:KEY=VALUE,...] (repeatable) or 'none' (default: the preset's)",
        },
    )
    cli_options.add_options(
        g, ["--threads"], help={"--threads": "torch CPU threads (default: torch's choice)"}
    )
    cli_options.add_options(g, cli_options.SEARCH_CONFIG_OPTIONS)
    add_runtime_args(p)
    return p


def search_config(args: argparse.Namespace, seed: int) -> SearchConfig:
    from datanas_core.search import PRESETS, SearchConfig
    from datanas_seg.space import SegDartsSpace

    over: dict[str, Any] = {
        "epochs": args.epochs,
        "w_lr": args.w_lr,
        "w_lr_min": args.w_lr * 0.02,
        "a_lr": args.a_lr,
        "arch_warmup_epochs": args.arch_warmup_epochs,
        "seed": seed,
    }
    if args.samples and PRESETS[args.preset].get("estimator", "egs") in ("egs", "gumbel"):
        opts = dict(PRESETS[args.preset].get("estimator_options", {}))
        opts["samples"] = args.samples
        over["estimator_options"] = opts
    if args.rule is not None:
        over["rule"] = args.rule
    if args.executor is not None:
        over["executor"] = args.executor
    if args.reg is not None:
        over["regularizers"] = cli_options.regularizer_specs(args.reg)
    # --weight-sampling, the schedule flags, --progressive-decisions, --precision, --compile (not given: the
    # preset's)
    over.update(cli_options.config_changes(args))
    return SearchConfig.preset(args.preset, SegDartsSpace(), **over)


def _run(args: argparse.Namespace, opts: RuntimeOptions) -> int:
    import torch

    from datanas_core.runtime import dry_run, run_search, run_seeds
    from datanas_core.search import Searcher
    from datanas_seg.data import CropLoader, RandomCropDataset
    from datanas_seg.space import SegDartsSpace

    cli_options.check_positive(epochs=args.epochs)
    _cli.set_threads(args.threads)
    data = _cli.data_config(args)
    model_cfg = _cli.model_config(args)
    budget = cli_options.dataclass_from_args(SegSearchBudget, args)
    crop = data.crop
    splits = _cli.load_splits(data)
    device = opts.torch_device()
    space = SegDartsSpace()
    bs = data.batch_size

    def make_searcher(seed: int) -> Searcher:
        cfg = search_config(args, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, task = _cli.build_search_model(model_cfg, space, splits.data, splits.class_weight)
        return Searcher(space, task, cfg, supernet=model, device=device)

    def loaders(seed: int) -> tuple[CropLoader, CropLoader]:
        train_ds = RandomCropDataset(splits.train, crop, budget.steps_per_epoch * bs, seed=seed)
        val_ds = RandomCropDataset(splits.val, crop, budget.val_batches * bs, seed=seed + 7_777)
        return CropLoader(train_ds, bs, seed=seed, drop_last=True), CropLoader(
            val_ds, bs, seed=seed + 1, drop_last=True
        )

    if opts.dry_run:
        train_loader, _ = loaders(opts.seeds[0])
        example = next(iter(train_loader))

        def make_batch(n: int) -> Any:
            x, y = example
            reps = -(-n // x.shape[0])
            return x.repeat(reps, 1, 1, 1)[:n].to(device), y.repeat(reps, 1, 1)[:n].to(device)

        # probe with >= 2 samples: BatchNorm after global pooling (ASPP's image pool) needs two
        report = dry_run(
            make_searcher(opts.seeds[0]),
            make_batch,
            batch_size=bs,
            memory_budget=opts.memory_budget,
            probe_batch_size=max(2, bs // 2),
        )
        logger.info("dry run:\n%s", report.to_text())
        return 0

    config = {
        k: (str(v) if hasattr(v, "__fspath__") else v)
        for k, v in vars(args).items()
        if k not in ("out", "resume", "seeds", "threads")
    }
    config["crop_size"] = crop
    config[cli_options.CONFIG_KEY] = cli_options.cli_config(args)
    config["splits"] = splits.names()
    derived_kwargs = {
        "C": model_cfg.C,
        "cells_per_stage": model_cfg.stages,
        "num_stages": model_cfg.num_stages,
        "in_channels": splits.data.in_channels,
    }

    def run_one(seed: int, out: Any) -> Any:
        train_loader, val_loader = loaders(seed)
        result = run_search(
            lambda: make_searcher(seed),
            train_loader,
            val_loader,
            run_dir=out,
            config={**config, "seed": seed},
            consistency_batches=2,
            derived_kwargs=derived_kwargs,
            derived_input_shape=(splits.data.in_channels, crop, crop),
            **opts.run_kwargs(),
        )
        cli_options.print_search_summary(
            "seg search",
            out,
            result,
            extra={"train with": f"python -m datanas_seg.train --genotype {out}"},
        )
        return result

    run_seeds(run_one, opts.seeds, opts.out)
    return 0


def _run_search(args: argparse.Namespace) -> int:
    from datanas_core.runtime import RuntimeOptions

    return _run(args, RuntimeOptions.from_args(args, default_out="runs/seg-search"))


#: ``main(argv=None) -> int``: parse (``--config``/``--resume`` where offered), run, one-line errors.
main = cli_options.command(build_parser, _run_search)

if __name__ == "__main__":
    raise SystemExit(main())
