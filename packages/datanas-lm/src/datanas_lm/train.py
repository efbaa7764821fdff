"""Train a language model with a derived recurrent cell from scratch: ``python -m datanas_lm.train``.

``--genotype`` takes a bundled cell (``darts_v1``, ``darts_v2``), a genotype JSON file (e.g. a search run's
``genotype.json``) or ``random`` (a uniformly random cell of the space, drawn from ``--seed``);
``--model lstm`` trains the same-size ``torch.nn.LSTM`` baseline instead. Training is SGD with the
non-monotone switch to averaged SGD (AWD-LSTM / DARTS ``rnn/train.py``); the best model by validation loss is
scored on the full validation and test sets (perplexity).

The run directory (``--out``, default ``runs/lm-train/<timestamp>``) holds ``config.json``, ``manifest.json``,
per-epoch ``metrics.jsonl``, checkpoints (``--resume RUN_DIR`` continues from the newest one),
``summary.json`` with the final perplexities, and ``report.html``/``report.md`` with a picture of the
recurrent cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core import cli_options
from datanas_core.cli_options import add_options, print_summary
from datanas_core.errors import CheckpointError, ConfigError, RunInterrupted
from datanas_core.genotype import Genotype
from datanas_lm.cli_config import TRAIN_SIZES, LMTrainSettings, resolve_settings

if TYPE_CHECKING:
    from torch import nn

    from datanas_lm.data.text import Corpus

__all__ = ["build_model", "build_parser", "main", "run_training", "train_config"]

logger = logging.getLogger(__name__)


def resolve_genotype(spec: str, seed: int) -> Genotype:
    """``random`` (a random cell from ``seed``), a bundled name or a JSON path."""
    import torch

    from datanas_lm.genotypes import load_genotype
    from datanas_lm.space import RNNSpace

    if spec == "random":
        g = RNNSpace().random_genotype(torch.Generator().manual_seed(seed))
        return g.with_meta(name=f"random_seed{seed}")
    return load_genotype(spec)


def _train_settings(settings: LMTrainSettings | Mapping[str, Any]) -> LMTrainSettings:
    return settings if isinstance(settings, LMTrainSettings) else LMTrainSettings(**settings)


#: Settings added after runs were saved, with the value the code that saved those runs used.
_LEGACY_SETTINGS = {"node_merge": "sum"}


def _with_legacy_settings(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved run config whose ``settings`` lack a later-added setting gets the value the older code used, so
    resuming it is not a configuration difference (and the run goes on as it was trained)."""
    out = dict(saved)
    settings = out.get("settings")
    if isinstance(settings, Mapping):
        out["settings"] = {**_LEGACY_SETTINGS, **settings}
    return out


def build_model(
    kind: str, genotype: Genotype | None, ntoken: int, settings: LMTrainSettings | Mapping[str, Any]
) -> nn.Module:
    """A derived-cell model (``kind="cell"``) or the LSTM baseline (``kind="lstm"``) with the given sizes.

    Raises:
        ConfigError: unknown kind, or a cell model without a genotype.
    """
    from datanas_lm.model import LSTMLanguageModel
    from datanas_lm.space import RNNSpace

    s = _train_settings(settings)
    size = {"ntoken": ntoken, "ninp": s.emsize, "nhid": s.nhid}
    drop = s.dropouts()
    if kind == "lstm":
        return LSTMLanguageModel(**size, **{k: drop[k] for k in ("dropout", "dropouti", "dropoute", "wdrop")})
    if kind != "cell":
        raise ConfigError(f"unknown model kind {kind!r}; valid: cell, lstm")
    if genotype is None:
        raise ConfigError("a cell model needs a genotype (--genotype NAME|PATH|random)")
    return RNNSpace().build_derived(genotype, **size, **drop, merge=s.node_merge)


def train_config(settings: LMTrainSettings | Mapping[str, Any], seed: int) -> Any:
    """The :class:`~datanas_lm.training.TrainConfig` of resolved CLI settings."""
    from datanas_lm.training import TrainConfig

    s = _train_settings(settings)
    return TrainConfig(
        epochs=s.epochs,
        batch_size=s.batch_size,
        eval_batch_size=s.eval_batch_size,
        test_batch_size=s.test_batch_size,
        bptt=s.bptt,
        lr=float(s.lr),
        weight_decay=float(s.weight_decay),
        clip=float(s.clip),
        alpha=float(s.alpha),
        beta=float(s.beta),
        nonmono=s.nonmono,
        train_tokens_per_epoch=s.train_tokens,
        eval_tokens=s.eval_tokens,
        seed=int(seed),
    )


