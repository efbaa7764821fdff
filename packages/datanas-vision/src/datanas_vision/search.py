"""Architecture search for image classification: ``python -m datanas_vision.search``.

With no arguments (``make demo``) it searches the DARTS space on scikit-learn's 8x8 digits with a small
supernet for 15 epochs, with DATA's estimator (EGS with the exact straight-through gradient, M=4 samples, the
ADC regulariser) and the budget-aware architecture schedule of :data:`DEFAULT_METHOD`, so that a search of
a couple of hundred architecture steps ends decided; it writes a run directory under ``runs/`` with the
derived ``genotype.json`` and a report, and prints where they are and how to retrain the cell against random
cells (``python -m datanas_vision.compare --genotype RUN_DIR``). Every core estimator, executor,
regulariser and derivation rule is selectable; ``--space nb201`` also prints and saves (``nb201.txt``) the
derived cell in NAS-Bench-201 string form.

Examples::

    python -m datanas_vision.search
    python -m datanas_vision.search --data cifar10 --data-dir ~/data --download --C 16 --layers 8 --epochs 50
    python -m datanas_vision.search --data imagezip --data-dir cifar10-jpeg.zip --max-per-class 1000 \\
        --space nb201 --estimator gdas --executor sparse --reg none
    python -m datanas_vision.search --resume runs/20260101-120000
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.errors import ConfigError
from datanas_core.search.config import BUDGET_AWARE_SCHEDULE
from datanas_vision._cli import (
    add_data_args,
    data_config,
    load_data_from_args,
    parse_kv,
    set_threads,
    write_out,
)
from datanas_vision.cli_config import SPACE_CHOICES, VisionMethodOptions, VisionSearchSettings

if TYPE_CHECKING:
    import torch

    from datanas_core.search import SearchConfig, Searcher
    from datanas_vision.data import VisionData

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_METHOD", "build_parser", "build_searcher", "main"]

logger = logging.getLogger(__name__)

#: Search epochs without ``--epochs`` (the no-argument demo: 15 epochs of 12 steps on digits).
DEFAULT_EPOCHS = 15

#: The :class:`~datanas_core.search.SearchConfig` settings of a search without ``--preset`` (flags override
#: each of them). DATA's estimator as published - EGS with the exact straight-through gradient (native
#: executor) and ADC 0.1 - with M=4 samples and the budget-aware architecture schedule of the NB201 study's
#: ``egs_m4_travel`` setting (``docs/results/nb201-study``): per-step schedules, architecture lr = 24 / its
#: steps under a cosine decay to 0, and a weights-only warm-up of the first fifth of the epochs
#: (:func:`default_arch_warmup`). ``w_lr`` 0.1 trains the small digits supernet fast enough for its
#: convolutions to compete with the parameter-free ops. DATA's published lr (3e-4 for ~39k steps) moves the
#: logits by < 0.1 in the demo's ~150 steps: normalised entropy 1.000, an undecided, noise-picked cell
#: (docs/results/demo).
DEFAULT_METHOD: Mapping[str, Any] = MappingProxyType(
    {
        "estimator": "egs",
        "estimator_options": MappingProxyType({"samples": 4}),
        "regularizers": ({"type": "adc", "weight": 0.1},),
        **BUDGET_AWARE_SCHEDULE,
        "w_lr": 0.1,
    }
)


def default_arch_warmup(epochs: int) -> int:
    """Weights-only epochs of a search without ``--preset`` or ``--arch-warmup-epochs``: a fifth of them."""
    return epochs // 5


def _registry_names() -> tuple[list[str], list[str], list[str]]:
    """Estimator, regulariser and rule names without importing torch (static, checked against the registries
    in datanas-core's tests)."""
    return (
        list(cli_options.ESTIMATOR_NAMES),
        list(cli_options.REGULARIZER_NAMES),
        list(cli_options.RULE_NAMES),
    )


#: How the :class:`~datanas_vision.cli_config.VisionMethodOptions` flags are given: the ``KEY=VALUE`` lists one
#: item per flag (repeatable), with metavars.
_METHOD_ACTIONS = {name: "append" for name in VisionMethodOptions.REPEATED}
_METHOD_METAVARS = {"estimator_option": "KEY=VALUE", "rule_option": "KEY=VALUE", "stages": "EPOCHS:K:OPS,..."}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m datanas_vision.search`` (built on demand, never at import).

    The no-argument search: :class:`~datanas_vision.cli_config.VisionSearchSettings`' defaults (space,
    supernet size, batch size), the data's (:class:`~datanas_vision.cli_config.VisionDataConfig`), ``--epochs``
    below, and :class:`~datanas_core.search.SearchConfig`'s method defaults (flags left ``None`` keep them).
    """
    from datanas_core.runtime import add_runtime_args
    from datanas_core.search import PRESETS

    estimators, regularizers, rules = _registry_names()
    p = cli_options.new_parser(
        "python -m datanas_vision.search",
        "Differentiable architecture search for image classification (datanas).",
    )
    add_data_args(p)
    s = p.add_argument_group("search space and network")
    cli_options.add_dataclass_options(s, VisionSearchSettings, ["space", "C", "layers", "train_fraction"])
    m = p.add_argument_group("method")
    cli_options.add_options(
        m,
        ["--preset", "--estimator", "--samples"],
        choices={"--preset": sorted(PRESETS), "--estimator": estimators},
        help={
            "--preset": "a method's published recipe for the chosen --space (derivation rule, GDAS carriers, "
            "DrNAS stages chosen per space; explicit flags override them); data_short / data_decide: DATA with "
            "per-step schedules for short budgets, data_decide also deciding the edges progressively (the "
            "NB201 study's best short-budget recipe). An unsupported (preset, space) pair is an error naming the "
            "supported spaces",
            "--estimator": "architecture estimator (default: egs)",
            "--samples": "architecture samples M per step (egs, gumbel; default 4 without --preset)",
        },
    )
    cli_options.add_options(
        m,
        ["--executor", "--reg", "--rule"],
        choices={"--rule": rules},
        help={
            "--executor": "mixed-edge executor (default: the estimator's native one: exact for "
            "EGS/DARTS/SNAS/DrNAS, sparse for GDAS/E2NAS). 'exact' runs every op of every edge; 'sparse' runs "
            "only ops with non-zero weight - with EGS an approximation of DATA's estimator (gradient carriers "
            "instead of the exact straight-through gradient), flagged in the log, manifest and summary",
            "--reg": f"regularizer, repeatable ({', '.join(regularizers)}, or 'none'); default: adc:0.1",
        },
    )
    cli_options.add_dataclass_options(
        m,
        VisionMethodOptions,
        ["estimator_option", "stages", "rule_option"],
        actions=_METHOD_ACTIONS,
        metavars=_METHOD_METAVARS,
    )
    cli_options.add_options(m, ["--order"])
    o = p.add_argument_group("optimisation")
    cli_options.add_options(o, ["--epochs"], defaults={"--epochs": DEFAULT_EPOCHS})
    cli_options.add_dataclass_options(o, VisionSearchSettings, ["batch_size"])
    cli_options.add_options(
        o,
        ["--w-optimizer", "--w-lr", "--a-lr", "--arch-warmup-epochs"],
        help={
            "--w-optimizer": "supernet weight optimiser (default sgd)",
            "--w-lr": "weight learning rate (cosine schedule; default 0.1 without --preset, else the "
            "preset's)",
            "--a-lr": "architecture learning rate (Adam); without --preset the lr is budget-aware "
            "(--arch-travel 24) unless --a-lr is given",
            "--arch-warmup-epochs": "epochs that train the weights only before the architecture is updated "
            "(default: a fifth of --epochs without --preset, else the preset's)",
        },
    )
    cli_options.add_dataclass_options(
        o, VisionMethodOptions, ["w_weight_decay", "a_weight_decay", "grad_clip"]
    )
    # --weight-sampling, the schedule flags, progressive decisions, --precision, --compile: the shared
    # declaration every search CLI adds (without --preset the schedule flags default to DEFAULT_METHOD's)
    execution = ("--precision", "--compile")
    cli_options.add_options(o, [n for n in cli_options.SEARCH_CONFIG_OPTIONS if n not in execution])
    cli_options.add_dataclass_options(
        o, VisionSearchSettings, ["consistency_batches", "benchmark"], metavars={"benchmark": "PATH"}
    )
    g = p.add_argument_group("execution (GPU)")
    cli_options.add_options(g, execution)
    cli_options.add_options(
        p,
        ["--threads"],
        help={
            "--threads": "CPU threads for torch (default: 1 for images below 32x32 on the CPU, else torch's "
            "default)"
        },
    )
    add_runtime_args(p)
    return p


#: The shared flags (:data:`datanas_core.cli_options.SHARED_OPTIONS`) that set the SearchConfig field of their
#: name as given; ``--epochs`` and ``--estimator`` are resolved together with the preset.
_CONFIG_FLAGS = tuple(
    (o.dest, o.config_field)
    for o in cli_options.SHARED_OPTIONS.values()
    if o.config_field is not None and o.config_field not in ("epochs", "estimator")
)


def search_config(args: argparse.Namespace, seed: int) -> SearchConfig:
    """Resolve the method flags into a :class:`~datanas_core.search.SearchConfig`."""
    from datanas_core.search import SearchConfig

    if args.preset:
        # the preset's recipe for this space (rule, carriers, NB201 recipes; warm-up scaled to --epochs)
        base = SearchConfig.preset(args.preset, _space(args.space), epochs=args.epochs).to_dict()
    else:
        # DEFAULT_METHOD over core's defaults; the warm-up is a fifth of --epochs
        method = {**DEFAULT_METHOD, "estimator_options": dict(DEFAULT_METHOD["estimator_options"])}
        base = SearchConfig(**method, arch_warmup_epochs=default_arch_warmup(args.epochs)).to_dict()
    changes: dict[str, Any] = {"epochs": args.epochs, "seed": seed}
    est_opts = dict(base["estimator_options"])
    if args.estimator is not None and args.estimator != base["estimator"]:
        changes["estimator"] = args.estimator
        est_opts = {}
    if args.samples is not None:
        est_opts["samples"] = args.samples
    method = cli_options.dataclass_from_args(VisionMethodOptions, args)
    est_opts.update(parse_kv(method.estimator_option, "--estimator-option"))
    changes["estimator_options"] = est_opts
    if args.reg is not None:
        changes["regularizers"] = cli_options.regularizer_specs(args.reg)
    for dest, key in _CONFIG_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            changes[key] = value
    changes.update(method.search_config_changes())
    if not args.preset and "a_lr" in changes and "arch_travel" not in changes:
        changes["arch_travel"] = None  # an explicit --a-lr replaces the default budget-aware lr
    if method.rule_option:
        changes["rule_options"] = parse_kv(method.rule_option, "--rule-option")
    saved = cli_options.resumed_search_config(args)
    if args.arch_warmup_epochs is None and saved and "arch_warmup_epochs" in saved:
        changes["arch_warmup_epochs"] = saved["arch_warmup_epochs"]  # extending keeps the run's warm-up
    if changes.get("order") == "second" and base.get("step_order") != "arch_first":
        changes["step_order"] = "arch_first"
    return SearchConfig.from_dict({**base, **changes})


def _space(name: str) -> Any:
    from datanas_core import get_space  # importing datanas_core registers every core space

    return get_space(name)


def supernet_kwargs(args: argparse.Namespace, data: VisionData) -> dict[str, Any]:
    """The supernet's size keywords from the parsed :class:`~datanas_vision.cli_config.VisionSearchSettings`."""
    settings = cli_options.dataclass_from_args(VisionSearchSettings, args)
    return settings.supernet_kwargs(data.num_classes, data.in_channels)


