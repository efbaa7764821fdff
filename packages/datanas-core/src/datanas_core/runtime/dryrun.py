"""``--dry-run``: one search step on a synthetic batch, its time and peak memory, and a batch-size suggestion.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA. On CPU it is the size of the searcher's
long-lived tensors (weights, gradients, buffers, optimiser states) plus the peak of what torch's CPU
allocator holds during the step (torch profiler memory events); if the profiler is unavailable, the peak
increase of the resident set size is used instead (less precise: freed memory is reused). The
step is measured at two batch sizes to fit ``memory(b) = base + per_sample * b``, from which the largest
batch that fits ``memory_budget`` is suggested. The searcher's state (weights, α, optimisers, RNGs) is
restored afterwards, so a dry run does not change it.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from datanas_core.errors import ConfigError
from datanas_core.runtime.rng import capture_rng_state, restore_rng_state

__all__ = ["DryRunReport", "dry_run", "format_bytes"]

logger = logging.getLogger(__name__)


def format_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if n is None:
        return "?"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.1f} {unit}" if unit != "B" else f"{int(v)} B"
        v /= 1024
    return f"{v:.1f} TiB"  # pragma: no cover


@dataclass
class DryRunReport:
    """Result of :func:`dry_run` (all memory figures in bytes)."""

    batch_size: int
    step_time_s: float
    peak_memory: int
    memory_kind: str
    device: str
    supernet_params: int
    arch_params: int
    probe_batch_size: int | None = None
    probe_peak_memory: int | None = None
    per_sample_memory: float | None = None
    base_memory: float | None = None
    memory_budget: int | None = None
    suggested_batch_size: int | None = None
    fits: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        lines = [
            f"dry run on {self.device}: supernet {self.supernet_params:,} weights, {self.arch_params:,} "
            "architecture parameters",
            f"  batch {self.batch_size}: step {self.step_time_s * 1000:.1f} ms, peak memory "
            f"{format_bytes(self.peak_memory)} ({self.memory_kind})",
        ]
        if self.per_sample_memory is not None:
            lines.append(
                f"  ~{format_bytes(self.per_sample_memory)} per sample + "
                f"{format_bytes(self.base_memory)} fixed "
                f"(from batch {self.probe_batch_size}: {format_bytes(self.probe_peak_memory)})"
            )
        if self.memory_budget is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(
                f"  budget {format_bytes(self.memory_budget)}: batch {self.batch_size} {verdict}; "
                f"largest batch that fits: {self.suggested_batch_size}"
            )
        return "\n".join(lines)


def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _hwm() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class _PeakRSS:
    """Peak resident set size while the block runs (bytes)."""

    def __enter__(self) -> _PeakRSS:
        gc.collect()
        self.before = _rss()
        self.peak = self.before
        self._hwm_ok = _reset_hwm() and _hwm() is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self._hwm_ok:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.0005)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._hwm_ok:
            self.peak = max(self.peak, _hwm() or 0)
        self.peak = max(self.peak, _rss())


def _tensor_bytes(searcher: Any) -> int:
    """Bytes of the searcher's long-lived tensors: parameters, gradients, buffers, optimiser states."""
    seen: set[int] = set()
    n = 0

    def add(t: Any) -> None:
        nonlocal n
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                n += t.untyped_storage().nbytes()

    for mod in (searcher.supernet, searcher.distribution):
        for t in (*mod.parameters(), *mod.buffers()):
            add(t)
            add(t.grad)
    for opt_name in ("w_optimizer", "a_optimizer"):
        opt = getattr(searcher, opt_name, None)
        for st in getattr(opt, "state", {}).values():
            for v in st.values():
                add(v)
    return n


def _profiled_peak(fn: Callable[[], Any]) -> int | None:
    """Peak bytes allocated by torch's CPU allocator while ``fn`` runs (torch profiler memory events)."""
    import json
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            prof.export_chrome_trace(path)
            with open(path, encoding="utf-8") as fh:
                events = json.load(fh).get("traceEvents", [])
    except Exception as exc:  # noqa: BLE001 - fall back to RSS
        logger.debug("profiler memory measurement failed: %s", exc)
        return None
    totals = [
        e["args"].get("Total Allocated", 0) for e in events if e.get("name") == "[memory]" and "args" in e
    ]
    return int(max([0, *totals]))


