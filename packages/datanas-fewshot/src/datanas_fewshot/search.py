"""``python -m datanas_fewshot.search``: cell search for few-shot learning on learn2learn episodes.

Example (CPU defaults, a few minutes)::

    python -m datanas_fewshot.search --data omniglot --data-dir ../shared/data/omniglot --ways 5 --shots 1 \\
        --out runs/fewshot-search

The weight step meta-trains the supernet on meta-train episodes, the architecture step uses the query loss of
fresh meta-validation episodes. The meta-learner (ProtoNet by default, or first-order MAML through
learn2learn)
never holds the architecture parameters. The run directory follows :func:`datanas_core.runtime.run_search`
(``genotype.json`` is the searched cell; pass it to ``python -m datanas_fewshot.train --genotype``).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.cli_options import dataclass_help
from datanas_core.errors import ConfigError
from datanas_core.search import SearchConfig
from datanas_fewshot.cli_config import (  # noqa: F401 - DATASET_NAMES: the old import place
    DATASET_NAMES,
    CellNetOptions,
    FewShotDataOptions,
    FewShotSearchOptions,
    FewShotTaskOptions,
    MetaLearnerOptions,
)

if TYPE_CHECKING:
    from datanas_fewshot.fewshot import FewShotConfig

logger = logging.getLogger("datanas_fewshot.search")


def add_cellnet_args(group: Any) -> None:
    """``--ops``, ``--C``, ``--layers``, ``--steps`` (:class:`~datanas_fewshot.cli_config.CellNetOptions`),
    shared with the clustering CLI."""
    cli_options.add_dataclass_options(group, CellNetOptions)


def add_fewshot_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by the search and train CLIs (data, task, meta-learner, network size)."""
    d = p.add_argument_group("data and task")
    cli_options.add_dataclass_options(d, FewShotDataOptions)
    cli_options.add_dataclass_options(d, FewShotTaskOptions)
    m = p.add_argument_group("meta-learner and network")
    cli_options.add_dataclass_options(m, MetaLearnerOptions)
    add_cellnet_args(m)
    cli_options.add_options(
        m, ["--threads"], help={"--threads": "torch CPU threads (default: torch's choice)"}
    )


def add_method_args(s: Any, *, samples: int | None, w_lr: float, arch_warmup: int) -> None:
    """The method and search-optimiser flags of the few-shot and the clustering searches (their defaults)."""
    cli_options.add_options(
        s,
        ["--preset", "--estimator", "--samples", "--executor", "--reg", "--rule"],
        defaults={"--estimator": "egs", "--samples": samples},
        help={
            "--preset": "core method preset (estimator, regularisers, executor, derivation rule of the "
            "method's published recipe for this space; the optimisation flags stay this CLI's; --samples "
            "still sets M). The cell space here is the strict DARTS space: presets that need another space "
            "are refused with a clear error",
            "--samples": "architecture samples M per step (egs, gumbel; default: "
            + (f"{samples}, DATA-M{samples})" if samples else "2 for egs)"),
            "--executor": "mixed-edge executor (default: the estimator's native one; sparse with EGS is an "
            "approximation)",
            "--reg": "regulariser NAME[:WEIGHT][:KEY=VALUE,...] (repeatable) or 'none' (default: the "
            "preset's, none without one)",
        },
    )
    cli_options.add_options(
        s,
        ["--w-optimizer", "--w-lr", "--a-lr", "--arch-warmup-epochs"],
        choices={"--w-optimizer": ("adam", "sgd")},
        defaults={
            "--w-optimizer": "adam",
            "--w-lr": w_lr,
            "--a-lr": 0.03,
            "--arch-warmup-epochs": arch_warmup,
        },
        dests={"--arch-warmup-epochs": "arch_warmup"},
    )
    cli_options.add_options(s, cli_options.SEARCH_CONFIG_OPTIONS)


def fewshot_config(args: argparse.Namespace, seed: int, **extra: Any) -> FewShotConfig:
    """The :class:`~datanas_fewshot.fewshot.FewShotConfig` of the parsed task, meta-learner and network
    options (:mod:`datanas_fewshot.cli_config`); ``extra`` sets the other fields."""
    from datanas_fewshot.fewshot import FewShotConfig

    task = cli_options.dataclass_from_args(FewShotTaskOptions, args)
    learner = cli_options.dataclass_from_args(MetaLearnerOptions, args)
    net = cli_options.dataclass_from_args(CellNetOptions, args)
    return FewShotConfig(
        ways=task.ways,
        shots=task.shots,
        queries=task.queries,
        learner=learner.meta_learner,
        maml=learner.maml(),
        ops=net.op_set(),
        steps=net.steps,
        C=net.C,
        layers=net.layers,
        seed=seed,
        **extra,
    )


def build_parser() -> argparse.ArgumentParser:
    from datanas_core.runtime import add_runtime_args

    p = cli_options.new_parser(
        "python -m datanas_fewshot.search",
        "Differentiable cell search for few-shot learning (learn2learn episodes; ProtoNet or MAML).",
    )
    add_fewshot_args(p)
    s = p.add_argument_group("search")
    cli_options.add_options(s, ["--epochs"], defaults={"--epochs": 4})
    cli_options.add_dataclass_options(
        s,
        FewShotSearchOptions,
        ["episodes"],
        flags={"episodes": "--steps-per-epoch"},
        aliases={"episodes": ["--episodes"]},
        help={"episodes": dataclass_help(FewShotSearchOptions)["episodes"] + "; --episodes: old name"},
    )
    add_method_args(s, samples=None, w_lr=1e-3, arch_warmup=1)
    cli_options.add_dataclass_options(s, FewShotSearchOptions, ["distance_scale"])
    add_runtime_args(p)
    return p


