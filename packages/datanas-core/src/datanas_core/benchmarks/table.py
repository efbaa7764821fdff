"""Benchmark tables: NB201 cell -> published metrics, with ranks and percentiles among all cells.

No torch import here; the NB201 string parser/printer (``space/nb201.py``) is imported when first used.
"""

from __future__ import annotations

import bisect
import csv
import functools
import logging
import math
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datanas_core.errors import ConfigError, DataError, GenotypeError

__all__ = [
    "EXPORT_COLUMNS",
    "BenchmarkScore",
    "BenchmarkTable",
    "arch_string",
    "load_benchmark",
    "read_csv_table",
]

logger = logging.getLogger(__name__)

#: Columns of the public NAS-Bench-201 / NATS-Bench CSV export and the metric names they become.
EXPORT_COLUMNS: dict[str, str] = {
    "CIFAR10TestAccuracy200Epochs": "cifar10",
    "CIFAR100TestAccuracy200Epochs": "cifar100",
    "ImageNetTestAccuracy200Epochs": "imagenet16-120",
}
_EXPORT_ARCH = "ArchitectureString"
#: First-column names accepted for the simple ``arch,<metric>,...`` CSV.
_SIMPLE_ARCH = ("arch", "arch_str", "architecture", "architecturestring")
#: Metric names containing one of these are "lower is better" (losses, errors, costs).
_LOWER_IS_BETTER = ("loss", "error", "err", "latency", "time", "params", "flops")
#: Benchmark spaces whose genotypes are NB201 cells (one cell type ``cell``, the benchmark's ops).
_NB201_LIKE = ("nb201", "drnas_nb201", "entrannas_nb201")
_API_SUFFIXES = (".pth", ".pickle", ".pbz2", ".pkl")


@functools.lru_cache(maxsize=1)
def _nb201_space() -> Any:
    from datanas_core.space.nb201 import NB201Space  # imports torch: only when a string is parsed

    return NB201Space()


def arch_string(arch: Any) -> str:
    """The canonical NAS-Bench-201 string of ``arch``.

    Args:
        arch: a benchmark string, a :class:`~datanas_core.genotype.Genotype` of an NB201-like space
            (``nb201``, ``drnas_nb201``, ``entrannas_nb201``) or its ``to_dict()`` document.

    Returns:
        The string the NB201 printer writes (``none`` for absent edges), e.g.
        ``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``.

    Raises:
        GenotypeError: a malformed string or genotype document, or a genotype of another space
            (:class:`~datanas_core.errors.IncompatibleGenotypeError`).
    """
    from datanas_core.genotype import Genotype

    space = _nb201_space()
    if isinstance(arch, str):
        return str(space.to_string(space.from_string(arch)))
    if isinstance(arch, Mapping):
        arch = Genotype.from_dict(arch)
    if not isinstance(arch, Genotype):
        raise GenotypeError(
            f"an NB201 string, Genotype or genotype document expected, got {type(arch).__name__}"
        )
    if arch.space != space.name and arch.space in _NB201_LIKE:
        arch = Genotype(space.name, dict(arch.cells))
    return str(space.to_string(arch))


def _lower_is_better(metric: str) -> bool:
    tokens = metric.lower().replace("-", "_").split("_")
    return any(t in _LOWER_IS_BETTER for t in tokens)


@dataclass(frozen=True)
class BenchmarkScore:
    """The benchmark results of one cell.

    Attributes:
        arch: the canonical NB201 string (or the text that could not be parsed).
        in_table: whether the table holds the cell.
        values: metric -> the cell's value.
        ranks: metric -> rank among all cells of the table (1 = best; ties share the better rank).
        percentiles: metric -> share (%) of the table's cells that are not better than this cell
            (100 = the best cell, about 50 = the median cell).
        table_size: metric -> number of cells of the table with a value for the metric.
        reason: why the cell was not scored (empty when it was).
    """

    arch: str
    in_table: bool
    values: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    percentiles: dict[str, float] = field(default_factory=dict)
    table_size: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def to_record(self) -> dict[str, Any]:
        """A flat JSON-able dict: ``arch``, ``in_table``, ``<metric>``, ``<metric>_rank``,
        ``<metric>_percentile`` (and ``reason`` when not scored)."""
        rec: dict[str, Any] = {"arch": self.arch, "in_table": self.in_table}
        for m, v in self.values.items():
            rec[m] = v
            rec[f"{m}_rank"] = self.ranks[m]
            rec[f"{m}_percentile"] = self.percentiles[m]
        if self.reason:
            rec["reason"] = self.reason
        return rec

    def describe(self, metric: str | None = None) -> str:
        """One line, e.g. ``cifar10 93.76 (rank 312 of 15625, percentile 98.0)``."""
        if not self.in_table:
            return f"{self.arch}: not in table ({self.reason or 'unknown cell'})"
        metrics = [metric] if metric is not None and metric in self.values else list(self.values)
        return ", ".join(
            f"{m} {self.values[m]:.2f} (rank {self.ranks[m]} of {self.table_size[m]}, "
            f"percentile {self.percentiles[m]:.1f})"
            for m in metrics
        )