class _EpochWriter:
    """Trainer callback: metrics records, checkpoints and progress log lines."""

    def __init__(self, rd: Any, ckpts: Any, log_every: int, state_extra: Mapping[str, Any]) -> None:
        self.rd = rd
        self.ckpts = ckpts
        self.log_every = max(1, int(log_every))
        self.state_extra = dict(state_extra)
        self.t0 = time.time()

    def on_step_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
        if trainer.global_step % self.log_every == 0:
            self.rd.append_metrics(
                {"kind": "step", "step": trainer.global_step, "epoch": trainer.epoch, **logs}
            )
            logger.info(
                "epoch %d step %d: train_loss=%.3f (ppl %.1f)",
                trainer.epoch,
                trainer.global_step,
                logs["train_loss"],
                math.exp(min(logs["train_loss"], 50.0)),
            )

    def on_epoch_end(self, trainer: Any, record: Mapping[str, Any]) -> None:
        from datanas_core.runtime import capture_rng_state

        self.rd.append_metrics(
            {"kind": "epoch", "step": trainer.global_step, "time": time.time() - self.t0, **record}
        )
        self.ckpts.save(
            {"trainer": trainer.state_dict(), "rng": capture_rng_state(), **self.state_extra},
            step=trainer.global_step,
            epoch=trainer.epoch,
            batch=0,
        )
        logger.info(
            "epoch %d/%d: train ppl %.2f, valid ppl %.2f%s (%.0fs)",
            record["epoch"] + 1,
            trainer.config.epochs,
            record["train_ppl"],
            record["val_ppl"],
            ", averaged SGD" if record.get("asgd") else "",
            record["epoch_time_s"],
        )


def run_training(
    model: nn.Module,
    corpus: Corpus,
    config: Any,
    *,
    run_dir: str | os.PathLike[str],
    genotype: Genotype | None = None,
    run_config: Mapping[str, Any] | None = None,
    resume: bool = False,
    data_files: Sequence[str | os.PathLike[str]] = (),
    log_every: int = 100,
    report: bool = True,
    keep_last: int = 2,
) -> dict[str, Any]:
    """Train ``model`` with :class:`~datanas_lm.training.LMTrainer` inside a run directory.

    Writes config, manifest, metrics, checkpoints (every epoch), ``genotype.json`` and ``space.json`` (cell
    models), ``summary.json`` with the final scores and, with ``report``, ``report.html``/``report.md``.

    Returns:
        The final scores (see :meth:`~datanas_lm.training.LMTrainer.fit`) plus ``params``.

    Raises:
        ConfigError: a new run in a directory that already holds one, or a resume with another configuration.
        CheckpointError: ``resume`` without a checkpoint.
    """
    from datanas_core.runtime import CheckpointManager, RunDir, build_manifest, restore_rng_state
    from datanas_core.runtime._fs import atomic_write
    from datanas_core.runtime._jsonutil import dumps, to_jsonable
    from datanas_core.runtime.runner import space_description
    from datanas_lm.space import RNNSpace
    from datanas_lm.training import LMTrainer

    rd = RunDir(run_dir)
    ckpts = CheckpointManager(rd.checkpoints_dir, keep_last=keep_last)
    cfg_doc = to_jsonable({**dict(run_config or {}), "train_config": config.to_dict()})
    trainer = LMTrainer(model, corpus, config)
    if resume:
        found = ckpts.load_latest()
        if found is None:
            raise CheckpointError(
                f"cannot resume {str(rd.path)!r}: no checkpoint in {str(ckpts.directory)!r}"
            )
        _, state = found
        saved = _with_legacy_settings(state.get("config", {}))
        ignore = {"out", "resume", "data_dir", "device", "threads", "log_every", "report", "verbose"}
        ignore.add(cli_options.CONFIG_KEY)  # the options are compared as the resolved settings
        diffs = sorted(
            k for k in set(saved) | set(cfg_doc) if k not in ignore and saved.get(k) != cfg_doc.get(k)
        )
        if diffs:
            raise ConfigError(f"cannot resume {str(rd.path)!r}: the configuration differs in {diffs}")
        trainer.load_state_dict(state["trainer"])
        restore_rng_state(state["rng"])
        logger.info("resuming %s at epoch %d", rd.path, trainer.epoch)
    elif rd.exists() or ckpts.list():
        raise ConfigError(
            f"{str(rd.path)!r} already holds a run; pass --resume {rd.path} to continue it, "
            "or choose another --out"
        )
    rd.write_config(cfg_doc)
    if not resume:
        rd.write_manifest(
            build_manifest(
                config=cfg_doc,
                seed=config.seed,
                device=next(model.parameters()).device,
                data_files=data_files,
            )
        )
    if genotype is not None:
        rd.save_genotype(genotype)
        atomic_write(rd.path / "space.json", (dumps(space_description(RNNSpace()), indent=2) + "\n").encode())
    params = sum(p.numel() for p in model.parameters())
    rd.append_metrics(
        {"kind": "event", "event": "resume" if resume else "start", "step": trainer.global_step}
    )
    trainer.callbacks.append(_EpochWriter(rd, ckpts, log_every, {"config": cfg_doc}))
    status = "failed"
    try:
        scores = trainer.fit()
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise RunInterrupted(str(rd.path)) from None  # resumes from the newest epoch checkpoint
    finally:
        summary: dict[str, Any] = {
            "status": status,
            "epoch": trainer.epoch,
            "global_step": trainer.global_step,
        }
        if status == "completed":
            summary["final"] = scores
            summary["derived"] = {"params": int(params), "params_M": params / 1e6}
            rd.append_metrics({"kind": "event", "event": "completed", "step": trainer.global_step})
        rd.write_summary(to_jsonable(summary))
        rd.close()
    if report:
        try:
            from datanas_core.runtime import build_report

            paths = build_report(rd.path)
            logger.info("report: %s", paths["html"])
        except Exception as exc:  # noqa: BLE001 - a report failure must not fail the training
            logger.warning("could not write the report: %s", exc)
    return {**scores, "params": int(params)}