def _measure(searcher: Any, batch: Any) -> tuple[float, int, str]:
    dev = searcher.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        searcher.step(batch, batch)
        torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        return dt, int(torch.cuda.max_memory_allocated(dev)), "cuda max_memory_allocated"
    t0 = time.perf_counter()
    searcher.step(batch, batch)
    dt = time.perf_counter() - t0
    resident = _tensor_bytes(searcher)
    peak = _profiled_peak(lambda: searcher.step(batch, batch))
    if peak is not None:
        return dt, resident + peak, "cpu: model tensors + peak allocated during the step"
    with _PeakRSS() as m:
        searcher.step(batch, batch)
    return dt, int(m.peak - m.before + resident), "cpu: model tensors + peak RSS increase"


def dry_run(
    searcher: Any,
    make_batch: Callable[[int], Any],
    *,
    batch_size: int,
    memory_budget: int | None = None,
    probe_batch_size: int | None = None,
    warmup: bool = True,
    steps_per_epoch: int | None = None,
) -> DryRunReport:
    """Measure one search step (architecture + weight step) on synthetic batches.

    The measured step is a full one even when the search starts with weights-only epochs
    (``arch_warmup_epochs``): the searcher is put at the first architecture epoch for the measurement, so
    the architecture step's time and memory (the larger part for exact EGS) are counted. Per-step schedules
    (``schedule_unit="step"``, ``arch_travel``) need the number of steps per epoch, which a step outside
    :meth:`~datanas_core.search.Searcher.fit` does not know: ``steps_per_epoch`` (default: the searcher's own,
    else 1) is used for the measurement only; it changes the architecture learning rate of the measured
    step, not its cost.

    Args:
        searcher: a :class:`~datanas_core.search.Searcher` (or a zero-argument factory of one); its state is
            restored afterwards.
        make_batch: ``make_batch(batch_size) -> batch`` in the task's batch format, on the searcher's device.
        batch_size: the batch size to check.
        memory_budget: bytes available; enables the batch-size suggestion.
        probe_batch_size: second batch size for the memory model (default ``max(1, batch_size // 2)``).
        warmup: run one untimed step first (allocator and lazy initialisation).
        steps_per_epoch: steps per epoch for per-step schedules during the measurement (see above).

    Raises:
        ConfigError: a non-positive batch size or ``steps_per_epoch``.
    """
    if not callable(getattr(searcher, "step", None)):
        searcher = searcher()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if steps_per_epoch is not None and (
        isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1
    ):
        raise ConfigError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
    probe = probe_batch_size or max(1, batch_size // 2)
    gens = (
        {"searcher": searcher.generator}
        if isinstance(getattr(searcher, "generator", None), torch.Generator)
        else {}
    )
    saved_state = copy.deepcopy(searcher.state_dict())
    saved_rng = capture_rng_state(gens)
    saved_callbacks = list(getattr(searcher, "callbacks", []))
    saved_spe = getattr(searcher, "steps_per_epoch", None)
    searcher.callbacks = []
    try:
        searcher.steps_per_epoch = steps_per_epoch or saved_spe or 1
        cfg = searcher.config
        if searcher.epoch < cfg.arch_warmup_epochs < cfg.epochs:  # measure a step with its architecture step
            searcher.epoch = int(cfg.arch_warmup_epochs)
            searcher.global_step = max(searcher.global_step, searcher.epoch * searcher.steps_per_epoch)
        if warmup:
            searcher.step(make_batch(probe), make_batch(probe))
        dt, peak, kind = _measure(searcher, make_batch(batch_size))
        report = DryRunReport(
            batch_size=batch_size,
            step_time_s=dt,
            peak_memory=peak,
            memory_kind=kind,
            device=str(searcher.device),
            supernet_params=sum(p.numel() for p in searcher.supernet.parameters()),
            arch_params=sum(p.numel() for p in searcher.distribution.parameters()),
            memory_budget=memory_budget,
        )
        if probe != batch_size:
            _, peak_p, _ = _measure(searcher, make_batch(probe))
            per = (peak - peak_p) / (batch_size - probe)
            if per > 0:
                report.probe_batch_size = probe
                report.probe_peak_memory = peak_p
                report.per_sample_memory = per
                report.base_memory = peak - per * batch_size
        if memory_budget is not None:
            report.fits = peak <= memory_budget
            if report.per_sample_memory:
                b = math.floor((memory_budget - (report.base_memory or 0.0)) / report.per_sample_memory)
                report.suggested_batch_size = max(0, b)
            else:
                report.suggested_batch_size = batch_size if report.fits else None
        return report
    finally:
        searcher.callbacks = saved_callbacks
        searcher.steps_per_epoch = saved_spe
        searcher.load_state_dict(saved_state)
        restore_rng_state(saved_rng, gens)
