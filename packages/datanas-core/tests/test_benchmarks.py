"""Benchmark mode: NB201 tables in every format (synthetic), scores, bad input, and a read-only callback."""

from __future__ import annotations

import ast
import csv
import itertools
import json
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import datanas_core.benchmarks as bm
from datanas_core import SearchConfig, Searcher, get_space
from datanas_core.benchmarks import BenchmarkCallback, BenchmarkTable, arch_string, load_benchmark
from datanas_core.errors import ConfigError, DataError, GenotypeError, MissingDependencyError
from datanas_core.genotype import Genotype
from datanas_core.runtime import RunDir, run_search
from datanas_core.space.nb201 import NB201_OPS

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
POOL = "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"


def _cell(ops: tuple[str, ...]) -> str:
    """The NB201 string of six ops (edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3)."""
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


def _synthetic(n: int | None = None) -> dict[str, dict[str, float]]:
    """Cells with made-up accuracies (more 3x3 convs = better); ``n=None``: all 15,625 cells."""
    out: dict[str, dict[str, float]] = {}
    for ops in itertools.product(NB201_OPS, repeat=6):
        score = sum({"nor_conv_3x3": 3, "nor_conv_1x1": 2, "skip_connect": 1}.get(o, 0) for o in ops)
        h = sum(NB201_OPS.index(o) * 7**i for i, o in enumerate(ops)) % 97 / 1000
        out[_cell(ops)] = {"cifar10": 60.0 + 2 * score + h, "cifar100": 30.0 + score + h}
        if n is not None and len(out) >= n:
            break
    return out


SMALL = {
    BEST: {"cifar10": 94.37, "cifar100": 73.51, "imagenet16-120": 47.31},
    EMPTY: {"cifar10": 10.0, "cifar100": 1.0, "imagenet16-120": 0.83},
    POOL: {"cifar10": 60.0, "cifar100": 30.0, "imagenet16-120": 15.0},
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|": {
        "cifar10": 60.0,
        "cifar100": 20.0,
        "imagenet16-120": 12.0,
    },
}


def _write_export(path: Path, rows: dict[str, dict[str, float]]) -> Path:
    cols = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs"}
    cols["imagenet16-120"] = "ImageNetTestAccuracy200Epochs"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*cols.values(), "ArchitectureString", "UniqueString"])
        for arch, v in rows.items():
            w.writerow([*(v[m] for m in cols), arch, "(0)@x"])
    return path


# ------------------------------------------------------------------------------------------ the table
def test_scores_rank_and_percentile() -> None:
    t = BenchmarkTable(SMALL)
    assert len(t) == 4 and t.metrics == ("cifar10", "cifar100", "imagenet16-120")
    s = t.score(BEST)
    assert s.in_table and s.values["cifar10"] == 94.37
    assert s.ranks == {"cifar10": 1, "cifar100": 1, "imagenet16-120": 1}
    assert s.percentiles["cifar10"] == 100.0
    worst = t.score(EMPTY)
    assert worst.ranks["cifar10"] == 4 and worst.percentiles["cifar10"] == 25.0
    # ties share the better rank; both tied cells are "not better than" each other
    tied = t.score(POOL)
    assert tied.ranks["cifar10"] == 2 and tied.percentiles["cifar10"] == 75.0
    st = t.stats("cifar10")
    assert st["n"] == 4 and st["best"] == 94.37 and st["worst"] == 10.0 and st["median"] == 60.0
    assert st["top5"] == 94.37
    rec = s.to_record()
    assert rec["arch"] == BEST and rec["in_table"] is True
    assert rec["cifar10_rank"] == 1 and rec["cifar10_percentile"] == 100.0
    assert "rank 1 of 4" in s.describe("cifar10")


def test_lower_is_better_metrics_rank_small_values_first() -> None:
    t = BenchmarkTable({BEST: {"cifar10": 94.0, "latency": 0.02}, EMPTY: {"cifar10": 10.0, "latency": 0.001}})
    assert t.lower_is_better == frozenset({"latency"})
    assert t.score(EMPTY).ranks == {"cifar10": 2, "latency": 1}
    assert t.stats("latency")["best"] == 0.001


