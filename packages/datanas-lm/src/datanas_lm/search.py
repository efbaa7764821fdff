"""Search a DARTS recurrent cell on a word-level corpus: ``python -m datanas_lm.search --data ptb``.

The default size (``--size cpu``) finishes on two CPU cores; ``--size darts-full`` is DARTS' PTB search
(embedding = hidden = 300, batch 256, 50 epochs). The method (estimator, derivation rule, regularisers) is
picked with ``--preset`` from the core presets (default ``data``: DATA's EGS with M=2 and ADC); the
optimiser settings are the language-model ones of DARTS (SGD lr 20 without momentum or schedule, weight
decay 5e-7, gradient clip 0.25; Adam 3e-3 on the architecture).

Data: ``--data ptb`` reads ``ptb.{train,valid,test}.txt`` from ``--data-dir`` (default
``$DATANAS_DATA_DIR/ptb``, else ``./data/ptb``) and verifies their md5 checksums; missing files are
downloaded only with ``--download`` (nothing is created when the download fails). ``--data textdir
--data-dir DIR`` reads ``train.txt``, ``valid.txt`` and ``test.txt`` from ``DIR``. The weights are trained on
the training split and the architecture on the validation split (as in DARTS); the test split is not used by
the search.

Outputs go to a run directory (``--out``, default ``runs/lm-search/<timestamp>``): ``genotype.json``,
``report.html``/``report.md`` with a picture of the recurrent cell, metrics and checkpoints (``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.errors import ConfigError
from datanas_lm.cli_config import (  # noqa: F401 - DATASET_NAMES: the old import place
    DATASET_NAMES,
    SEARCH_SIZES,
    SIZE_NAMES,
    TRAIN_SIZES,
    LMSearchSettings,
    LMSettings,
    LMTrainSettings,
    resolve_settings,
)

if TYPE_CHECKING:
    from datanas_lm.data import Corpus

__all__ = ["build_parser", "main", "resolve_data_dir"]

logger = logging.getLogger(__name__)


#: The core preset whose method the search runs without ``--preset`` (with the budget-aware schedule).
DEFAULT_PRESET = "data"


def default_arch_warmup(epochs: int) -> int:
    """Weights-only epochs of a search without ``--preset`` or ``--arch-warmup-epochs``: a fifth of them, at
    least one (the supernet's weights are random at the start) but never all of them."""
    return min(max(1, epochs // 5), epochs - 1)


def _methods() -> list[str]:
    """Core presets that support the RNN space (checked by the preset table, not hard-coded here)."""
    from datanas_core.search.config import PRESET_SPECS

    return sorted(n for n, spec in PRESET_SPECS.items() if "rnn" in spec.kinds and spec.spaces is None)


def resolve_data_dir(data: str, data_dir: Path | None) -> Path:
    """``--data-dir`` or the default location of dataset ``data``.

    See :func:`~datanas_lm.data.default_data_dir`.

    Raises:
        ConfigError: ``--data textdir`` without ``--data-dir``.
    """
    from datanas_lm.data import default_data_dir

    if data_dir is not None:
        return Path(data_dir).expanduser()
    if data == "textdir":
        raise ConfigError(
            "--data textdir needs --data-dir DIR (a directory with train.txt, valid.txt, test.txt)"
        )
    return default_data_dir(data)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--data-dir``, ``--download`` (shared by the LM CLIs)."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=DATASET_NAMES, default="ptb", help="dataset (default: ptb)")
    g.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory with the dataset files (default: $DATANAS_DATA_DIR/<data>, else ./data/<data>)",
    )
    cli_options.add_options(
        g,
        ["--download"],
        help={"--download": "download missing PTB files into --data-dir (checksum-verified; default: off)"},
    )


def add_size_arg(parser: argparse.ArgumentParser) -> None:
    """``--size`` (the model and data size preset of the LM CLIs; ``--preset`` is the method everywhere,
    but the training CLIs, which have no method, still accept it as the old name of ``--size``)."""
    old = [] if parser.prog.endswith("search") else ["--preset"]
    parser.add_argument(
        "--size",
        *old,
        dest="preset",
        choices=SIZE_NAMES,
        default="cpu",
        help="model and data size preset (cpu: two CPU cores; darts-full: DARTS' published sizes)"
        + ("; --preset: old name" if old else ""),
    )


#: The :class:`~datanas_lm.cli_config.LMSettings` fields with a flag in every LM CLI (``--epochs`` and
#: ``--threads`` are shared options of all datanas CLIs).
MODEL_FLAGS = ("emsize", "nhid", "dropout", "dropouth", "dropoutx", "dropouti", "dropoute", "wdrop", "alpha",
               "beta", "batch_size", "eval_batch_size", "bptt", "train_tokens", "eval_tokens")  # fmt: skip

#: The :class:`~datanas_lm.cli_config.LMTrainSettings` fields with a flag in the training CLIs.
TRAIN_FLAGS = ("lr", "weight_decay", "clip", "nonmono", "test_batch_size", "node_merge")


def add_settings_args(parser: argparse.ArgumentParser, cls: type, fields: Sequence[str], title: str) -> Any:
    """A group of flags for ``fields`` of the settings dataclass ``cls``, without defaults: the value of
    ``--size`` applies unless the flag is given (see :func:`~datanas_lm.cli_config.resolve_settings`).
    Returns the group."""
    g = parser.add_argument_group(title)
    cli_options.add_dataclass_options(g, cls, fields, defaults=dict.fromkeys(fields))
    return g


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Model-size, dropout and data-budget flags shared by the LM CLIs (defaults come from ``--size``)."""
    g = add_settings_args(parser, LMSettings, MODEL_FLAGS, "model (defaults from --size)")
    cli_options.add_options(
        g,
        ["--epochs", "--threads"],
        help={
            "--epochs": "epochs (default from --size)",
            "--threads": "torch CPU threads (default: 1 with --size cpu, torch's choice with darts-full)",
        },
    )


def merge_settings(preset: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Preset values overridden by every flag that was given (``0`` for token caps means "no cap"); the old
    mapping form of :func:`~datanas_lm.cli_config.resolve_settings`."""
    cls = LMSearchSettings if "w_lr" in preset else LMTrainSettings
    return resolve_settings({"preset": cls(**preset)}, "preset", args).to_dict()


def apply_threads(settings: LMSettings | Mapping[str, Any]) -> int:
    """Apply the settings' ``threads`` (``torch.set_num_threads``); returns the thread count.

    Raises:
        ConfigError: a thread count below 1.
    """
    import torch

    threads = settings.threads if isinstance(settings, LMSettings) else settings.get("threads")
    if threads is not None:
        if int(threads) < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def run_settings(settings: LMSettings) -> dict[str, Any]:
    """The settings as stored in a run's ``config.json`` (``threads`` is how this machine ran it, not part of
    the configuration)."""
    return {k: v for k, v in settings.to_dict().items() if k != "threads"}


def load_data(args: argparse.Namespace) -> tuple[Corpus, Path]:
    """Load the corpus selected by ``--data``/``--data-dir``/``--download``."""
    from datanas_lm.data import load_corpus

    data_dir = resolve_data_dir(args.data, args.data_dir)
    corpus = load_corpus(args.data, data_dir, download_missing=bool(args.download))
    return corpus, data_dir


def data_files(data: str, data_dir: Path) -> list[Path]:
    from datanas_lm.data.ptb import PTB_FILES

    if data == "ptb":
        return [data_dir / f for f, _ in PTB_FILES.values()]
    return [p for p in sorted(data_dir.glob("*.txt"))]


def build_parser() -> argparse.ArgumentParser:
    from datanas_core.runtime import add_runtime_args

    parser = cli_options.new_parser(
        "python -m datanas_lm.search",
        "Differentiable search of a DARTS recurrent cell for word-level language modelling.",
    )
    add_data_args(parser)
    add_size_arg(parser)
    g = parser.add_argument_group("method")
    cli_options.add_options(
        g,
        ["--preset"],
        choices={"--preset": _methods()},
        defaults={"--preset": None},
        aliases={"--preset": ["--method"]},
        dests={"--preset": "method"},
        help={
            "--preset": "method recipe: a core preset for the RNN space, as published (--method: old name). "
            "Without it: DATA's estimator (the data preset: EGS M=2 + ADC, exact gradient) with the "
            "budget-aware architecture schedule (arch lr = 24 / architecture steps, cosine to 0; unless --a-lr "
            "is given) and a fifth of the epochs weights-only (at least one, never all)",
        },
    )
    cli_options.add_options(
        g,
        ["--estimator", "--samples", "--executor", "--rule"],
        help={
            "--estimator": "override the method's estimator",
            "--executor": "mixed-edge executor (default: method's)",
            "--rule": "derivation rule (default: 'data' for DATA methods, else 'topk_edges' with k=1)",
        },
    )
    g.add_argument(
        "--rule-k", type=int, default=None, help="k of the topk rules (default 1: one predecessor per node)"
    )
    cli_options.add_options(
        g, ["--order", "--arch-warmup-epochs", "--reg"], help={"--order": "override the method's order"}
    )
    cli_options.add_options(
        g,
        ["--w-lr", "--a-lr"],
        help={
            "--w-lr": "weight learning rate (SGD; default from --size)",
            "--a-lr": "architecture learning rate (Adam; default from --size)",
        },
    )
    cli_options.add_options(g, cli_options.SEARCH_CONFIG_OPTIONS)
    add_model_args(parser)
    add_runtime_args(parser)
    return parser


def search_config(settings: LMSearchSettings | Mapping[str, Any], args: argparse.Namespace, seed: int) -> Any:
    """The core :class:`~datanas_core.search.SearchConfig` of this run."""
    from datanas_core.search import SearchConfig
    from datanas_core.search.config import BUDGET_AWARE_SCHEDULE

    s = settings if isinstance(settings, LMSearchSettings) else LMSearchSettings(**settings)
    overrides: dict[str, Any] = {
        "epochs": s.epochs,
        "w_lr": float(s.w_lr),
        "w_lr_min": float(s.w_lr),  # constant learning rate, as DARTS' RNN search
        "w_momentum": 0.0,
        "w_nesterov": False,
        "w_weight_decay": float(s.w_weight_decay),
        "grad_clip": float(s.grad_clip),
        "a_lr": float(s.a_lr),
        "seed": int(seed),
    }
    from datanas_lm.space import RNNSpace

    method = args.method or DEFAULT_PRESET
    if args.method is None:
        # the default search: the budget-aware schedule unless the architecture lr is given
        overrides.update(BUDGET_AWARE_SCHEDULE)
        overrides["arch_warmup_epochs"] = default_arch_warmup(s.epochs)
        if getattr(args, "a_lr", None) is not None:
            overrides["arch_travel"] = None
    base = SearchConfig.preset(method, RNNSpace())
    if args.estimator is not None:
        overrides["estimator"] = args.estimator
        overrides["estimator_options"] = {}
    if args.samples is not None:
        est = overrides.get("estimator", base.estimator)
        if est != "egs":
            raise ConfigError(f"--samples (the EGS ensemble size M) needs the egs estimator, not {est!r}")
        overrides["estimator_options"] = {**dict(base.estimator_options), "samples": int(args.samples)}
    if args.executor is not None:
        overrides["executor"] = args.executor
    if args.order is not None:
        overrides["order"] = args.order
    if args.arch_warmup_epochs is not None:
        overrides["arch_warmup_epochs"] = int(args.arch_warmup_epochs)
    else:
        from datanas_core.cli_options import resumed_search_config

        saved = resumed_search_config(args)
        if saved and "arch_warmup_epochs" in saved:
            overrides["arch_warmup_epochs"] = int(saved["arch_warmup_epochs"])  # extending keeps the warm-up
    if args.reg is not None:
        from datanas_core.cli_options import regularizer_specs

        overrides["regularizers"] = regularizer_specs(args.reg)
    # the preset's rule for the RNN space (data: DATA's rule; the others: one predecessor per node)
    rule = args.rule or (
        base.rule
        if base.rule != "data" or overrides.get("estimator", base.estimator) == "egs"
        else "topk_edges"
    )
    overrides["rule"] = rule
    if rule in ("topk_edges", "topk_pairs"):
        overrides["rule_options"] = {"k": int(args.rule_k or 1)}
    elif args.rule_k is not None:
        raise ConfigError(f"--rule-k applies to the topk_edges/topk_pairs rules, not {rule!r}")
    else:
        overrides["rule_options"] = {}
    # --weight-sampling, the schedule flags (--schedule-unit, --arch-travel, ...), --progressive-decisions,
    # --precision, --compile (not given: the preset's)
    overrides.update(cli_options.config_changes(args))
    return SearchConfig.preset(method, RNNSpace(), **overrides)


def _run(args: argparse.Namespace) -> int:
    """The search of the parsed options."""
    import torch

    from datanas_core.runtime import RuntimeOptions, dry_run, run_search, run_seeds
    from datanas_core.runtime.runner import DEFAULT_RESUME_IGNORE
    from datanas_core.search import Searcher
    from datanas_lm.data import BPTTLoader, batchify
    from datanas_lm.space import RNNSpace
    from datanas_lm.task import LMSearchTask, PerplexityFromLoss

    opts = RuntimeOptions.from_args(args, default_out="runs/lm-search")
    settings = resolve_settings(SEARCH_SIZES, args.preset, args)
    threads = apply_threads(settings)
    corpus, data_dir = load_data(args)
    device = opts.torch_device()
    ntoken = len(corpus.vocab)
    B, bptt = settings.batch_size, settings.bptt
    train_loader = BPTTLoader(
        batchify(corpus.train, B).to(device), bptt, stream="train", max_tokens=settings.train_tokens
    )
    val_loader = BPTTLoader(
        batchify(corpus.valid, B).to(device),
        bptt,
        stream="val",
        max_tokens=settings.val_tokens,
        seed=1,
    )
    eval_loader = BPTTLoader(
        batchify(corpus.valid, settings.eval_batch_size).to(device),
        bptt,
        stream="eval",
        variable_length=False,
        max_tokens=settings.eval_tokens,
        random_offset=False,
    )
    space = RNNSpace()
    supernet_kwargs = {
        "ntoken": ntoken,
        "ninp": settings.emsize,
        "nhid": settings.nhid,
        **settings.dropouts(),
    }
    tp = TRAIN_SIZES[args.preset]
    derived_kwargs = {"ntoken": ntoken, "ninp": tp.emsize, "nhid": tp.nhid, **tp.dropouts()}

    def make_searcher(seed: int) -> Searcher:
        task = LMSearchTask(alpha=float(settings.alpha), beta=float(settings.beta))
        return Searcher(
            space,
            task,
            search_config(settings, args, seed),
            supernet_kwargs=supernet_kwargs,
            device=device,
        )

    base_config = {
        "command": "datanas_lm.search",
        "data": args.data,
        "data_dir": str(data_dir),
        "corpus": corpus.summary(),
        "preset": args.preset,
        "method": args.method or f"{DEFAULT_PRESET} (default: budget-aware schedule)",
        "settings": run_settings(settings),
        "supernet": supernet_kwargs,
        "threads": threads,
        cli_options.CONFIG_KEY: cli_options.cli_config(args),
    }
    if opts.dry_run:
        from datanas_lm.data.text import LMBatch

        def make_batch(bsz: int) -> LMBatch:
            x = torch.randint(0, ntoken, (bptt + 1, bsz), device=device)
            return LMBatch(x[:-1], x[1:], "dry", True, 0, bptt)

        report = dry_run(
            make_searcher(opts.seeds[0]), make_batch, batch_size=B, memory_budget=opts.memory_budget
        )
        sys.stdout.write(report.to_text() + "\n")
        return 0

    def run_one(seed: int, out: Path) -> Any:
        result = run_search(
            make_searcher(seed),
            train_loader,
            val_loader,
            run_dir=out,
            config={
                **base_config,
                "seed": seed,
                "search_config": search_config(settings, args, seed).to_dict(),
            },
            eval_loader=eval_loader,
            callbacks=[PerplexityFromLoss()],
            collapse=False,
            data_files=data_files(args.data, data_dir),
            derived_kwargs=derived_kwargs,
            resume_ignore=DEFAULT_RESUME_IGNORE | {"threads"},
            **opts.run_kwargs(),
        )
        cli_options.print_search_summary(
            "lm search",
            out,
            result,
            extra={
                "retrain with": f"python -m datanas_lm.train --genotype {out} --data {args.data} "
                f"--data-dir {data_dir}"
            },
        )
        return result

    run_seeds(run_one, opts.seeds, opts.out)
    return 0


#: ``main(argv=None) -> int``: parse (``--config``/``--resume`` where offered), run, one-line errors.
main = cli_options.command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
