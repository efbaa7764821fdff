"""Benchmark mode: score derived NAS-Bench-201 cells against the public NB201 / NATS-Bench results.

A :class:`BenchmarkTable` maps every NB201 cell (its benchmark string) to its published accuracies. It is
read from a file the user supplies (the project never bundles or downloads the tables):

- a CSV export with the columns ``ArchitectureString``, ``CIFAR10TestAccuracy200Epochs``,
  ``CIFAR100TestAccuracy200Epochs``, ``ImageNetTestAccuracy200Epochs`` (metrics ``cifar10``, ``cifar100``,
  ``imagenet16-120``);
- a simple CSV ``arch,<metric>,...`` (one numeric column per metric, named by its header);
- the official benchmark files through the official API packages when they are installed (``nats_bench``
  for ``NATS-tss-v1_0-3ffb9-*``, ``nas_201_api`` for ``NAS-Bench-201-v1_*.pth``); they are detected by
  import, never required.

:class:`BenchmarkCallback` scores the cell derived at every epoch of a search (accuracy per metric, rank
and percentile among all cells of the table) into the epoch record, so the scores reach metrics.jsonl,
TensorBoard, summary.json and the report. It only reads the derived genotype: a search is bit-identical
with and without it.

This package does not import torch.

Example:
    >>> from datanas_core.benchmarks import BenchmarkTable
    >>> t = BenchmarkTable({"|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|": {"cifar10": 10.0},
    ...                     "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|": {"cifar10": 80.0}})
    >>> s = t.score("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    >>> s.values["cifar10"], s.ranks["cifar10"], s.percentiles["cifar10"]
    (80.0, 1, 100.0)
"""

from __future__ import annotations

from datanas_core.benchmarks.api import load_api, table_from_api
from datanas_core.benchmarks.callback import BenchmarkCallback
from datanas_core.benchmarks.table import (
    EXPORT_COLUMNS,
    BenchmarkScore,
    BenchmarkTable,
    arch_string,
    load_benchmark,
    read_csv_table,
)

__all__ = [
    "EXPORT_COLUMNS",
    "BenchmarkCallback",
    "BenchmarkScore",
    "BenchmarkTable",
    "arch_string",
    "load_api",
    "load_benchmark",
    "read_csv_table",
    "table_from_api",
]
