"""The single entry point domain CLIs call: :func:`run_search`, and the shared flags :func:`add_runtime_args`.

Example (a domain CLI)::

    def main(argv=None) -> int:
        parser = argparse.ArgumentParser()
        ...domain flags...
        add_runtime_args(parser)
        args = parser.parse_args(argv)
        opts = RuntimeOptions.from_args(args)
        configure_logging(opts)
        def make_searcher(seed):                      # build space, task, SearchConfig(seed=seed), Searcher
            ...
        if opts.dry_run:
            print(dry_run(make_searcher(opts.seeds[0]), make_batch, batch_size=args.batch_size,
                          memory_budget=opts.memory_budget).to_text())
            return 0
        def one(seed, out):
            return run_search(make_searcher(seed), train, val, run_dir=out,
                              config={**vars(args), "seed": seed}, **opts.run_kwargs())
        run_seeds(one, opts.seeds, opts.out)
        return 0
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from datanas_core.errors import CheckpointError, ConfigError, NumericalError, RunInterrupted
from datanas_core.runtime._jsonutil import to_jsonable
from datanas_core.runtime.callbacks import CheckpointCallback, MetricsLogger, StepCounter
from datanas_core.runtime.checkpoint import ALL_DAMAGED_ADVICE, CheckpointManager, describe_mismatch
from datanas_core.runtime.cli_args import RuntimeArgs, add_runtime_args
from datanas_core.runtime.data import EpochStream
from datanas_core.runtime.distributed import (
    DistributedContext,
    attach_distributed,
    describe,
    init_distributed,
)
from datanas_core.runtime.monitors import CollapseMonitor, ConsistencyMonitor, DecisionMonitor, NaNGuard
from datanas_core.runtime.progress import ProgressCallback
from datanas_core.runtime.rng import capture_rng_state, restore_rng_state, seed_everything
from datanas_core.runtime.rundir import RunDir, RunLock, build_manifest, collect_data_files, prepare_run_dir

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_RESUME_IGNORE",
    "RESUME_OVERRIDES",
    "RuntimeArgs",
    "RuntimeOptions",
    "add_runtime_args",
    "configure_logging",
    "derived_stats",
    "parse_memory",
    "parse_seeds",
    "run_search",
    "space_description",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1

#: Top-level config keys that may change between a run and its resumption (paths, devices, logging).
DEFAULT_RESUME_IGNORE = frozenset(
    {
        "out",
        "resume",
        "run_dir",
        "device",
        "progress",
        "checkpoint_every",
        "keep_last",
        "dry_run",
        "num_workers",
        "early_stop_collapse",
        "log_every",
        "data_dir",
        "tensorboard",
        "report",
        "memory_budget",
        "seeds",
        "max_restarts",
        "verbose",
        "debug",
        "restart",
        "config",
        "print_config",
        "cli_args",  # the parsed flags again (datanas_core.cli_options.cli_config); the rest of the config rules
    }
)

#: Settings that may change when a run is resumed, besides :data:`DEFAULT_RESUME_IGNORE`: learning rates,
#: the number of epochs, checkpoint cadence and logging. They are matched as top-level keys of the run's
#: ``config``, of the searcher's ``SearchConfig`` and of every group in ``config`` (``config["search_config"]``,
#: ``config["settings"]``, ...). A changed ``w_lr`` rescales the weight learning rate and its cosine schedule
#: from the resumed position, ``a_lr`` sets the architecture learning rate (``arch_travel`` may change with it:
#: a command line that replaces the budget-aware rate by an explicit ``--a-lr`` clears it) and ``epochs``
#: stretches the cosine schedule to the new length. ``precision`` and ``compile`` (how the supernet forward is
#: executed: bf16 autocast, ``torch.compile``) may change too: they change neither the estimator nor any state
#: in the checkpoint, so a run searched in float32 on a CPU may continue in bf16 / compiled on a GPU; the change
#: is logged, and ``approximations`` (derived from the other fields, bf16 included) follows them. Every other
#: difference stops the resume with the list of differences.
RESUME_OVERRIDES = frozenset(
    {
        "precision",
        "compile",
        "approximations",
        "w_lr",
        "a_lr",
        "arch_travel",
        "lr",
        "inner_lr",
        "w_lr_min",
        "epochs",
        "search_epochs",
        "train_epochs",
        "checkpoint_every",
        "checkpoint_every_epochs",
        "keep_last",
        "log_every",
        "progress",
        "verbose",
        "report",
        "tensorboard",
    }
)


# ------------------------------------------------------------------------------------------ helpers
def space_description(space: Any) -> dict[str, Any]:
    """Name, configuration and cell specs of a search space (JSON-able; for resume checks and reports)."""
    cells = {}
    for ct, spec in space.cells().items():
        cells[ct] = {
            "num_inputs": spec.num_inputs,
            "num_nodes": spec.num_nodes,
            "ops": list(spec.ops),
            "edges": [list(e) for e in spec.edges],
            "concat": list(spec.concat),
            "reduction": bool(spec.reduction),
        }
    try:
        cfg = space.config()
    except Exception:  # noqa: BLE001 - a space's config() is informative only
        cfg = {"name": getattr(space, "name", "")}
    return {"name": getattr(space, "name", ""), "config": to_jsonable(cfg), "cells": cells}


def _fingerprint(searcher: Any, config: Mapping[str, Any] | None) -> dict[str, Any]:
    search_cfg = (
        searcher.config.to_dict() if hasattr(searcher.config, "to_dict") else to_jsonable(searcher.config)
    )
    return to_jsonable(
        {
            "config": dict(config or {}),
            "search_config": search_cfg,
            "space": space_description(searcher.space),
        }
    )


def _with_new_defaults(saved: Any, current: Any) -> Any:
    """``saved`` with the keys it lacks filled in where the run cannot have differed: the key is absent from
    the saved fingerprint (the run predates the option) and its current value is ``None`` (a CLI option not
    given) or the default of the :class:`~datanas_core.search.SearchConfig` field of that name. New search
    options are added with a default that reproduces the old behaviour, so a run saved before they existed
    resumes under the new code; a non-default value still counts as a difference."""
    import dataclasses

    from datanas_core.search.config import SearchConfig

    defaults = {
        f.name: to_jsonable(f.default)
        for f in dataclasses.fields(SearchConfig)
        if f.default is not dataclasses.MISSING
    }

    def fill(saved: Any, current: Any) -> Any:
        if not (isinstance(saved, Mapping) and isinstance(current, Mapping)):
            return saved
        out = {k: fill(v, current.get(k)) for k, v in saved.items()}
        for k, v in current.items():
            if k not in out and (v is None or (k in defaults and defaults[k] == v)):
                out[k] = v
        return out

    return fill(saved, current)


def _count_flops(model: torch.nn.Module, example: Any) -> int:
    """Multiply-accumulates of Conv/Linear layers for one forward pass of ``example`` (batch of 1)."""
    total = [0]

    def conv_hook(mod: torch.nn.Module, inp: Any, out: torch.Tensor) -> None:
        k = 1
        for s in mod.kernel_size:  # type: ignore[union-attr]
            k *= s
        total[0] += out.numel() * (mod.in_channels // mod.groups) * k  # type: ignore[operator]

    def linear_hook(mod: torch.nn.Module, inp: Any, out: torch.Tensor) -> None:
        total[0] += out.numel() * mod.in_features  # type: ignore[operator]

    handles = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def derived_stats(
    space: Any,
    genotype: Any,
    *,
    derived_kwargs: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    input_dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Parameters (and FLOPs when ``input_shape`` is given) of the network ``space.build_derived`` makes.

    FLOPs are multiply-accumulates of Conv and Linear layers for one sample of shape ``input_shape``
    (without the batch dimension). Returns ``{}`` when the space cannot build the network.
    """
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = space.build_derived(genotype, **dict(derived_kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - optional information
        logger.info("could not build the derived network for the report: %s", exc)
        return {}
    params = sum(p.numel() for p in net.parameters())
    out: dict[str, Any] = {
        "params": int(params),
        "params_M": params / 1e6,
        "derived_kwargs": dict(derived_kwargs or {}),
    }
    aux = sum(p.numel() for n, p in net.named_parameters() if "auxiliary" in n)
    if aux:
        out["params_without_auxiliary"] = int(params - aux)
    if input_shape is not None:
        try:
            example = torch.zeros((1, *input_shape), dtype=input_dtype)
            out["flops"] = int(_count_flops(net, example))
            out["flops_M"] = out["flops"] / 1e6
            out["input_shape"] = list(input_shape)
        except Exception as exc:  # noqa: BLE001
            logger.info("could not count FLOPs of the derived network: %s", exc)
    return out


def _is_searcher(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("fit", "state_dict", "load_state_dict", "derive"))


# ------------------------------------------------------------------------------------------ run_search
def run_search(
    searcher: Any,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    *,
    run_dir: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    resume: bool | str = False,
    checkpoint_every: int | None = None,
    checkpoint_every_epochs: int = 1,
    keep_last: int = 3,
    progress: bool | None = None,
    log_every: int = 50,
    eval_loader: Iterable[Any] | None = None,
    consistency: bool = True,
    consistency_batches: int | None = None,
    collapse: bool | CollapseMonitor = True,
    early_stop_collapse: bool = False,
    nan_guard: bool = True,
    callbacks: Sequence[Any] = (),
    data_files: Sequence[str | os.PathLike[str]] = (),
    derived_kwargs: Mapping[str, Any] | None = None,
    derived_input_shape: Sequence[int] | None = None,
    distributed: DistributedContext | bool | None = None,
    report: bool = True,
    tensorboard: bool = True,
    seed_globals: bool = True,
    resume_ignore: Iterable[str] = DEFAULT_RESUME_IGNORE,
    resume_overrides: Iterable[str] = RESUME_OVERRIDES,
    restart: bool = False,
) -> Any:
    """Run (or resume) a search with a run directory, checkpoints, monitors, progress and a report.

    Args:
        searcher: a :class:`~datanas_core.search.Searcher`, or a zero-argument callable that builds one.
        train_loader: training batches (weights); a :class:`~datanas_core.runtime.DeterministicLoader` makes
            mid-epoch resume bit-exact and is sharded automatically in distributed runs.
        val_loader: validation batches (architecture); ``None`` for single-level search.
        run_dir: the run directory.
        config: the resolved configuration of the run (JSON-able; written to config.json and compared on
            resume). Include everything that defines the run (data, sizes, batch size, ...).
        resume: ``False`` (new run; the directory must not hold one), ``True`` (continue from the newest
            good checkpoint in ``run_dir``; a directory that does not exist or holds no run starts a new
            run, logged) or ``"auto"`` (the same; the name used under torchrun elastic restarts). Command
            lines refuse ``--resume`` of a missing directory before calling this (a mistyped path should
            not start a new run silently).
        checkpoint_every: also checkpoint every this many steps inside epochs (``None``: epoch ends only).
        checkpoint_every_epochs: checkpoint every this many epochs (the last epoch is always saved).
        keep_last: checkpoints kept.
        progress: progress bar/log lines (``None``: bar on a terminal, log lines otherwise; ``False``: none).
        log_every: steps between progress log lines (without a bar).
        eval_loader: batches for the consistency monitor (default ``val_loader``).
        consistency: run the search/child consistency monitor every epoch.
        consistency_batches: evaluate the consistency on at most this many batches (default: the first
            2,048 examples of ``eval_loader``, or all of it if smaller).
        collapse: run the collapse monitor (or pass a configured :class:`CollapseMonitor`).
        early_stop_collapse: stop the search when the collapse monitor fires (3 consecutive epochs).
        nan_guard: stop on NaN/inf and keep the last good checkpoint.
        callbacks: extra searcher callbacks (run before the runtime's writers).
        data_files: data files to checksum into the manifest (in addition to ``data_files`` attributes of
            the loaders' datasets, see :func:`~datanas_core.runtime.collect_data_files`).
        derived_kwargs, derived_input_shape: build the derived network with
            ``space.build_derived(genotype, **derived_kwargs)`` at the end and record its parameters and
            FLOPs (for an input of ``derived_input_shape``, without batch dimension).
        distributed: a :class:`DistributedContext`; ``None`` joins torchrun's process group when the
            environment describes one; ``False`` forces a single process.
        report: write report.html / report.md at the end.
        tensorboard: write TensorBoard event files (when tensorboard is installed).
        seed_globals: seed Python/NumPy/torch global RNGs with ``searcher.config.seed`` on a fresh start.
        resume_ignore: config keys allowed to differ on resume.
        resume_overrides: settings that may change on resume and take effect (see :data:`RESUME_OVERRIDES`).
        restart: start again from step 0 in a directory that holds a run (or a run whose checkpoints are all
            damaged): its files are first moved to ``previous/<timestamp>/``.

    Returns:
        The :class:`~datanas_core.search.SearchResult`.

    The run directory is locked for the whole run (:class:`~datanas_core.runtime.RunLock`): a second
    process on the same directory is refused. A ``resume=True`` of a run that was killed before its first
    checkpoint starts it from step 0. Ctrl-C raises :class:`~datanas_core.errors.RunInterrupted` naming the
    directory to resume.

    Raises:
        ConfigError: resuming a run whose configuration or space differs (the message lists every
            difference), or starting a new run in a directory that holds one; ``run_dir`` is a file or
            cannot be created or written.
        RunLockedError: another process runs in ``run_dir``.
        CheckpointError: resuming a run whose checkpoints were all damaged; a checkpoint cannot be written
            (read-only or full disk; the last good checkpoint is untouched).
        NumericalError: the NaN guard stopped the run (the last good checkpoint is kept).
    """
    if resume not in (True, False, "auto"):
        raise ConfigError(f"resume must be True, False or 'auto', got {resume!r}")
    # -------------------------------------------------------------- distributed context
    if distributed is False:
        ctx = DistributedContext.single()
    elif isinstance(distributed, DistributedContext):
        ctx = distributed
    else:
        ctx = init_distributed()
    is_main = ctx.is_main
    rd = RunDir(run_dir, enabled=is_main, tensorboard=tensorboard)
    lock = None
    if is_main:
        if resume is True and not restart and not rd.path.is_dir():
            logger.info("%s does not exist yet: resume starts a new run there", rd.path)
        prepare_run_dir(rd.path)
        lock = RunLock(rd.path).acquire()
    try:
        if restart and is_main:
            moved = rd.move_aside()
            if moved is not None:
                logger.info("--restart: the previous files of %s were moved to %s", rd.path, moved)
        if restart:
            resume = False
        ckpts = CheckpointManager(rd.checkpoints_dir, keep_last=keep_last, enabled=is_main)
        # -------------------------------------------------------------- searcher
        if not _is_searcher(searcher):
            if not callable(searcher):
                raise ConfigError(
                    f"searcher must be a Searcher or a callable returning one, got {type(searcher).__name__}"
                )
            searcher = searcher()
            if not _is_searcher(searcher):
                raise ConfigError(f"the searcher factory returned {type(searcher).__name__}, not a Searcher")
        fingerprint = _fingerprint(searcher, config)
        # -------------------------------------------------------------- resume or start
        loaded = None
        if resume in (True, "auto"):
            chosen = None
            if is_main:
                found = ckpts.load_latest()
                chosen = str(found[0].path) if found else None
                loaded = found
            chosen = ctx.broadcast_object(chosen)
            if not is_main and chosen is not None:
                from datanas_core.runtime.checkpoint import CheckpointInfo, read_checkpoint

                info = CheckpointInfo.parse(Path(chosen))
                loaded = (info, read_checkpoint(chosen)) if info is not None else None
            if loaded is None and is_main:
                corrupt = ckpts.corrupt_files()
                if corrupt:
                    raise CheckpointError(
                        f"cannot resume {str(rd.path)!r}: every checkpoint was damaged and set aside "
                        f"({', '.join(p.name for p in corrupt[-3:])}"
                        + (f" and {len(corrupt) - 3} more" if len(corrupt) > 3 else "")
                        + f"). {ALL_DAMAGED_ADVICE}"
                    )
                if rd.exists():
                    logger.info(
                        "%s was stopped before its first checkpoint: starting it again from step 0", rd.path
                    )
        elif is_main and (ckpts.list() or rd.exists()):
            raise ConfigError(
                f"{str(rd.path)!r} already holds a run; pass resume=True (--resume {rd.path}) to continue it, "
                "or choose another output directory"
            )
        if loaded is not None:
            info, state = loaded
            saved_fp = state.get("fingerprint", {})
            overridable = frozenset(resume_overrides)
            saved_cfg = saved_fp.get("config") if isinstance(saved_fp.get("config"), Mapping) else {}
            groups = [f"config.{g}" for g, v in saved_cfg.items() if isinstance(v, Mapping)]  # type: ignore[union-attr]
            ignore = frozenset(f"config.{k}" for k in resume_ignore) | frozenset(
                f"{prefix}.{k}" for k in overridable for prefix in ("config", "search_config", *groups)
            )
            diffs = describe_mismatch(_with_new_defaults(saved_fp, fingerprint), fingerprint, ignore=ignore)
            if diffs:
                raise ConfigError(
                    f"cannot resume {str(rd.path)!r}: the run was made with a different configuration or "
                    f"space ({len(diffs)} difference(s)): "
                    + "; ".join(diffs[:12])
                    + ("; ..." if len(diffs) > 12 else "")
                    + f". Only these may change on resume: {', '.join(sorted(overridable))}"
                )
            try:
                searcher.load_state_dict(state["searcher"])
            except (KeyError, RuntimeError, ValueError) as exc:
                raise CheckpointError(
                    f"checkpoint {str(info.path)!r} does not fit this searcher: {exc}"
                ) from exc
            changed = _apply_resume_overrides(searcher, saved_fp.get("search_config") or {})
            if changed:
                logger.info("resume overrides: %s", ", ".join(changed))
            gens = (
                {"searcher": searcher.generator}
                if isinstance(getattr(searcher, "generator", None), torch.Generator)
                else {}
            )
            restore_rng_state(state["rng"], gens)
            dropped = rd.truncate_metrics(step=int(state["global_step"]), epoch=int(state["epoch"]))
            # TensorBoard drops its events after the checkpoint
            rd.tensorboard(purge_step=int(state["global_step"]) + 1)
            logger.info(
                "resuming %s from %s (epoch %d, batch %d, step %d; dropped %d later metric records)",
                rd.path,
                info.path.name,
                state["epoch"],
                state["batch"],
                state["global_step"],
                dropped,
            )
        else:
            state = None
            if is_main and rd.metrics_path.is_file():
                # "auto" start over a run that was killed before its first checkpoint
                rd.truncate_metrics(step=0, epoch=0)
            if seed_globals:
                seed_everything(int(getattr(searcher.config, "seed", 0)))
        # -------------------------------------------------------------- loaders
        steps_per_epoch = _len_or_none(train_loader)
        if ctx.world_size > 1:
            train_loader = _shard(train_loader, ctx)
            val_loader = _shard(val_loader, ctx) if val_loader is not None else None
            steps_per_epoch = _len_or_none(train_loader)
        if eval_loader is None:
            eval_loader = val_loader
        if (
            val_loader is not None
            and steps_per_epoch
            and hasattr(val_loader, "set_epoch")
            and hasattr(val_loader, "__len__")
        ):
            srch = searcher
            val_loader = EpochStream(val_loader, steps_per_epoch, lambda: int(srch.epoch))
        # -------------------------------------------------------------- callbacks
        counter = StepCounter()
        guard = NaNGuard() if nan_guard else None
        runtime_cbs: list[Any] = []
        sync = attach_distributed(searcher, ctx) if ctx.world_size > 1 else None
        if sync is not None:
            runtime_cbs.append(sync)
        if consistency:
            runtime_cbs.append(ConsistencyMonitor(eval_loader, max_batches=consistency_batches))
        collapse_mon: CollapseMonitor | None = None
        if isinstance(collapse, CollapseMonitor):
            collapse_mon = collapse
        elif collapse:
            collapse_mon = CollapseMonitor(early_stop=early_stop_collapse)
        if collapse_mon is not None:
            runtime_cbs.append(collapse_mon)
        runtime_cbs.append(DecisionMonitor())  # per-edge decision statistics, verdict at the end
        runtime_cbs.extend(callbacks)
        if guard is not None:
            runtime_cbs.append(guard)
        runtime_cbs.append(MetricsLogger(rd, counter, log_every=1))
        if progress is not False:
            runtime_cbs.append(
                ProgressCallback(steps_per_epoch, use_tqdm=progress, log_every=log_every, enabled=is_main)
            )
        stateful: dict[str, Any] = {}
        for cb in runtime_cbs:
            if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
                name = type(cb).__name__
                n = sum(1 for k in stateful if k.split("#")[0] == name)
                stateful[f"{name}#{n}"] = cb

        def state_fn(s: Any, batches_done: int) -> dict[str, Any]:
            sd = s.state_dict()
            sd["batch_in_epoch"] = batches_done
            gens = (
                {"searcher": s.generator}
                if isinstance(getattr(s, "generator", None), torch.Generator)
                else {}
            )
            return {
                "format": CHECKPOINT_FORMAT,
                "epoch": int(s.epoch),
                "batch": int(batches_done),
                "global_step": int(s.global_step),
                "searcher": sd,
                "rng": capture_rng_state(gens),
                "callbacks": {k: cb.state_dict() for k, cb in stateful.items()},
                "fingerprint": fingerprint,
                "time": time.time(),
            }

        ckpt_cb = CheckpointCallback(
            ckpts,
            state_fn,
            counter,
            every_steps=checkpoint_every,
            every_epochs=checkpoint_every_epochs,
            steps_per_epoch=steps_per_epoch,
            healthy=guard.healthy if guard is not None else None,
        )
        runtime_cbs.append(ckpt_cb)
        runtime_cbs.append(counter)
        if state is not None:
            for k, cb in stateful.items():
                if k in state.get("callbacks", {}):
                    cb.load_state_dict(state["callbacks"][k])
        # -------------------------------------------------------------- run directory
        if is_main:
            rd.write_config(to_jsonable(dict(config or {})))
            files = [*data_files, *collect_data_files(train_loader, val_loader, eval_loader)]
            if state is None:
                rd.write_manifest(
                    build_manifest(
                        config=config,
                        seed=getattr(searcher.config, "seed", None),
                        device=getattr(searcher, "device", None),
                        data_files=files,
                        world_size=ctx.world_size,
                        extra={"distributed": describe(ctx), "search_config": fingerprint["search_config"]},
                    )
                )
                from datanas_core.runtime._fs import atomic_write
                from datanas_core.runtime._jsonutil import dumps

                atomic_write(rd.path / "space.json", (dumps(fingerprint["space"], indent=2) + "\n").encode())
            else:
                m = rd.read_manifest()
                resumes = list(m.get("resumes", []))
                resumes.append(
                    {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from": str(loaded[0].path.name)}
                )  # type: ignore[index]
                rd.update_manifest(resumes=resumes)
            rd.append_metrics(
                {
                    "kind": "event",
                    "event": "resume" if state is not None else "start",
                    "step": int(searcher.global_step),
                    "epoch": int(searcher.epoch),
                }
            )
        # -------------------------------------------------------------- search
        previous = list(getattr(searcher, "callbacks", []))
        searcher.callbacks = [*previous, *runtime_cbs]
        status = "running"
        result = None
        try:
            result = searcher.fit(train_loader, val_loader)
            if guard is not None and guard.tripped:
                raise NumericalError(
                    f"the NaN/inf guard stopped the search: {guard.reason}. "
                    + _nan_advice(rd.path, ckpt_cb.last_path or ckpts.latest_path())
                )
            status = "stopped_early" if getattr(result, "stopped_early", False) else "completed"
        except NumericalError as exc:
            status = "failed_numerical"
            if guard is not None and guard.tripped:
                raise
            raise NumericalError(
                f"{exc}. " + _nan_advice(rd.path, ckpt_cb.last_path or ckpts.latest_path())
            ) from exc
        except KeyboardInterrupt:
            status = "interrupted"
            raise RunInterrupted(str(rd.path)) from None
        except BaseException:
            status = "failed"
            raise
        finally:
            searcher.callbacks = previous
            if is_main:
                _finish(
                    rd, searcher, result, status, guard, ckpts, derived_kwargs, derived_input_shape, report
                )
            rd.close()
        return result
    finally:
        if lock is not None:
            lock.release()


def _nan_advice(run_dir: Path, last: Path | None) -> str:
    """What to do after the NaN guard stopped a run (matches what resume accepts)."""
    if last is None:
        return (
            "No checkpoint exists yet (the run failed before its first one), so there is nothing to resume: "
            f"start it again with a lower learning rate (--w-lr/--a-lr, with --restart in {str(run_dir)!r} "
            "or a new --out)"
        )
    return (
        f"The last good checkpoint {last.name} is kept: resume from it with a lower learning rate "
        f"(--resume {run_dir} with a smaller --w-lr/--a-lr; learning rates, epochs, checkpoint cadence and "
        "logging may change on resume)"
    )


def _apply_resume_overrides(searcher: Any, saved: Mapping[str, Any]) -> list[str]:
    """Make changed learning rates and epoch counts take effect after ``load_state_dict`` restored the
    saved optimiser and scheduler states; returns ``"name old -> new"`` for each change applied."""
    cfg = getattr(searcher, "config", None)
    changed: list[str] = []

    def differs(name: str) -> tuple[float, float] | None:
        old, new = saved.get(name), getattr(cfg, name, None)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
        return (float(old), float(new)) if numbers and old != new else None  # type: ignore[arg-type]

    w_opt, sched = getattr(searcher, "w_optimizer", None), getattr(searcher, "w_scheduler", None)
    w = differs("w_lr")
    if w is not None and w[0] > 0 and w_opt is not None:
        ratio = w[1] / w[0]
        for g in w_opt.param_groups:
            g["lr"] *= ratio
            if "initial_lr" in g:
                g["initial_lr"] = w[1]
        if sched is not None and hasattr(sched, "base_lrs"):
            sched.base_lrs = [b * ratio for b in sched.base_lrs]
            sched._last_lr = [g["lr"] for g in w_opt.param_groups]
        changed.append(f"w_lr {w[0]:g} -> {w[1]:g}")
    a = differs("a_lr")
    a_opt = getattr(searcher, "a_optimizer", None)
    if a is not None and a_opt is not None:
        for g in a_opt.param_groups:
            g["lr"] = a[1]
        changed.append(f"a_lr {a[0]:g} -> {a[1]:g}")
    e = differs("epochs")
    if e is not None:
        if sched is not None and hasattr(sched, "T_max"):
            sched.T_max = int(e[1])
        changed.append(f"epochs {int(e[0])} -> {int(e[1])}")
    for name in ("precision", "compile"):  # take effect by themselves (the searcher reads its config)
        old, new = saved.get(name), getattr(cfg, name, None)
        if old is not None and new is not None and old != new:
            changed.append(f"{name} {old} -> {new}")
    return changed


def _finish(
    rd: RunDir,
    searcher: Any,
    result: Any,
    status: str,
    guard: NaNGuard | None,
    ckpts: CheckpointManager,
    derived_kwargs: Mapping[str, Any] | None,
    derived_input_shape: Sequence[int] | None,
    report: bool,
) -> None:
    summary: dict[str, Any] = {
        "status": status,
        "epoch": int(searcher.epoch),
        "global_step": int(searcher.global_step),
    }
    if guard is not None and guard.tripped:
        summary["nan_guard"] = guard.reason
    latest = ckpts.latest_path()
    summary["last_checkpoint"] = latest.name if latest else None
    history = list(getattr(result, "history", None) or getattr(searcher, "history", []))
    if history:
        last = history[-1]
        summary["final"] = {
            k: v for k, v in last.items() if k not in ("genotype", "collapse", "probs", "decision")
        }
        if "decided" in last:
            summary["decision"] = {"decided": last["decided"], "verdict": last.get("decision_verdict")}
    approximations = list(getattr(getattr(searcher, "config", None), "approximations", None) or [])
    if approximations:
        summary["approximations"] = approximations
    execution = getattr(searcher, "execution", None)
    if isinstance(execution, Mapping):
        # precision and the compile mode actually used (eager after a fallback), also in the manifest
        summary["execution"] = dict(execution)
        try:
            rd.update_manifest(execution=dict(execution))
        except OSError as exc:
            logger.warning("could not record the execution settings in the manifest: %s", exc)
    if result is not None and status in ("completed", "stopped_early"):
        genotype = result.genotype
        rd.save_genotype(genotype)
        summary["genotype"] = genotype.to_dict()
        if derived_kwargs is not None or derived_input_shape is not None:
            summary["derived"] = derived_stats(
                searcher.space, genotype, derived_kwargs=derived_kwargs, input_shape=derived_input_shape
            )
    try:
        rd.append_metrics(
            {
                "kind": "event",
                "event": status,
                "step": int(searcher.global_step),
                "epoch": int(searcher.epoch),
            }
        )
        rd.write_summary(summary)
    except OSError as exc:
        logger.error("could not write the run summary: %s", exc)
        return
    if report and status in ("completed", "stopped_early"):
        try:
            from datanas_core.runtime.report import build_report

            paths = build_report(rd.path)
            logger.info("report: %s", paths["html"])
        except Exception as exc:  # noqa: BLE001 - a report failure must not fail the search
            logger.warning("could not write the report: %s", exc)


def _len_or_none(loader: Any) -> int | None:
    try:
        return int(len(loader))
    except TypeError:
        return None


def _shard(loader: Any, ctx: DistributedContext) -> Any:
    sampler = getattr(loader, "sampler", None)
    if hasattr(loader, "shard") and getattr(sampler, "world_size", None) == 1:
        return loader.shard(ctx.rank, ctx.world_size)
    if getattr(sampler, "world_size", ctx.world_size) != ctx.world_size:
        raise ConfigError(
            f"loader is sharded for world size {sampler.world_size}, but {ctx.world_size} processes run"  # type: ignore[union-attr]
        )
    if sampler is None or not hasattr(sampler, "world_size"):
        logger.warning(
            "distributed run with a %s loader: every rank reads every batch; use DeterministicLoader "
            "to shard it",
            type(loader).__name__,
        )
    return loader


# ------------------------------------------------------------------------------------------ CLI helpers
def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """``"0,1,2"``, ``"0-4"``, ``"3"`` or a list -> list of seeds (order kept, duplicates removed).

    Raises:
        ConfigError: not a list of non-negative integers.
    """
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1)
                    seeds.extend(range(int(lo), int(hi) + 1))
                else:
                    seeds.append(int(part))
            except ValueError:
                raise ConfigError(f"cannot parse seeds {text!r}: use e.g. '0,1,2' or '0-4'") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"seeds must be non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 1024,
    "m": 1e6,
    "mb": 1e6,
    "mib": 1024**2,
    "g": 1e9,
    "gb": 1e9,
    "gib": 1024**3,
    "t": 1e12,
    "tb": 1e12,
    "tib": 1024**4,
}


def parse_memory(text: str | float | int | None) -> int | None:
    """``"8GiB"``, ``"512M"``, ``"16e9"`` -> bytes (``None`` stays ``None``).

    Raises:
        ConfigError: unparsable size.
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return int(text)
    s = text.strip().lower().replace(" ", "")
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num) :]
    if unit not in _UNITS:
        raise ConfigError(
            f"unknown memory unit {unit!r} in {text!r}; valid: {', '.join(u for u in _UNITS if u)}"
        )
    try:
        return int(float(num) * _UNITS[unit])
    except ValueError:
        raise ConfigError(f"cannot parse memory size {text!r} (e.g. '8GiB', '512M')") from None


@dataclass
class RuntimeOptions:
    """The runtime flags interpreted (see :func:`add_runtime_args`): the run directory, the resume mode, the
    seed list and the memory budget in bytes; the other defaults are :class:`RuntimeArgs`' (the flags')."""

    out: Path
    resume: bool | str = False
    seeds: list[int] = field(default_factory=lambda: [RuntimeArgs.seed])
    dry_run: bool = RuntimeArgs.dry_run
    memory_budget: int | None = None
    checkpoint_every: int | None = RuntimeArgs.checkpoint_every
    keep_last: int = RuntimeArgs.keep_last
    progress: bool | None = RuntimeArgs.progress
    log_every: int = RuntimeArgs.log_every
    early_stop_collapse: bool = RuntimeArgs.early_stop_collapse
    device: str | None = RuntimeArgs.device
    report: bool = RuntimeArgs.report
    verbose: int = RuntimeArgs.verbose
    restart: bool = RuntimeArgs.restart
    debug: bool = RuntimeArgs.debug

    @property
    def multi_seed(self) -> bool:
        return len(self.seeds) > 1

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, *, default_out: str | os.PathLike[str] = "runs"
    ) -> RuntimeOptions:
        """Interpret the flags: ``--resume DIR`` sets ``out=DIR, resume=True``; under a torchrun elastic
        restart (``TORCHELASTIC_RESTART_COUNT > 0``) a fresh run becomes ``resume="auto"``.

        Raises:
            ConfigError: ``--resume`` together with a different ``--out``; bad seeds or memory budget.
        """
        from datanas_core.cli_options import dataclass_from_args

        flags: RuntimeArgs = dataclass_from_args(RuntimeArgs, args)  # refuses a bad count (--keep-last 0)
        resume: bool | str = False
        out = flags.out
        if flags.resume is not None:
            if out is not None and Path(out).resolve() != Path(flags.resume).resolve():
                raise ConfigError(
                    f"--resume {flags.resume} and --out {out} disagree; pass only --resume RUN_DIR"
                )
            if flags.restart:
                raise ConfigError(
                    "--restart starts over and --resume continues: pass one of them "
                    f"(--out {flags.resume} --restart, or --resume {flags.resume})"
                )
            if not Path(flags.resume).is_dir():
                raise ConfigError(f"--resume {flags.resume}: no such run directory")
            out, resume = flags.resume, True
        elif int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
            resume = "auto"
        if out is None:
            out = Path(default_out) / time.strftime("%Y%m%d-%H%M%S")
        return cls(
            out=Path(out),
            resume=resume,
            seeds=parse_seeds(flags.seeds) if flags.seeds else [int(flags.seed)],
            dry_run=bool(flags.dry_run),
            memory_budget=parse_memory(flags.memory_budget),
            checkpoint_every=flags.checkpoint_every,
            keep_last=flags.keep_last,
            progress=flags.progress,
            log_every=flags.log_every,
            early_stop_collapse=bool(flags.early_stop_collapse),
            device=flags.device,
            report=bool(flags.report),
            verbose=int(flags.verbose or 0),
            restart=bool(flags.restart),
            debug=bool(flags.debug),
        )

    def run_dir_for(self, seed: int) -> Path:
        """``out`` for a single seed, ``out/seed_<seed>`` with several."""
        return self.out / f"seed_{seed}" if self.multi_seed else self.out

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`run_search` (all but ``run_dir``/``config``).

        Resuming several seeds resumes each seed's directory that exists and starts the others (a run
        stopped during its first seeds), so ``resume`` is ``"auto"`` per seed then.
        """
        resume = "auto" if self.resume is True and self.multi_seed else self.resume
        return {
            "resume": resume,
            "checkpoint_every": self.checkpoint_every,
            "keep_last": self.keep_last,
            "progress": self.progress,
            "log_every": self.log_every,
            "early_stop_collapse": self.early_stop_collapse,
            "report": self.report,
            "restart": self.restart,
        }

    def torch_device(self) -> torch.device:
        """``--device`` or the default: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
        if self.device:
            return torch.device(self.device)
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
        return torch.device("cpu")


def configure_logging(verbose: int = 0, *, rank: int | None = None) -> None:
    """Logging setup for CLIs (INFO by default, DEBUG with ``-vv``; non-zero ranks log warnings only)."""
    if rank is None:
        rank = int(os.environ.get("RANK", "0") or 0)
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    if rank != 0:
        level = logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