class BenchmarkTable:
    """Published results of the NB201 cells: cell string -> ``{metric: value}``.

    Args:
        rows: cell (benchmark string, Genotype or genotype document) -> metric values. ``None`` and NaN
            values are left out.
        source: where the table came from (a path; informative).
        fmt: the format it was read from (informative): ``"export-csv"``, ``"simple-csv"``, ``"nats_bench"``,
            ``"nas_201_api"`` or ``"table"``.
        lower_is_better: metrics where lower values are better (default: names containing ``loss``,
            ``error``, ``latency``, ``time``, ``params`` or ``flops``); every other metric ranks higher
            values first.

    Raises:
        DataError: a cell that is not an NB201 cell, or the same cell twice, naming the cell and the source.
    """

    def __init__(
        self,
        rows: Mapping[Any, Mapping[str, Any]],
        *,
        source: str = "",
        fmt: str = "table",
        lower_is_better: Iterable[str] | None = None,
    ) -> None:
        self.source = str(source)
        self.format = fmt
        self.metrics: tuple[str, ...] = ()
        self._rows: dict[str, dict[str, float]] = {}
        metrics: dict[str, None] = {}
        where = f" in {self.source!r}" if self.source else ""
        for arch, values in rows.items():
            try:
                key = arch_string(arch)
            except GenotypeError as exc:
                raise DataError(f"benchmark table{where}: {arch!r} is not an NB201 cell: {exc}") from exc
            if key in self._rows:
                raise DataError(f"benchmark table{where} lists the cell {key!r} twice")
            clean: dict[str, float] = {}
            for m, v in values.items():
                if v is None:
                    continue
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    raise DataError(
                        f"benchmark table{where}: {m} of {key!r} is {v!r}, not a number"
                    ) from None
                if math.isfinite(f):
                    clean[str(m)] = f
                    metrics.setdefault(str(m), None)
            self._rows[key] = clean
        self.metrics = tuple(metrics)
        if lower_is_better is None:
            self.lower_is_better = frozenset(m for m in self.metrics if _lower_is_better(m))
        else:
            self.lower_is_better = frozenset(lower_is_better)
        self._sorted = {m: sorted(r[m] for r in self._rows.values() if m in r) for m in self.metrics}

    # ------------------------------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, arch: object) -> bool:
        try:
            return arch_string(arch) in self._rows
        except GenotypeError:
            return False

    def __repr__(self) -> str:
        return f"BenchmarkTable({len(self)} cells, metrics {list(self.metrics)}, format {self.format!r}" + (
            f", source {self.source!r})" if self.source else ")"
        )

    @property
    def primary_metric(self) -> str:
        """``cifar10`` when the table has it, else its first metric."""
        if not self.metrics:
            raise DataError(f"benchmark table {self.source!r} has no metric")
        return "cifar10" if "cifar10" in self.metrics else self.metrics[0]

    def archs(self) -> list[str]:
        """Every cell string of the table (table order)."""
        return list(self._rows)

    def get(self, arch: Any, default: Any = None) -> dict[str, float] | Any:
        """The metrics of ``arch`` (a copy), or ``default`` when the table does not hold it.

        Raises:
            GenotypeError: ``arch`` is not an NB201 cell.
        """
        values = self._rows.get(arch_string(arch))
        return dict(values) if values is not None else default

    def _check_metric(self, metric: str) -> list[float]:
        if metric not in self._sorted:
            raise ConfigError(
                f"unknown benchmark metric {metric!r}; this table has: {', '.join(self.metrics) or 'none'}"
            )
        return self._sorted[metric]

    def rank(self, metric: str, value: float) -> int:
        """Rank of ``value`` among the table's cells (1 = best; cells with an equal value share it).

        Raises:
            ConfigError: unknown ``metric``.
        """
        values = self._check_metric(metric)
        if metric in self.lower_is_better:
            return 1 + bisect.bisect_left(values, value)
        return 1 + len(values) - bisect.bisect_right(values, value)

    def percentile(self, metric: str, value: float) -> float:
        """Share (%) of the table's cells that are not better than ``value``.

        Raises:
            ConfigError: unknown ``metric``.
        """
        values = self._check_metric(metric)
        if not values:
            return float("nan")
        if metric in self.lower_is_better:
            return 100.0 * (len(values) - bisect.bisect_left(values, value)) / len(values)
        return 100.0 * bisect.bisect_right(values, value) / len(values)

    def stats(self, metric: str) -> dict[str, float]:
        """``n, best, worst, mean, median, top5, top10`` of a metric over all cells (``top5``: the value a
        cell needs to be in the best 5 %).

        Raises:
            ConfigError: unknown ``metric``.
        """
        values = self._check_metric(metric)
        if not values:
            return {"n": 0}
        n = len(values)
        ordered = values if metric in self.lower_is_better else values[::-1]

        def top(share: float) -> float:
            return ordered[max(0, math.ceil(share * n) - 1)]

        return {
            "n": n,
            "best": ordered[0],
            "worst": ordered[-1],
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
            "top5": top(0.05),
            "top10": top(0.10),
        }

    def score(self, arch: Any) -> BenchmarkScore:
        """Score one cell: value, rank and percentile for every metric the table has for it.

        A cell the table does not hold, or one that is not an NB201 cell, gives ``in_table=False`` with a
        ``reason`` (never an exception).
        """
        try:
            key = arch_string(arch)
        except GenotypeError as exc:
            text = arch if isinstance(arch, str) else type(arch).__name__
            return BenchmarkScore(str(text), False, reason=f"not an NB201 cell: {exc}")
        values = self._rows.get(key)
        if values is None:
            return BenchmarkScore(key, False, reason=f"not in the table ({len(self)} cells)")
        return BenchmarkScore(
            key,
            True,
            values=dict(values),
            ranks={m: self.rank(m, v) for m, v in values.items()},
            percentiles={m: self.percentile(m, v) for m, v in values.items()},
            table_size={m: len(self._sorted[m]) for m in values},
        )

    # ------------------------------------------------------------------------------------------ output
    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as a simple ``arch,<metric>,...`` CSV (e.g. to convert an API file once)."""
        p = Path(path)
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["arch", *self.metrics])
            for arch, values in self._rows.items():
                w.writerow([arch, *(repr(values[m]) if m in values else "" for m in self.metrics)])
        return p


# ---------------------------------------------------------------------------------------------- readers
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv_table(path: str | os.PathLike[str]) -> BenchmarkTable:
    """Read a CSV table: the public export (``ArchitectureString`` + the ``*TestAccuracy200Epochs`` columns)
    or a simple ``arch,<metric>,...`` file (every column whose first value is a number is a metric; text
    columns are ignored).

    Raises:
        DataError: missing file, unknown header, no numeric metric column, a malformed row or cell.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"benchmark table {str(p)!r} does not exist (or is not a file)")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            body = [row for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise DataError(f"benchmark table {str(p)!r} is not a UTF-8 CSV file: {exc}") from exc
    except csv.Error as exc:
        raise DataError(f"benchmark table {str(p)!r}: malformed CSV: {exc}") from exc
    except OSError as exc:
        raise DataError(f"cannot read the benchmark table {str(p)!r}: {exc}") from exc
    expected = (
        f"expected the public export ({_EXPORT_ARCH}, {', '.join(EXPORT_COLUMNS)}) or a simple "
        "'arch,<metric>,...' header"
    )
    known = (_EXPORT_ARCH in header and any(c in header for c in EXPORT_COLUMNS)) or (
        bool(header) and header[0].lower() in _SIMPLE_ARCH
    )
    if known and not body:
        raise DataError(f"benchmark table {str(p)!r} has no rows (header {header[:6]})")
    if _EXPORT_ARCH in header and any(c in header for c in EXPORT_COLUMNS):
        fmt = "export-csv"
        arch_col = header.index(_EXPORT_ARCH)
        columns = {header.index(c): name for c, name in EXPORT_COLUMNS.items() if c in header}
    elif header and header[0].lower() in _SIMPLE_ARCH:
        fmt = "simple-csv"
        arch_col = 0
        columns = {}
        for j, name in enumerate(header[1:], start=1):
            # a metric column: its first non-empty value is a number (a later text value is an error)
            first = next((row[j].strip() for row in body if j < len(row) and row[j].strip()), "")
            if name and _is_number(first):
                columns[j] = name
            else:
                logger.debug("benchmark table %s: column %r is not numeric, ignored", p, name)
        if not columns:
            raise DataError(
                f"benchmark table {str(p)!r} has no numeric metric column after {header[0]!r} "
                f"(header {header})"
            )
    else:
        raise DataError(f"unknown benchmark table format in {str(p)!r}: header {header[:6]}; {expected}")
    rows: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(body, start=2):
        if arch_col >= len(row) or not row[arch_col].strip():
            raise DataError(f"benchmark table {str(p)!r} row {line}: no architecture string")
        arch = row[arch_col].strip()
        values: dict[str, Any] = {}
        for j, name in columns.items():
            text = row[j].strip() if j < len(row) else ""
            if not text:
                continue
            if not _is_number(text):
                raise DataError(f"benchmark table {str(p)!r} row {line}: {name} is {text!r}, not a number")
            values[name] = float(text)
        if arch in rows:
            raise DataError(f"benchmark table {str(p)!r} row {line}: the cell {arch!r} appears twice")
        rows[arch] = values
    return BenchmarkTable(rows, source=str(p), fmt=fmt)


def _looks_like_text(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise DataError(f"cannot read the benchmark table {str(p)!r}: {exc}") from exc
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the 4096-byte boundary is still text
        try:
            head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def load_benchmark(
    path: str | os.PathLike[str],
    *,
    datasets: Iterable[str] | None = None,
    hp: str = "200",
    allow_pickle: bool = False,
) -> BenchmarkTable:
    """Read a benchmark table from ``path``, choosing the reader from the file.

    - a text file: :func:`read_csv_table` (the public export or ``arch,<metric>,...``);
    - a directory (NATS-Bench's ``NATS-tss-v1_0-3ffb9-simple``) or a binary file (``.pth``, ``.pickle.pbz2``):
      the official API package (:func:`~datanas_core.benchmarks.load_api`), which must be installed, and
      only with ``allow_pickle=True``: those files are Python pickles, which can run code when read, and
      datanas never unpickles a file unless the caller says it trusts it. Convert a trusted file once with
      ``load_benchmark(PATH, allow_pickle=True).to_csv("nb201.csv")`` and use the CSV from then on (it also
      loads in a second instead of minutes); the command lines read CSV tables only.

    Args:
        path: the table.
        datasets: with the API: metrics to read (default ``cifar10, cifar100, imagenet16-120``).
        hp: with the API: training epochs of the results (``"200"``; NATS-Bench also has ``"12"``).
        allow_pickle: read an official (pickled) benchmark file through its API package.

    Raises:
        DataError: missing path, unknown or malformed format; an official file without ``allow_pickle``.
        MissingDependencyError: an API file without the API package installed.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"benchmark table {str(p)!r} does not exist; pass a CSV export of the NAS-Bench-201 results "
            "or an official NATS-Bench / NAS-Bench-201 file (the project does not download them)"
        )
    if p.is_file() and not p.name.lower().endswith(_API_SUFFIXES):
        if _looks_like_text(p):
            return read_csv_table(p)
        raise DataError(
            f"unknown benchmark table format: {str(p)!r} is neither a CSV file nor an official benchmark "
            f"file ({', '.join(_API_SUFFIXES)} or a NATS-tss-*-simple directory)"
        )
    if not allow_pickle:
        raise DataError(
            f"{str(p)!r} is an official benchmark file, which its API package reads by unpickling it (a "
            "pickle can run code); datanas reads such files only when told to trust them: convert it once "
            f"with load_benchmark({str(p)!r}, allow_pickle=True).to_csv('nb201.csv') "
            "(datanas_core.benchmarks) and pass the CSV"
        )
    from datanas_core.benchmarks.api import load_api

    return load_api(p, datasets=datasets, hp=hp)