def build_searcher(
    args: argparse.Namespace, data: VisionData, seed: int, device: torch.device | None = None
) -> Searcher:
    """The :class:`~datanas_core.search.Searcher` the flags describe (E2NAS wiring for ``--estimator e2nas``,
    DrNAS progressive stages for ``--stages``; see :func:`datanas_core.build_searcher`)."""
    from datanas_core.search import build_searcher as core_build_searcher
    from datanas_vision.task import ClassificationTask

    return core_build_searcher(
        _space(args.space),
        ClassificationTask(),
        search_config(args, seed),
        supernet_kwargs=supernet_kwargs(args, data),
        device=device,
        stages=_stages(args),
    )


def _stages(args: argparse.Namespace) -> str | None:
    """``--stages``, else the preset's progressive stages scaled to ``--epochs`` (``drnas_progressive``)."""
    from datanas_core.search.config import preset_stages

    stages = getattr(args, "stages", None)
    if stages is None and getattr(args, "preset", None):
        stages = preset_stages(args.preset, _space(args.space), args.epochs)
    return stages


def _run_search(args: argparse.Namespace) -> int:
    from datanas_core.runtime import RuntimeOptions, dry_run, run_search, run_seeds

    return _run(args, RuntimeOptions.from_args(args), dry_run, run_search, run_seeds)


