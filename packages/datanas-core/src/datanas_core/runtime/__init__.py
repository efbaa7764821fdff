"""The runtime around the search loop: run directories, checkpoints and bit-exact resume, progress,
monitors, reports with cell pictures, distributed search, dry runs and multi-seed summaries.

Domain CLIs call :func:`run_search` (one run) and :func:`run_seeds` (several seeds), and add the shared
flags with :func:`add_runtime_args` (parsed by :meth:`RuntimeOptions.from_args`).
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from datanas_core.entry import cli_entry, one_line_errors

if TYPE_CHECKING:
    from datanas_core.runtime.callbacks import CheckpointCallback, MetricsLogger
    from datanas_core.runtime.cellplot import (
        cell_graph,
        cell_to_dot,
        cell_to_svg,
        genotype_to_dot,
        genotype_to_svgs,
        is_param_free_op,
    )
    from datanas_core.runtime.checkpoint import (
        CheckpointInfo,
        CheckpointManager,
        read_checkpoint,
        write_checkpoint,
    )
    from datanas_core.runtime.data import (
        DeterministicBatchSampler,
        DeterministicLoader,
        EpochStream,
        epoch_seed,
    )
    from datanas_core.runtime.distributed import DistributedContext, attach_distributed, init_distributed
    from datanas_core.runtime.dryrun import DryRunReport, dry_run
    from datanas_core.runtime.monitors import (
        CollapseMonitor,
        ConsistencyMonitor,
        DecisionMonitor,
        NaNGuard,
        collapse_stats,
        decision_stats,
    )
    from datanas_core.runtime.multiseed import (
        MultiSeedSummary,
        genotype_similarity,
        run_seeds,
        summarize_runs,
    )
    from datanas_core.runtime.progress import ProgressCallback
    from datanas_core.runtime.report import (
        append_result,
        build_report,
        find_run_dir,
        load_run,
        record_retraining,
    )
    from datanas_core.runtime.rng import capture_rng_state, restore_rng_state, seed_everything
    from datanas_core.runtime.rundir import (
        RunDir,
        RunLock,
        build_manifest,
        collect_data_files,
        register_data_files,
    )
    from datanas_core.runtime.runner import (
        RESUME_OVERRIDES,
        RuntimeArgs,
        RuntimeOptions,
        add_runtime_args,
        configure_logging,
        derived_stats,
        parse_memory,
        parse_seeds,
        run_search,
    )

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "CheckpointCallback": ("datanas_core.runtime.callbacks", "CheckpointCallback"),
    "MetricsLogger": ("datanas_core.runtime.callbacks", "MetricsLogger"),
    "cell_graph": ("datanas_core.runtime.cellplot", "cell_graph"),
    "cell_to_dot": ("datanas_core.runtime.cellplot", "cell_to_dot"),
    "cell_to_svg": ("datanas_core.runtime.cellplot", "cell_to_svg"),
    "genotype_to_dot": ("datanas_core.runtime.cellplot", "genotype_to_dot"),
    "genotype_to_svgs": ("datanas_core.runtime.cellplot", "genotype_to_svgs"),
    "is_param_free_op": ("datanas_core.runtime.cellplot", "is_param_free_op"),
    "CheckpointInfo": ("datanas_core.runtime.checkpoint", "CheckpointInfo"),
    "CheckpointManager": ("datanas_core.runtime.checkpoint", "CheckpointManager"),
    "read_checkpoint": ("datanas_core.runtime.checkpoint", "read_checkpoint"),
    "write_checkpoint": ("datanas_core.runtime.checkpoint", "write_checkpoint"),
    "DeterministicBatchSampler": ("datanas_core.runtime.data", "DeterministicBatchSampler"),
    "DeterministicLoader": ("datanas_core.runtime.data", "DeterministicLoader"),
    "EpochStream": ("datanas_core.runtime.data", "EpochStream"),
    "epoch_seed": ("datanas_core.runtime.data", "epoch_seed"),
    "DistributedContext": ("datanas_core.runtime.distributed", "DistributedContext"),
    "attach_distributed": ("datanas_core.runtime.distributed", "attach_distributed"),
    "init_distributed": ("datanas_core.runtime.distributed", "init_distributed"),
    "DryRunReport": ("datanas_core.runtime.dryrun", "DryRunReport"),
    "dry_run": ("datanas_core.runtime.dryrun", "dry_run"),
    "CollapseMonitor": ("datanas_core.runtime.monitors", "CollapseMonitor"),
    "ConsistencyMonitor": ("datanas_core.runtime.monitors", "ConsistencyMonitor"),
    "DecisionMonitor": ("datanas_core.runtime.monitors", "DecisionMonitor"),
    "NaNGuard": ("datanas_core.runtime.monitors", "NaNGuard"),
    "collapse_stats": ("datanas_core.runtime.monitors", "collapse_stats"),
    "decision_stats": ("datanas_core.runtime.monitors", "decision_stats"),
    "MultiSeedSummary": ("datanas_core.runtime.multiseed", "MultiSeedSummary"),
    "genotype_similarity": ("datanas_core.runtime.multiseed", "genotype_similarity"),
    "run_seeds": ("datanas_core.runtime.multiseed", "run_seeds"),
    "summarize_runs": ("datanas_core.runtime.multiseed", "summarize_runs"),
    "ProgressCallback": ("datanas_core.runtime.progress", "ProgressCallback"),
    "append_result": ("datanas_core.runtime.report", "append_result"),
    "build_report": ("datanas_core.runtime.report", "build_report"),
    "find_run_dir": ("datanas_core.runtime.report", "find_run_dir"),
    "load_run": ("datanas_core.runtime.report", "load_run"),
    "record_retraining": ("datanas_core.runtime.report", "record_retraining"),
    "capture_rng_state": ("datanas_core.runtime.rng", "capture_rng_state"),
    "restore_rng_state": ("datanas_core.runtime.rng", "restore_rng_state"),
    "seed_everything": ("datanas_core.runtime.rng", "seed_everything"),
    "RunDir": ("datanas_core.runtime.rundir", "RunDir"),
    "RunLock": ("datanas_core.runtime.rundir", "RunLock"),
    "build_manifest": ("datanas_core.runtime.rundir", "build_manifest"),
    "collect_data_files": ("datanas_core.runtime.rundir", "collect_data_files"),
    "register_data_files": ("datanas_core.runtime.rundir", "register_data_files"),
    "RESUME_OVERRIDES": ("datanas_core.runtime.runner", "RESUME_OVERRIDES"),
    "RuntimeArgs": ("datanas_core.runtime.cli_args", "RuntimeArgs"),
    "RuntimeOptions": ("datanas_core.runtime.runner", "RuntimeOptions"),
    "add_runtime_args": ("datanas_core.runtime.cli_args", "add_runtime_args"),
    "configure_logging": ("datanas_core.runtime.runner", "configure_logging"),
    "derived_stats": ("datanas_core.runtime.runner", "derived_stats"),
    "parse_memory": ("datanas_core.runtime.runner", "parse_memory"),
    "parse_seeds": ("datanas_core.runtime.runner", "parse_seeds"),
    "run_search": ("datanas_core.runtime.runner", "run_search"),
}

__all__ = [
    "CheckpointCallback",
    "CheckpointInfo",
    "CheckpointManager",
    "CollapseMonitor",
    "ConsistencyMonitor",
    "DecisionMonitor",
    "DeterministicBatchSampler",
    "DeterministicLoader",
    "DistributedContext",
    "DryRunReport",
    "EpochStream",
    "MetricsLogger",
    "MultiSeedSummary",
    "NaNGuard",
    "ProgressCallback",
    "RESUME_OVERRIDES",
    "RunDir",
    "RunLock",
    "RuntimeArgs",
    "RuntimeOptions",
    "add_runtime_args",
    "append_result",
    "attach_distributed",
    "build_manifest",
    "build_report",
    "capture_rng_state",
    "cell_graph",
    "cell_to_dot",
    "cell_to_svg",
    "cli_entry",
    "collapse_stats",
    "decision_stats",
    "collect_data_files",
    "configure_logging",
    "derived_stats",
    "dry_run",
    "epoch_seed",
    "find_run_dir",
    "genotype_similarity",
    "genotype_to_dot",
    "genotype_to_svgs",
    "init_distributed",
    "is_param_free_op",
    "load_run",
    "one_line_errors",
    "parse_memory",
    "parse_seeds",
    "read_checkpoint",
    "record_retraining",
    "register_data_files",
    "restore_rng_state",
    "run_search",
    "run_seeds",
    "seed_everything",
    "summarize_runs",
    "write_checkpoint",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_core.runtime' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