def build_parser() -> argparse.ArgumentParser:
    from datanas_core.runtime import add_runtime_args
    from datanas_lm.search import TRAIN_FLAGS, add_data_args, add_model_args, add_settings_args, add_size_arg

    parser = cli_options.new_parser(
        "python -m datanas_lm.train",
        "Train a word-level language model with a derived recurrent cell (or an LSTM baseline).",
    )
    add_options(
        parser,
        ["--genotype"],
        help={
            "--genotype": "bundled cell (darts_v1, darts_v2), genotype JSON path, search run directory, or "
            "'random' (drawn from --seed)"
        },
    )
    parser.add_argument("--model", choices=("cell", "lstm"), default="cell", help="cell or lstm baseline")
    add_data_args(parser)
    add_size_arg(parser)
    add_model_args(parser)
    add_settings_args(parser, LMTrainSettings, TRAIN_FLAGS, "optimisation (defaults from --size)")
    add_runtime_args(
        parser,
        ["out", "resume", "seed", "device", "log_every", "report", "verbose"],
        help={
            "out": "run directory (default: runs/lm-train/<timestamp>)",
            "resume": "continue the run in RUN_DIR with its own options (flags given here override them)",
            "seed": "random seed (weights, BPTT windows, a 'random' --genotype)",
            "device": "torch device (default: cuda when available, else cpu)",
        },
        defaults={"log_every": 100},
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    """The training run of the parsed options."""

    from datanas_core.runtime import seed_everything
    from datanas_lm.search import apply_threads, data_files, load_data, run_settings

    if args.model == "cell" and args.genotype is None:
        raise ConfigError("--genotype is required with --model cell (bundled name, JSON path or 'random')")
    if args.model == "lstm" and args.genotype is not None:
        raise ConfigError("--genotype does not apply to --model lstm")
    out, resume = args.out, False
    if args.resume is not None:
        if out is not None and Path(out).resolve() != Path(args.resume).resolve():
            raise ConfigError(f"--resume {args.resume} and --out {out} disagree; pass only --resume RUN_DIR")
        out, resume = args.resume, True
    if out is None:
        out = Path("runs/lm-train") / time.strftime("%Y%m%d-%H%M%S")
    settings = resolve_settings(TRAIN_SIZES, args.preset, args)
    saved = (cli_options.resumed_run_config(args) or {}).get("settings") if resume else None
    if isinstance(saved, Mapping):  # a run saved before a setting existed goes on as it was trained
        legacy = {
            k: v for k, v in _LEGACY_SETTINGS.items() if k not in saved and getattr(args, k, None) is None
        }
        settings = dataclasses.replace(settings, **legacy)
    apply_threads(settings)
    device = cli_options.torch_device(args.device)
    seed_everything(args.seed)
    corpus, data_dir = load_data(args)
    genotype = resolve_genotype(args.genotype, args.seed) if args.model == "cell" else None
    model = build_model(args.model, genotype, len(corpus.vocab), settings).to(device)
    config = train_config(settings, args.seed)
    run_config = {
        "command": "datanas_lm.train",
        "model": args.model,
        "genotype": None if genotype is None else genotype.to_dict(),
        "data": args.data,
        "data_dir": str(data_dir),
        "corpus": corpus.summary(),
        "preset": args.preset,
        "settings": run_settings(settings),
        "seed": args.seed,
        cli_options.CONFIG_KEY: cli_options.cli_config(args),
    }
    scores = run_training(
        model,
        corpus,
        config,
        run_dir=out,
        genotype=genotype,
        run_config=run_config,
        resume=resume,
        data_files=data_files(args.data, data_dir),
        log_every=args.log_every,
        report=args.report,
    )
    print_summary(
        "lm train",
        run_dir=out,
        genotype=genotype if genotype is not None else args.model,
        metrics={
            k: scores[k] for k in ("val_ppl", "test_ppl", "val_loss", "test_loss", "params") if k in scores
        },
    )
    if args.genotype is not None:
        from datanas_core.runtime import record_retraining

        keep = ("test_ppl", "val_ppl", "test_loss", "val_loss", "params", "epochs")
        record_retraining(
            args.genotype,
            f"retrain ({args.data})",
            {k: scores[k] for k in keep if k in scores},
            source=out,
        )
    return 0


#: ``main(argv=None) -> int``: parse (``--config``/``--resume`` where offered), run, one-line errors.
main = cli_options.command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