def _run(args: argparse.Namespace, opts: Any, dry_run: Any, run_search: Any, run_seeds: Any) -> int:
    import torch

    from datanas_vision.data import BatchTransform, ImageLoader, make_search_loaders
    from datanas_vision.data.base import subset

    cli_options.check_positive(epochs=args.epochs)
    cli_options.dataclass_from_args(VisionSearchSettings, args)  # refuses --C 0, --train-fraction 2, ...
    cli_options.dataclass_from_args(VisionMethodOptions, args)
    table = _load_benchmark(args)  # fail fast, before the data are read
    device = opts.torch_device()
    data = load_data_from_args(args)
    threads = set_threads(args.threads, data.image_size, device)
    for note in data.notes:
        logger.info("data: %s", note)
    logger.info(
        "data %s: %d training images (%d classes, %dx%d, %d channel(s)), %d test images",
        data.name,
        len(data.train),  # type: ignore[arg-type]
        data.num_classes,
        *data.image_size,
        data.in_channels,
        len(data.test),  # type: ignore[arg-type]
    )
    if opts.dry_run:
        shape = (data.in_channels, *data.image_size)

        def make_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            g = torch.Generator().manual_seed(0)
            x = torch.randn((n, *shape), generator=g).to(device)
            y = torch.randint(0, data.num_classes, (n,), generator=g).to(device)
            return x, y

        report = dry_run(
            lambda: build_searcher(args, data, opts.seeds[0], device),
            make_batch,
            batch_size=args.batch_size,
            memory_budget=opts.memory_budget,
        )
        write_out(report.to_text())
        return 0

    config = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **data_config(args, data),
        "threads": threads,
        "search_config": None,
        cli_options.CONFIG_KEY: cli_options.cli_config(args),
    }
    space = _space(args.space)

    def run_one(seed: int, run_dir: Path) -> Any:
        searcher = build_searcher(args, data, seed, device)
        train, val = make_search_loaders(
            data,
            batch_size=args.batch_size,
            seed=seed,
            train_fraction=args.train_fraction,
            augment=args.augment,
            num_workers=args.num_workers,
        )
        # a fixed random order (shuffle=False over a permuted view): the consistency monitor evaluates the
        # first few batches twice (sampled and derived codes), which must be the same batches and must not
        # be one class only (folder and zip datasets are stored class by class)
        perm = torch.randperm(len(val.dataset), generator=torch.Generator().manual_seed(seed)).tolist()
        eval_loader = ImageLoader(
            subset(val.dataset, perm),
            args.batch_size,
            transform=BatchTransform(data.mean, data.std),
            shuffle=False,
            num_workers=args.num_workers,
        )
        cfg = {**config, "seed": seed, "search_config": searcher.config.to_dict()}
        derived = {k: v for k, v in supernet_kwargs(args, data).items()}
        result = run_search(
            searcher,
            train,
            val,
            run_dir=run_dir,
            config=cfg,
            eval_loader=eval_loader,
            consistency_batches=args.consistency_batches,
            derived_kwargs=derived,
            derived_input_shape=(data.in_channels, *data.image_size),
            **_benchmark_kwargs(table),
            **opts.run_kwargs(),
        )
        genotype = result.genotype
        extra: dict[str, Any] = {"genotype file": Path(run_dir) / "genotype.json"}
        if genotype.space == "nb201":
            text = (space if hasattr(space, "to_string") else _space("nb201")).to_string(genotype)
            (Path(run_dir) / "nb201.txt").write_text(text + "\n", encoding="utf-8")
            extra["NB201 string"] = text
        if table is not None:
            extra[f"benchmark ({table.source})"] = table.score(genotype).describe()
        extra["next"] = compare_hint(args, run_dir)
        cli_options.print_search_summary("vision search", run_dir, result, searcher, extra=extra)
        return result

    run_seeds(run_one, opts.seeds, opts.out)
    return 0


