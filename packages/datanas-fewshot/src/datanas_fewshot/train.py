"""``python -m datanas_fewshot.train``: meta-train a network and report few-shot accuracy.

Examples::

    python -m datanas_fewshot.train --genotype runs/fewshot-search/genotype.json \\
        --data omniglot --data-dir ../shared/data/omniglot --ways 5 --shots 1 --out runs/fewshot-train
    python -m datanas_fewshot.train --genotype conv4 ...             # the standard Conv-4 backbone
    python -m datanas_fewshot.train --genotype conv4 --conv4-hidden match --match-genotype G.json ...
    python -m datanas_fewshot.train --genotype random:5 ...          # 5 random cells (median reported)
    python -m datanas_fewshot.train --genotype random:5@0,1 ...      # random cells 0 and 1 of those 5

``--genotype`` takes a genotype JSON file, ``conv4``, or ``random:N``. The network is meta-trained from
scratch,
then evaluated on ``--test-episodes`` (>= 600) meta-test episodes (mean accuracy with a 95 % confidence
interval) and on the 20 official 20-way one-shot Omniglot runs (``all_runs.zip``). Results go to
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.cli_options import add_options, print_summary, resolve_genotype
from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_fewshot.cli_config import FewShotDataOptions, FewShotTrainOptions
from datanas_fewshot.search import add_fewshot_args, fewshot_config, set_threads

if TYPE_CHECKING:
    from datanas_fewshot.fewshot import (
        FewShotConfig,
    )

logger = logging.getLogger("datanas_fewshot.train")


def build_parser() -> argparse.ArgumentParser:
    from datanas_core.runtime import add_runtime_args

    p = cli_options.new_parser(
        "python -m datanas_fewshot.train",
        "Meta-train a searched cell (or Conv-4, or random cells) and report 5-way accuracy "
        "with a 95%% confidence interval plus the 20 official one-shot runs.",
    )
    add_options(
        p,
        ["--genotype"],
        required=["--genotype"],
        help={
            "--genotype": "a genotype JSON file or search run directory, 'conv4', 'random:N' or 'random:N@i,j'"
        },
    )
    cli_options.add_dataclass_options(p, FewShotTrainOptions, ["conv4_hidden", "match_genotype"])
    add_fewshot_args(p)
    t = p.add_argument_group("training and evaluation")
    cli_options.add_dataclass_options(
        t,
        FewShotTrainOptions,
        ["train_episodes", "meta_batch", "lr", "test_episodes", "official_runs"],
    )
    add_runtime_args(
        p,
        ["seed", "out", "verbose"],
        help={
            "seed": "random seed (weights, episodes, random cells)",
            "out": "output folder (default: runs/fewshot-train/<time>)",
        },
    )
    return p


def _check_spec(spec: str) -> None:
    """Validate ``--genotype`` before any data is loaded."""
    if spec == "conv4":
        return
    if spec.startswith("random:"):
        count, _, subset = spec.split(":", 1)[1].partition("@")
        try:
            int(count)
            [int(i) for i in subset.split(",")] if subset else None
        except ValueError:
            raise ConfigError(f"--genotype random:N[@i,j] needs integers, got {spec!r}") from None
        return
    if not Path(spec).exists():
        raise ConfigError(f"--genotype {spec!r} is neither a file, a run directory, 'conv4', nor 'random:N'")


def _backbones(
    args: argparse.Namespace, options: FewShotTrainOptions, config: FewShotConfig, in_ch: int
) -> list[tuple[str, Any, dict]]:
    """``(name, factory, info)`` for every network to evaluate."""
    import torch

    from datanas_fewshot.cellnets import count_parameters, random_genotype
    from datanas_fewshot.fewshot import build_backbone, cell_channels_for, conv4_hidden_for

    spec = args.genotype
    space = config.space()
    if spec == "conv4":
        if options.conv4_hidden == "match":
            if options.match_genotype is None:
                raise ConfigError("--conv4-hidden match needs --match-genotype G.json")
            g = Genotype.load(options.match_genotype)
            target = count_parameters(build_backbone(config, g, in_ch))
            hidden = conv4_hidden_for(target, in_ch)
        else:
            try:
                hidden = int(options.conv4_hidden)
            except ValueError:
                raise ConfigError(
                    f"--conv4-hidden must be an integer or 'match', got {options.conv4_hidden!r}"
                ) from None
        return [(f"conv4-{hidden}", lambda: build_backbone(config, "conv4", in_ch, conv4_hidden=hidden),
                 {"conv4_hidden": hidden})]  # fmt: skip
    if spec.startswith("random:"):
        body = spec.split(":", 1)[1]
        count, _, subset = body.partition("@")
        try:
            n = int(count)
            keep = {int(i) for i in subset.split(",")} if subset else set(range(n))
        except ValueError:
            raise ConfigError(f"--genotype random:N[@i,j] needs integers, got {spec!r}") from None
        if n < 1 or not keep <= set(range(n)):
            raise ConfigError(f"--genotype {spec!r}: need N >= 1 and indices in 0..N-1")
        g = torch.Generator().manual_seed(args.seed + 1000)
        out = []
        for i in range(n):
            geno = random_genotype(space, g)  # always draw all N so cell i is the same for any subset
            if i not in keep:
                continue
            cfg = config
            if options.match_genotype is not None:  # equal parameters: widen or narrow this random cell
                target = count_parameters(
                    build_backbone(config, Genotype.load(options.match_genotype), in_ch)
                )
                cfg = dataclasses.replace(config, C=cell_channels_for(config, geno, target, in_ch))
            out.append((f"random-{i}", lambda geno=geno, cfg=cfg: build_backbone(cfg, geno, in_ch),
                        {"genotype": geno.to_dict(), "C": cfg.C}))  # fmt: skip
        return out
    path = Path(spec)
    if not path.exists():
        raise ConfigError(f"--genotype {spec!r} is neither a file, a run directory, 'conv4', nor 'random:N'")
    geno = resolve_genotype(path, nb201=False)
    space.validate(geno)
    return [
        (
            path.stem if path.is_file() else path.name,
            lambda: build_backbone(config, geno, in_ch),
            {"genotype": geno.to_dict()},
        )
    ]


def _run(args: argparse.Namespace) -> int:
    """Meta-train and evaluate the networks of the parsed options."""
    from datanas_core.io import atomic_write_text
    from datanas_fewshot.fewshot import evaluate_backbone
    from datanas_fewshot.meta import MetaTrainConfig
    from datanas_fewshot.sources import load_fewshot_splits, load_omniglot_runs

    if args.data_dir is None:
        raise ConfigError("--data-dir is required (the folder with the dataset files)")
    set_threads(args.threads)
    out = args.out or Path("runs/fewshot-train") / time.strftime("%Y%m%d-%H%M%S")
    options = cli_options.dataclass_from_args(FewShotTrainOptions, args)
    data = cli_options.dataclass_from_args(FewShotDataOptions, args)
    train = MetaTrainConfig(
        episodes=options.train_episodes,
        meta_batch=options.meta_batch,
        lr=options.lr,
        lr_min=options.lr / 10,
    )
    config = fewshot_config(args, args.seed, train=train, test_episodes=options.test_episodes)
    _check_spec(args.genotype)
    if options.test_episodes < 600:
        logger.warning("%d test episodes: report numbers with >= 600", options.test_episodes)
    splits = load_fewshot_splits(
        data.data, data.data_dir, image_size=data.image_size, rotations=data.rotations
    )
    runs = None
    if options.official_runs and data.data == "omniglot":
        runs = load_omniglot_runs(data.data_dir, image_size=data.image_size)
    in_ch = int(splits.train.images.shape[1])
    results = []
    for name, factory, info in _backbones(args, options, config, in_ch):
        t0 = time.time()
        res = evaluate_backbone(name, factory, config, splits, runs=runs)
        row = {**res.to_dict(), **info, "seconds": round(time.time() - t0, 1)}
        results.append(row)
        print(json.dumps({k: row[k] for k in ("name", "parameters", "meta_test", "official_runs_mean")}))
    doc: dict[str, Any] = {"config": config.to_dict(), "data": args.data, "splits": dict(splits.info),
                           "results": results}  # fmt: skip
    if len(results) > 1:
        accs = [r["meta_test"]["mean"] for r in results]
        doc["median_meta_test"] = statistics.median(accs)
        runs_acc = [r["official_runs_mean"] for r in results if r["official_runs_mean"] is not None]
        doc["median_official_runs"] = statistics.median(runs_acc) if runs_acc else None
        print(json.dumps({"median_meta_test": doc["median_meta_test"],
                          "median_official_runs": doc["median_official_runs"]}))  # fmt: skip
    from datanas_core.runtime.rundir import prepare_run_dir

    prepare_run_dir(out)  # one-line error for a file or a read-only path
    atomic_write_text(out / "results.json", json.dumps(doc, indent=2, default=float) + "\n")
    logger.info("results written to %s", out / "results.json")
    metrics = {f"{r['name']}_meta_test": r["meta_test"]["mean"] for r in results}
    if "median_meta_test" in doc:
        metrics["median_meta_test"] = doc["median_meta_test"]
    print_summary(
        "fewshot train",
        run_dir=out,
        genotype=args.genotype,
        metrics=metrics,
        warnings=[f"{options.test_episodes} test episodes: report numbers with >= 600"]
        if options.test_episodes < 600
        else [],
    )
    return 0


#: ``main(argv=None) -> int``: parse, run, one-line errors.
main = cli_options.command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
