"""Benchmark tables from the official API packages (``nats_bench``, ``nas_201_api``), when installed.

Neither package is a dependency of datanas: they are imported when a benchmark file needs them. Both expose
``len(api)``, ``api.arch(index)`` (the cell string) and ``api.get_more_info(index, dataset, hp=...,
is_random=False)`` (a dict whose ``test-accuracy`` is the mean over the benchmark's training seeds).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datanas_core.benchmarks.table import BenchmarkTable
from datanas_core.errors import ConfigError, DataError, MissingDependencyError

__all__ = ["API_DATASETS", "load_api", "table_from_api"]

logger = logging.getLogger(__name__)

#: Metric name -> the dataset name of the official APIs. ``cifar10`` is trained on the full training set
#: and tested on the test set (the ``ori-test`` split), the others on their ``x-test`` halves.
API_DATASETS: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar10-valid": "cifar10-valid",
    "cifar100": "cifar100",
    "imagenet16-120": "ImageNet16-120",
}
_DEFAULT_DATASETS = ("cifar10", "cifar100", "imagenet16-120")
_PACKAGES = {"nats_bench": "nats_bench", "nas_201_api": "nas-bench-201"}


def _more_info(api: Any, index: int, dataset: str, hp: str) -> dict[str, Any]:
    try:
        return dict(api.get_more_info(index, dataset, hp=hp, is_random=False))
    except TypeError:
        # nas_201_api 1.x: get_more_info(index, dataset, iepoch=None, use_12epochs_result=False, is_random=True)
        return dict(api.get_more_info(index, dataset, None, hp == "12", False))


def table_from_api(
    api: Any,
    *,
    datasets: Iterable[str] | None = None,
    hp: str = "200",
    source: str = "",
    fmt: str = "api",
) -> BenchmarkTable:
    """Read every cell's test accuracy from an API object (``nats_bench.create(..., "tss")`` or
    ``nas_201_api.NASBench201API(...)``).

    Args:
        api: the API object.
        datasets: metrics to read (keys of :data:`API_DATASETS`; default cifar10, cifar100, imagenet16-120).
        hp: training epochs of the results (``"200"``, or ``"12"`` for NATS-Bench's short schedule).
        source, fmt: recorded on the table.

    Raises:
        ConfigError: an unknown dataset name.
        DataError: the API cannot give a result (e.g. ``hp`` not in the file).
    """
    names = list(_DEFAULT_DATASETS if datasets is None else datasets)
    for name in names:
        if name not in API_DATASETS:
            raise ConfigError(
                f"unknown benchmark dataset {name!r}; valid datasets: {', '.join(API_DATASETS)}"
            )
    n = len(api)
    rows: dict[str, dict[str, Any]] = {}
    for i in range(n):
        arch = api.arch(i)
        arch = arch.tostr() if hasattr(arch, "tostr") else str(arch)
        values: dict[str, Any] = {}
        for name in names:
            try:
                info = _more_info(api, i, API_DATASETS[name], str(hp))
            except (ValueError, KeyError, AssertionError, IndexError, OSError) as exc:
                raise DataError(
                    f"the benchmark API ({source or type(api).__name__}) has no {name} result for cell {i} "
                    f"{arch!r} with hp={hp!r}: {exc}"
                ) from exc
            acc = info.get("test-accuracy")
            if acc is not None:
                values[name] = float(acc)
        rows[arch] = values
        if (i + 1) % 2000 == 0:
            logger.info("read %d/%d cells from the benchmark API", i + 1, n)
    return BenchmarkTable(rows, source=source, fmt=fmt)


def load_api(
    path: str | os.PathLike[str],
    *,
    datasets: Iterable[str] | None = None,
    hp: str = "200",
) -> BenchmarkTable:
    """Read an official benchmark file through its API package.

    ``NAS-Bench-201-v1_*.pth`` files are read with ``nas_201_api`` (``NASBench201API``); NATS-Bench topology
    files (``NATS-tss-v1_0-3ffb9-simple`` directory or ``.pickle.pbz2`` file) with ``nats_bench``
    (``create(path, "tss", fast_mode=<path is a directory>)``). Other names try ``nats_bench`` first.
    Reading all 15,625 cells through the API takes minutes; :meth:`BenchmarkTable.to_csv` saves a CSV
    that loads in a second.

    The API packages unpickle the file (which can run code): call this only for files you trust.
    :func:`~datanas_core.benchmarks.load_benchmark` calls it only with ``allow_pickle=True``.

    Raises:
        DataError: a NATS-Bench size-space file, or a file the API cannot read.
        MissingDependencyError: neither package is installed.
    """
    p = Path(path)
    name = p.name
    if "NATS-sss" in name:
        raise DataError(
            f"{str(p)!r} is NATS-Bench's size search space; benchmark mode scores NB201 cells, which need "
            "the topology space (NATS-tss-*)"
        )
    order = ["nas_201_api", "nats_bench"] if "NAS-Bench-201" in name else ["nats_bench", "nas_201_api"]
    for module_name in order:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            if module_name == "nats_bench":
                api = module.create(str(p), "tss", fast_mode=p.is_dir(), verbose=False)
            else:
                api = module.NASBench201API(str(p), verbose=False)
        except Exception as exc:  # noqa: BLE001 - third-party loaders raise anything on a wrong file
            raise DataError(f"{module_name} cannot read the benchmark file {str(p)!r}: {exc}") from exc
        logger.info("reading %s with %s (%d cells)", p, module_name, len(api))
        return table_from_api(api, datasets=datasets, hp=hp, source=str(p), fmt=module_name)
    raise MissingDependencyError(
        f"{str(p)!r} is not a CSV table; reading an official benchmark file needs its API package: "
        "pip install nats_bench (NATS-tss-* files) or pip install nas-bench-201 (NAS-Bench-201-v1_*.pth), "
        "or pass a CSV export with the columns ArchitectureString, CIFAR10TestAccuracy200Epochs, ..."
    )
