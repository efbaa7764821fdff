"""The runtime around the search loop: run directories, checkpoints and bit-exact resume, progress,
monitors, reports with cell pictures, distributed search, dry runs and multi-seed summaries.

Domain CLIs call :func:`run_search` (one run) and :func:`run_seeds` (several seeds), and add the shared
flags with :func:`add_runtime_args` (parsed by :meth:`RuntimeOptions.from_args`).
"""

from __future__ import annotations

from datanas_core.entry import cli_entry, one_line_errors
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
from datanas_core.runtime.data import DeterministicBatchSampler, DeterministicLoader, EpochStream, epoch_seed
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
from datanas_core.runtime.multiseed import MultiSeedSummary, genotype_similarity, run_seeds, summarize_runs
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
    RuntimeOptions,
    add_runtime_args,
    configure_logging,
    derived_stats,
    parse_memory,
    parse_seeds,
    run_search,
)

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