def search_config(args: argparse.Namespace, seed: int, *, epochs: int) -> SearchConfig:
    """The core :class:`~datanas_core.search.SearchConfig` of the few-shot and clustering searches.

    The method is ``--preset``'s recipe for the cell space (or ``--estimator``), with ``--samples`` (for the
    estimators that draw samples: egs, gumbel; EGS without a preset draws 2), ``--executor``, ``--reg``,
    ``--rule`` and the shared search options (:data:`~datanas_core.cli_options.SEARCH_CONFIG_OPTIONS`:
    ``--weight-sampling``, ``--schedule-unit``, ``--arch-travel``, ``--a-lr-warmup``, ``--a-lr-schedule``,
    ``--progressive-decisions``, ``--precision``, ``--compile``) applied; the optimiser is this CLI's (``--w-lr``
    with a cosine floor of a tenth, no weight decay, ``--a-lr`` unless ``--arch-travel`` replaces it,
    ``--arch-warmup-epochs``).
    """
    method: dict[str, Any] = {"estimator": args.estimator, "estimator_options": {}}
    if args.preset:
        from datanas_core.search.config import preset_method_fields
        from datanas_fewshot.cellnets import build_space

        net = cli_options.dataclass_from_args(CellNetOptions, args)
        method = preset_method_fields(args.preset, build_space(net.op_set(), steps=net.steps))
    if args.samples is not None and method["estimator"] in ("egs", "gumbel"):
        method["estimator_options"] = {**dict(method.get("estimator_options") or {}), "samples": args.samples}
    elif not args.preset and method["estimator"] == "egs":
        method["estimator_options"] = {"samples": 2}
    if args.executor is not None:
        method["executor"] = args.executor
    if args.reg is not None:
        method["regularizers"] = cli_options.regularizer_specs(args.reg)
    if args.rule is not None:
        method["rule"] = args.rule
    # --weight-sampling, the schedule flags (--schedule-unit, --arch-travel, --a-lr-warmup, --a-lr-schedule),
    # --progressive-decisions, --precision, --compile (not given: the preset's, else SearchConfig's defaults)
    method.update(cli_options.config_changes(args))
    return SearchConfig(
        epochs=epochs,
        **method,
        w_lr=args.w_lr,
        w_lr_min=args.w_lr / 10,
        w_weight_decay=0.0,
        a_lr=args.a_lr,
        arch_warmup_epochs=args.arch_warmup,
        seed=seed,
    )


def _run(args: argparse.Namespace) -> int:
    """The few-shot search of the parsed options."""
    from datanas_core.runtime import RuntimeOptions, run_search
    from datanas_fewshot.fewshot import build_fewshot_searcher
    from datanas_fewshot.meta import MetaTrainConfig
    from datanas_fewshot.sources import load_fewshot_splits

    if args.data_dir is None:
        raise ConfigError("--data-dir is required (the folder with the dataset files)")
    data = cli_options.dataclass_from_args(FewShotDataOptions, args)
    budget = cli_options.dataclass_from_args(FewShotSearchOptions, args)
    opts = RuntimeOptions.from_args(args, default_out="runs/fewshot-search")
    if opts.dry_run:
        raise ConfigError("--dry-run is not supported by the few-shot search CLI")
    set_threads(args.threads)
    splits = load_fewshot_splits(
        data.data, data.data_dir, image_size=data.image_size, rotations=data.rotations
    )
    for seed in opts.seeds:
        config = fewshot_config(
            args,
            seed,
            search=search_config(args, seed, epochs=args.epochs),
            search_episodes=budget.episodes,
            train=MetaTrainConfig(episodes=1),
            search_distance_scale=budget.scale(),
            weight_optimizer=args.w_optimizer,
        )
        searcher, train_loader, val_loader = build_fewshot_searcher(config, splits)
        out = opts.run_dir_for(seed)
        in_ch = int(splits.train.images.shape[1])
        result = run_search(
            searcher,
            train_loader,
            val_loader,
            run_dir=out,
            config={
                "data": args.data,
                "data_dir": str(args.data_dir),
                "splits": dict(splits.info),
                **config.to_dict(),
                cli_options.CONFIG_KEY: cli_options.cli_config(args),
            },  # fmt: skip
            consistency_batches=4,
            derived_kwargs={"C": config.C, "layers": config.layers, "num_classes": 0, "in_channels": in_ch},
            derived_input_shape=(in_ch, data.image_size, data.image_size),
            **opts.run_kwargs(),
        )
        cli_options.print_search_summary(
            "fewshot search",
            out,
            result,
            searcher,
            extra={
                "train with": f"python -m datanas_fewshot.train --genotype {out} --data-dir {args.data_dir}"
            },
        )
    return 0


def set_threads(threads: int | None) -> None:
    """``--threads``: torch CPU threads (``None``: torch's choice)."""
    cli_options.check_positive(threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)


#: ``main(argv=None) -> int``: parse (``--config``/``--resume``), run, one-line errors.
main = cli_options.command(build_parser, _run)


if __name__ == "__main__":
    raise SystemExit(main())