def test_cells_are_canonical_strings_from_the_nb201_printer() -> None:
    space = get_space("nb201")
    g = space.from_string(BEST)
    t = BenchmarkTable({BEST: {"cifar10": 1.0}})
    # the same cell reached from a string, a Genotype, its document and an NB201-like space's genotype
    assert t.archs() == [BEST]
    for arch in (BEST, g, g.to_dict(), Genotype("drnas_nb201", dict(g.cells))):
        assert arch in t and t.score(arch).in_table
        assert arch_string(arch) == space.to_string(g)
    assert arch_string(EMPTY) == EMPTY  # absent edges print as none


def test_unknown_cell_is_not_in_table_never_an_exception() -> None:
    t = BenchmarkTable(SMALL)
    other = _cell(("nor_conv_1x1",) * 6)
    s = t.score(other)
    assert not s.in_table and s.arch == other and "not in the table" in s.reason
    assert s.to_record() == {"arch": other, "in_table": False, "reason": s.reason}
    bad = t.score("|conv~0|+|x|")
    assert not bad.in_table and "not an NB201 cell" in bad.reason
    darts = Genotype.from_dict(
        {"space": "darts", "cells": {"normal": {"edges": [[0, 2, "skip_connect"]], "concat": [2]}}}
    )
    assert not t.score(darts).in_table
    assert t.get(other) is None and t.get(BEST)["cifar10"] == 94.37
    with pytest.raises(GenotypeError):
        t.get("|garbage|")


def test_unknown_metric_and_bad_rows_are_typed_errors() -> None:
    t = BenchmarkTable(SMALL)
    with pytest.raises(ConfigError, match="unknown benchmark metric 'cifar-10'.*cifar10, cifar100"):
        t.rank("cifar-10", 90.0)
    with pytest.raises(DataError, match="not an NB201 cell"):
        BenchmarkTable({"|nor_conv_3x3~0|": {"cifar10": 1.0}})
    with pytest.raises(DataError, match="not an NB201 cell"):  # the parser is strict: no whitespace
        BenchmarkTable({" " + BEST: {"cifar10": 1.0}})
    with pytest.raises(DataError, match="twice"):
        BenchmarkTable({BEST: {"cifar10": 1.0}, get_space("nb201").from_string(BEST): {"cifar10": 2.0}})
    with pytest.raises(DataError, match="not a number"):
        BenchmarkTable({BEST: {"cifar10": "high"}})


# ------------------------------------------------------------------------------------------ CSV formats
def test_public_export_csv(tmp_path: Path) -> None:
    t = load_benchmark(_write_export(tmp_path / "nats_bench.csv", SMALL))
    assert t.format == "export-csv" and len(t) == 4
    assert t.metrics == ("cifar10", "cifar100", "imagenet16-120") and t.primary_metric == "cifar10"
    assert t.score(BEST).values == SMALL[BEST]
    assert t.source == str(tmp_path / "nats_bench.csv")


