"""A search callback that scores every epoch's derived NB201 cell against a benchmark table."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from datanas_core.benchmarks.table import BenchmarkTable, load_benchmark
from datanas_core.errors import DataNASError

__all__ = ["BenchmarkCallback"]

logger = logging.getLogger(__name__)


class BenchmarkCallback:
    """Adds ``record["benchmark"]`` to every epoch record: the derived cell's benchmark string, whether the
    table holds it and, per metric, its value, rank and percentile (see
    :meth:`~datanas_core.benchmarks.BenchmarkScore.to_record`).

    The runtime writes the epoch record to metrics.jsonl and TensorBoard (``epoch/benchmark/<metric>``), the
    last one into summary.json (``final.benchmark``), and the report draws the curve. The callback only
    reads ``record["genotype"]``: it changes no parameter, architecture weight or random state, so a
    search is bit-identical with and without it. A cell the table does not hold is logged ("not in table")
    and recorded with ``in_table: false``.

    Args:
        table: a :class:`BenchmarkTable` or a path for :func:`~datanas_core.benchmarks.load_benchmark`.
        metric: the metric named in log lines (default: the table's primary metric, ``cifar10`` if any).
        key: the record key (default ``"benchmark"``).

    Raises:
        DataError, MissingDependencyError: when ``table`` is a path that cannot be read.
    """

    def __init__(
        self,
        table: BenchmarkTable | str | os.PathLike[str],
        *,
        metric: str | None = None,
        key: str = "benchmark",
    ) -> None:
        self.table = table if isinstance(table, BenchmarkTable) else load_benchmark(table)
        self.metric = metric or self.table.primary_metric
        self.table._check_metric(self.metric)
        self.key = key
        self.scores: list[dict[str, Any]] = []

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        epoch = int(record.get("epoch", getattr(searcher, "epoch", 1) - 1))
        genotype = record.get("genotype")
        if not isinstance(genotype, Mapping):
            return
        try:
            score = self.table.score(genotype)
        except DataNASError as exc:  # score() reports unknown cells itself; this is a last guard
            logger.warning("benchmark: epoch %d: cannot score the derived cell: %s", epoch + 1, exc)
            record[self.key] = {"in_table": False, "reason": str(exc)}
            return
        rec = score.to_record()
        record[self.key] = rec
        self.scores.append({"epoch": epoch, **rec})
        if score.in_table:
            logger.info("benchmark: epoch %d: %s", epoch + 1, score.describe(self.metric))
        else:
            logger.warning(
                "benchmark: epoch %d: derived cell %s is not in table %s (%s)",
                epoch + 1,
                score.arch,
                self.table.source or "(in memory)",
                score.reason,
            )