def compare_hint(args: argparse.Namespace, run_dir: Path) -> str:
    """The command that retrains the derived cell against random cells of the space at equal budget
    (printed at the end of a search; ``make demo`` ends with it)."""
    if args.space not in ("darts", "darts_ext", "nb201"):
        return f"retrain the cell: python -m datanas_vision.train --genotype {run_dir}"
    data = [] if args.data == "digits" else ["--data", args.data]
    if getattr(args, "data_dir", None) is not None:
        data += ["--data-dir", str(args.data_dir)]
    space = [] if args.space == "darts" else ["--space", args.space]
    cmd = [
        "python -m datanas_vision.compare",
        *data,
        *space,
        "--genotype",
        str(run_dir),
        "--random 5",
        "--out",
        str(Path(run_dir) / "compare"),
    ]
    return "check the cell against 5 random cells at equal retraining budget: " + " ".join(cmd)


def _load_benchmark(args: argparse.Namespace) -> Any:
    """The ``--benchmark`` table (``None`` without the flag).

    Raises:
        ConfigError: ``--benchmark`` with a space whose cells are not NB201 cells.
        DataError, MissingDependencyError: the table cannot be read.
    """
    if getattr(args, "benchmark", None) is None:
        return None
    if not args.space.endswith("nb201"):
        nb201 = ", ".join(s for s in SPACE_CHOICES if s.endswith("nb201"))
        raise ConfigError(
            f"--benchmark scores NAS-Bench-201 cells; --space {args.space} has none (use one of: {nb201})"
        )
    from datanas_core.benchmarks import load_benchmark

    table = load_benchmark(args.benchmark)
    metric = table.primary_metric
    st = table.stats(metric)
    logger.info(
        "benchmark %s: %d cells (%s); %s median %.2f, top 5%% from %.2f, best %.2f",
        table.source,
        len(table),
        table.format,
        metric,
        st["median"],
        st["top5"],
        st["best"],
    )
    return table


def _benchmark_kwargs(table: Any) -> dict[str, Any]:
    """``run_search`` keyword arguments for the benchmark callback (nothing without a table)."""
    if table is None:
        return {}
    from datanas_core.benchmarks import BenchmarkCallback
    from datanas_core.runtime.runner import DEFAULT_RESUME_IGNORE

    return {
        "callbacks": [BenchmarkCallback(table)],
        "resume_ignore": DEFAULT_RESUME_IGNORE | {"benchmark"},
    }


#: ``main(argv=None) -> int``: parse (``--config``/``--resume RUN_DIR``), run, one-line errors (exit status 2),
#: the Ctrl-C resume line.
main = cli_options.command(build_parser, _run_search)

if __name__ == "__main__":
    raise SystemExit(main())