def test_simple_csv_and_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "mine.csv"
    p.write_text(f"arch,acc,note,latency\n{BEST},93.5,good,0.5\n{EMPTY},10,bad,\n{POOL},61.25,ok,0.1\n")
    t = load_benchmark(p)
    assert t.format == "simple-csv" and t.metrics == ("acc", "latency")  # 'note' is not numeric
    assert t.primary_metric == "acc"
    assert t.get(EMPTY) == {"acc": 10.0}  # an empty cell is left out
    assert t.score(BEST).ranks == {"acc": 1, "latency": 2}
    back = load_benchmark(t.to_csv(tmp_path / "copy.csv"))
    assert back.archs() == t.archs() and all(back.get(a) == t.get(a) for a in t.archs())


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,value\nx,1\n", "unknown benchmark table format"),
        ('{"arch": 1}\n', "unknown benchmark table format"),
        ("arch,note\n" + BEST + ",good\n", "no numeric metric column"),
        ("arch,acc\n", "no rows"),
        ("arch,acc\n" + BEST + ",93\n" + EMPTY + ",abc\n", "row 3: acc is 'abc'"),
        ("arch,acc\n|nor_conv_3x3~0|+|x~0|,93\n", "not an NB201 cell"),
        ("arch,acc\n" + BEST + ",93\n" + BEST + ",94\n", "appears twice"),
        ("arch,acc\n,93\n", "no architecture string"),
    ],
)
def test_bad_csv_is_a_data_error(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        load_benchmark(p)


def test_missing_file_and_unknown_binary_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark(tmp_path / "nope.csv")
    binary = tmp_path / "table.bin"
    binary.write_bytes(b"\x00\x01\x02PK")
    with pytest.raises(DataError, match="unknown benchmark table format"):
        load_benchmark(binary)


# ------------------------------------------------------------------------------------------ official APIs
class FakeAPI:
    """Mimics nats_bench's NATStopology / nas_201_api's NASBench201API: len, arch(i), get_more_info."""

    def __init__(self, rows: dict[str, dict[str, float]], *, old_signature: bool = False) -> None:
        self.meta_archs = list(rows)
        self.rows = rows
        self.calls: list[tuple[Any, ...]] = []
        if old_signature:
            self.get_more_info = self._old_more_info  # type: ignore[method-assign]

    def __len__(self) -> int:
        return len(self.meta_archs)

    def arch(self, index: int) -> str:
        return self.meta_archs[index]

    def _info(self, index: int, dataset: str) -> dict[str, Any]:
        name = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet16-120"}[dataset]
        return {"train-accuracy": 99.0, "test-accuracy": self.rows[self.meta_archs[index]][name]}

    def get_more_info(
        self, index: int, dataset: str, iepoch: Any = None, hp: str = "12", is_random: Any = True
    ):
        self.calls.append((index, dataset, hp, is_random))
        if hp != "200":
            raise ValueError(f"hp={hp} not available")
        return self._info(index, dataset)

    def _old_more_info(self, index: int, dataset: str, iepoch: Any = None, use_12epochs_result: bool = False,
                       is_random: Any = True):  # fmt: skip
        self.calls.append((index, dataset, use_12epochs_result, is_random))
        return self._info(index, dataset)


def test_table_from_an_api_object() -> None:
    api = FakeAPI(SMALL)
    t = bm.table_from_api(api, source="fake")
    assert len(t) == 4 and t.metrics == ("cifar10", "cifar100", "imagenet16-120")
    assert t.score(BEST).values == SMALL[BEST]
    # the mean over the benchmark's seeds (is_random=False) of the 200-epoch results
    assert {c[2] for c in api.calls} == {"200"} and {c[3] for c in api.calls} == {False}
    old = FakeAPI(SMALL, old_signature=True)
    assert bm.table_from_api(old, datasets=["cifar10"]).score(BEST).values == {"cifar10": 94.37}
    assert {c[2] for c in old.calls} == {False}  # use_12epochs_result=False
    with pytest.raises(DataError, match="no cifar10 result.*hp='12'"):
        bm.table_from_api(FakeAPI(SMALL), hp="12", datasets=["cifar10"])
    with pytest.raises(ConfigError, match="unknown benchmark dataset 'svhn'"):
        bm.table_from_api(api, datasets=["svhn"])


@pytest.fixture
def fake_packages(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Fake ``nats_bench`` and ``nas_201_api`` modules with the official entry points."""
    made: dict[str, list[Any]] = {"nats_bench": [], "nas_201_api": []}
    nats = types.ModuleType("nats_bench")

    def create(
        file_path_or_dict: Any, search_space: str, fast_mode: bool = False, verbose: bool = True
    ) -> Any:
        made["nats_bench"].append((file_path_or_dict, search_space, fast_mode, verbose))
        if search_space != "tss":
            raise ValueError(f"invalid search space : {search_space}")
        return FakeAPI(SMALL)

    nats.create = create  # type: ignore[attr-defined]
    n201 = types.ModuleType("nas_201_api")

    class NASBench201API(FakeAPI):
        def __init__(self, file_path_or_dict: Any = None, verbose: bool = True) -> None:
            made["nas_201_api"].append((file_path_or_dict, verbose))
            if str(file_path_or_dict).endswith("broken.pth"):
                raise AssertionError("not a benchmark file")
            super().__init__(SMALL)

    n201.NASBench201API = NASBench201API  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nats_bench", nats)
    monkeypatch.setitem(sys.modules, "nas_201_api", n201)
    yield made


def test_official_files_go_through_the_api_packages(tmp_path: Path, fake_packages: dict) -> None:
    tss_dir = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    tss_dir.mkdir()
    t = load_benchmark(tss_dir, allow_pickle=True)
    assert t.format == "nats_bench" and t.score(BEST).ranks["cifar10"] == 1
    assert fake_packages["nats_bench"] == [(str(tss_dir), "tss", True, False)]  # a directory: fast mode
    pth = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    pth.write_bytes(b"\x80\x02binary")
    t = load_benchmark(pth, allow_pickle=True)
    assert t.format == "nas_201_api" and len(t) == 4
    assert fake_packages["nas_201_api"] == [(str(pth), False)]
    pickle = tmp_path / "NATS-tss-v1_0-3ffb9-full.pickle.pbz2"
    pickle.write_bytes(b"BZh9")
    assert load_benchmark(pickle, allow_pickle=True).format == "nats_bench"
    assert fake_packages["nats_bench"][-1][2] is False  # a file: not fast mode
    broken = tmp_path / "NAS-Bench-201-broken.pth"
    broken.write_bytes(b"\x00")
    with pytest.raises(DataError, match="nas_201_api cannot read"):
        load_benchmark(broken, allow_pickle=True)
    sss = tmp_path / "NATS-sss-v1_0-50262-simple"
    sss.mkdir()
    with pytest.raises(DataError, match="size search space"):
        load_benchmark(sss, allow_pickle=True)


def test_official_files_are_not_unpickled_without_allow_pickle(tmp_path: Path, fake_packages: dict) -> None:
    tss_dir = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    tss_dir.mkdir()
    pth = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    pth.write_bytes(b"\x80\x02binary")
    for path in (tss_dir, pth):
        with pytest.raises(DataError, match=r"pickle can run code.*allow_pickle=True\)\.to_csv"):
            load_benchmark(path)
    assert fake_packages == {"nats_bench": [], "nas_201_api": []}  # neither API was asked to read anything


def test_api_file_without_the_packages_names_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    pth = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    pth.write_bytes(b"\x80\x02")
    with pytest.raises(MissingDependencyError, match="nas-bench-201.*nats_bench|nats_bench.*nas-bench-201"):
        load_benchmark(pth, allow_pickle=True)


def test_package_does_not_import_torch() -> None:
    pkg = Path(bm.__file__).parent
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: the NB201 parser is imported lazily
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith("torch"), f"{path.name} imports {name}"
                assert name != "datanas_core.space.nb201", f"{path.name} imports the NB201 space eagerly"


# ------------------------------------------------------------------------------------------ in a search
class _Task:
    def loss(self, model, batch, arch):  # noqa: ANN001, ANN201
        x, y = batch
        logits = model(x, arch)
        return F.cross_entropy(logits, y), {"acc": float((logits.argmax(-1) == y).float().mean())}


def _batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(n)]


def _search(run_dir: Path, callbacks: list[Any], monkeypatch: pytest.MonkeyPatch | None = None) -> Searcher:
    cfg = SearchConfig(
        epochs=3,
        seed=0,
        estimator="egs",
        estimator_options={"samples": 2},
        executor="exact",
        regularizers=({"type": "adc"},),
        a_lr=0.05,
    )
    s = Searcher(get_space("nb201"), _Task(), cfg, supernet_kwargs={"C": 4, "N": 1, "num_classes": 3})
    run_search(
        s,
        _batches(3, 1),
        _batches(3, 2),
        run_dir=run_dir,
        progress=False,
        callbacks=callbacks,
        consistency_batches=1,
        distributed=False,
    )
    return s


@pytest.fixture(scope="module")
def full_table() -> BenchmarkTable:
    return BenchmarkTable(_synthetic())


def test_search_is_bit_identical_with_and_without_a_table(tmp_path: Path, full_table: BenchmarkTable) -> None:
    torch.set_num_threads(1)
    plain = _search(tmp_path / "plain", [])
    cb = BenchmarkCallback(full_table)
    scored = _search(tmp_path / "scored", [cb])
    assert len(cb.scores) == 3
    for a, b in zip(plain.distribution.parameters(), scored.distribution.parameters(), strict=True):
        assert torch.equal(a, b)
    for (ka, a), (kb, b) in zip(
        plain.supernet.state_dict().items(), scored.supernet.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(a, b), ka
    g1 = Genotype.load(tmp_path / "plain" / "genotype.json")
    g2 = Genotype.load(tmp_path / "scored" / "genotype.json")
    assert g1 == g2
    for e in range(3):
        name = f"genotypes/epoch_{e:03d}.json"
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "scored" / name).read_bytes()


def test_scores_reach_metrics_summary_tensorboard_and_report(
    tmp_path: Path, full_table: BenchmarkTable, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    scalars: list[tuple[str, float, int]] = []

    class Writer:
        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars.append((tag, value, step))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(RunDir, "tensorboard", lambda self, purge_step=None: Writer())
    torch.set_num_threads(1)
    caplog.set_level(logging.INFO, logger="datanas_core.benchmarks")
    run = tmp_path / "run"
    _search(run, [BenchmarkCallback(full_table)])
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r.get("kind") == "epoch"]
    assert len(epochs) == 3
    space = get_space("nb201")
    for r in epochs:
        b = r["benchmark"]
        arch = space.to_string(Genotype.from_dict(r["genotype"]))
        assert b["arch"] == arch and b["in_table"] is True
        assert b["cifar10"] == full_table.get(arch)["cifar10"]
        assert b["cifar10_rank"] == full_table.rank("cifar10", b["cifar10"])
        assert 0 < b["cifar10_percentile"] <= 100
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["benchmark"] == epochs[-1]["benchmark"]
    tags = {t for t, _, _ in scalars}
    assert {"epoch/benchmark/cifar10", "epoch/benchmark/cifar10_rank", "epoch/benchmark/cifar100"} <= tags
    md = (run / "report.md").read_text()
    assert "## Benchmark" in md and "figures/benchmark.svg" in md
    assert (run / "figures" / "benchmark.svg").read_text().count('class="series"') == 2
    assert "benchmark: epoch 3: cifar10" in caplog.text


def test_cell_not_in_table_is_logged_and_recorded(tmp_path: Path, caplog: Any) -> None:
    table = BenchmarkTable({BEST: {"cifar10": 94.37}})
    cb = BenchmarkCallback(table)
    record: dict[str, Any] = {"epoch": 0, "genotype": get_space("nb201").from_string(EMPTY).to_dict()}
    with caplog.at_level(logging.WARNING, logger="datanas_core.benchmarks"):
        cb.on_epoch_end(types.SimpleNamespace(epoch=1), record)
    assert record["benchmark"]["in_table"] is False and record["benchmark"]["arch"] == EMPTY
    assert "not in table" in caplog.text
    # records without a genotype are left alone
    rec2: dict[str, Any] = {"epoch": 1}
    cb.on_epoch_end(types.SimpleNamespace(epoch=2), rec2)
    assert "benchmark" not in rec2


def test_callback_from_a_path_and_bad_metric(tmp_path: Path) -> None:
    p = _write_export(tmp_path / "t.csv", SMALL)
    assert BenchmarkCallback(p).metric == "cifar10"
    assert BenchmarkCallback(p, metric="cifar100").metric == "cifar100"
    with pytest.raises(ConfigError, match="unknown benchmark metric"):
        BenchmarkCallback(p, metric="top1")
    with pytest.raises(DataError, match="does not exist"):
        BenchmarkCallback(tmp_path / "missing.csv")


def test_unreadable_file_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write_export(tmp_path / "t.csv", SMALL)

    def deny(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(DataError, match="cannot read the benchmark table.*Permission denied"):
        load_benchmark(p)
