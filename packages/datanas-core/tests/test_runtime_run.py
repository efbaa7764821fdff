"""run_search end to end on the toy space: run directory, resume, mismatches, failures, monitors, report."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Subset, TensorDataset

from datanas_core.errors import CheckpointError, ConfigError, NumericalError
from datanas_core.genotype import CellGenotype, Genotype
from datanas_core.runtime import (
    CheckpointManager,
    CollapseMonitor,
    DeterministicLoader,
    RunDir,
    _fs,
    build_report,
    collapse_stats,
    read_checkpoint,
    run_search,
)
from datanas_core.search import SearchConfig, Searcher
from datanas_core.testing import ToySpace, ToyTask, toy_batches

pytestmark = pytest.mark.usefixtures("one_thread")


class DropTask(ToyTask):
    """ToyTask with dropout on the logits, so that the global torch RNG matters for resume."""

    def loss(self, model: Any, batch: Any, arch: Any) -> Any:
        x, y = batch
        logits = F.dropout(model(x, arch), 0.2, training=model.training)
        return F.cross_entropy(logits, y), {"acc": float((logits.argmax(-1) == y).float().mean())}


def _data(n: int = 64) -> TensorDataset:
    b = toy_batches(n // 8, batch_size=8, seed=3)
    return TensorDataset(torch.cat([x for x, _ in b]), torch.cat([y for _, y in b]))


def _loaders(bs: int = 8, n: int = 64) -> tuple[DeterministicLoader, DeterministicLoader]:
    ds = _data(n)
    half = n // 2
    return (
        DeterministicLoader(Subset(ds, range(half)), bs, seed=0),
        DeterministicLoader(Subset(ds, range(half, n)), bs, seed=1),
    )


def _searcher(epochs: int = 2, space: ToySpace | None = None, **cfg: Any) -> Searcher:
    base: dict[str, Any] = {"epochs": epochs, "estimator": "egs", "estimator_options": {"samples": 2}}
    base.update(cfg)
    return Searcher(space or ToySpace(), DropTask(), SearchConfig(**base))


def _state(s: Searcher) -> dict[str, torch.Tensor]:
    out = {f"w.{k}": v.detach().clone() for k, v in s.supernet.state_dict().items()}
    out.update({f"a.{k}": v.detach().clone() for k, v in s.distribution.named_parameters()})
    return out


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


_FAST = {"progress": False, "tensorboard": False, "report": False}


class _Crash:
    """Raises at a given step, like a crash (the run stops without any cleanup of its own)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, searcher: Any, logs: Any) -> None:
        if searcher.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def test_run_directory_contents(tmp_path: Path) -> None:
    train, val = _loaders()
    run = tmp_path / "run"
    res = run_search(
        _searcher(space=ToySpace(cell_types=("normal", "reduce"))),
        train,
        val,
        run_dir=run,
        config={"data": "toy", "batch_size": 8},
        progress=False,
        derived_kwargs={},
        derived_input_shape=(4,),
    )
    rd = RunDir(run)
    assert json.loads((run / "config.json").read_text()) == {"batch_size": 8, "data": "toy"}
    assert (run / "config.yaml").read_text().startswith("batch_size: 8")
    man = rd.read_manifest()
    assert man["seed"] == 0 and "torch" in man["packages"] and man["config_hash"]
    assert man["git"] is None or len(man["git"]["commit"]) == 40
    epochs = rd.read_metrics("epoch")
    steps = rd.read_metrics("step")
    assert [r["epoch"] for r in epochs] == [0, 1] and len(steps) == 8
    last = epochs[-1]
    assert set(last["probs"]) == {"normal", "reduce"} and len(last["probs"]["normal"]) == 3
    for key in ("search_acc", "child_acc", "consistency_gap", "collapse_param_free_share", "train_loss"):
        assert key in last, key
    assert last["consistency_gap"] == pytest.approx(abs(last["search_acc"] - last["child_acc"]))
    assert sorted(p.name for p in (run / "genotypes").iterdir()) == ["epoch_000.json", "epoch_001.json"]
    assert Genotype.load(run / "genotype.json") == res.genotype
    assert Genotype.load(run / "genotypes" / "epoch_001.json") == res.genotype
    summary = rd.read_summary()
    assert (
        summary["status"] == "completed"
        and summary["derived"]["params"] > 0
        and summary["derived"]["flops"] > 0
    )
    assert list((run / "tb").glob("events.out.tfevents.*"))
    # report: one picture per cell type, heatmaps, curves; Markdown links resolve
    html = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    for ct in ("normal", "reduce"):
        assert f'data-cell-type="{ct}"' in html
        assert (run / "figures" / f"cell_{ct}.svg").is_file() and (
            run / "figures" / f"alpha_evolution_{ct}.svg"
        ).is_file()
    for link in __import__("re").findall(r"\]\((figures/[^)]+)\)", md):
        ET.parse(run / link)
    assert "Search/child consistency" in md and "Collapse monitor" in md


def test_report_cell_picture_matches_genotype(tmp_path: Path) -> None:
    train, val = _loaders()
    res = run_search(_searcher(epochs=1), train, val, run_dir=tmp_path, **{**_FAST, "report": True})
    root = ET.parse(tmp_path / "figures" / "cell_cell.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    edges = sorted(
        (g.get("data-src"), g.get("data-dst"), g.get("data-op"))
        for g in root.iter(f"{ns}g")
        if g.get("class") == "edge" and g.get("data-op")
    )
    cell = res.genotype.cells["cell"]
    assert edges == sorted((str(e.src), str(e.dst), e.op) for e in cell.edges)


def test_in_process_resume_is_bit_exact(tmp_path: Path) -> None:
    train, val = _loaders()
    ref = _searcher(epochs=3)
    run_search(ref, train, val, run_dir=tmp_path / "ref", checkpoint_every=3, **_FAST)
    for crash_at in (5, 8):  # mid-epoch, and just after an epoch boundary
        d = tmp_path / f"crash{crash_at}"
        train, val = _loaders()
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_search(
                _searcher(epochs=3),
                train,
                val,
                run_dir=d,
                checkpoint_every=3,
                callbacks=[_Crash(crash_at)],
                **_FAST,
            )
        train, val = _loaders()
        s = _searcher(epochs=3)
        res = run_search(s, train, val, run_dir=d, resume=True, checkpoint_every=3, **_FAST)
        _assert_identical(_state(ref), _state(s))
        assert s.global_step == ref.global_step == 12
        assert res.genotype == ref.derive()
        # metrics read like one uninterrupted run
        steps = [r["step"] for r in RunDir(d).read_metrics("step")]
        assert steps == list(range(1, 13))


def test_resume_with_other_config_names_the_mismatch(tmp_path: Path) -> None:
    train, val = _loaders()
    run_search(
        _searcher(epochs=1), train, val, run_dir=tmp_path, config={"data": "toy", "batch_size": 8}, **_FAST
    )
    with pytest.raises(
        ConfigError, match=r"config\.batch_size: saved 8, now 16.*may change on resume: .*w_lr"
    ):
        run_search(
            _searcher(epochs=1),
            train,
            val,
            run_dir=tmp_path,
            config={"data": "toy", "batch_size": 16},
            resume=True,
            **_FAST,
        )
    with pytest.raises(ConfigError, match=r"search_config\.w_weight_decay"):
        run_search(
            _searcher(epochs=1, w_weight_decay=0.5),
            train,
            val,
            run_dir=tmp_path,
            config={"data": "toy", "batch_size": 8},
            resume=True,
            **_FAST,
        )
    other = ToySpace(ops=("none", "lin_a", "lin_c"))
    with pytest.raises(ConfigError, match=r"space\..*lin_c"):
        run_search(
            _searcher(epochs=1, space=other),
            train,
            val,
            run_dir=tmp_path,
            config={"data": "toy", "batch_size": 8},
            resume=True,
            **_FAST,
        )
    # runtime-only keys may change
    run_search(
        _searcher(epochs=1),
        train,
        val,
        run_dir=tmp_path,
        config={"data": "toy", "batch_size": 8, "out": "elsewhere"},
        resume=True,
        **_FAST,
    )


def test_new_run_refuses_existing_run_and_resume_of_nothing_starts_fresh(tmp_path: Path) -> None:
    train, val = _loaders()
    # resume=True on a directory that holds no run yet starts a new run there (issue 19)
    fresh = run_search(_searcher(epochs=1), train, val, run_dir=tmp_path / "empty", resume=True, **_FAST)
    assert (tmp_path / "empty" / "genotype.json").is_file() and fresh.genotype is not None
    run_search(_searcher(epochs=1), train, val, run_dir=tmp_path / "r", **_FAST)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_search(_searcher(epochs=1), train, val, run_dir=tmp_path / "r", **_FAST)
    # "auto" starts fresh when there is nothing to resume, and resumes otherwise
    run_search(_searcher(epochs=1), train, val, run_dir=tmp_path / "auto", resume="auto", **_FAST)
    s = _searcher(epochs=1)
    run_search(s, train, val, run_dir=tmp_path / "auto", resume="auto", **_FAST)
    assert s.global_step == 4


def test_truncated_latest_checkpoint_uses_previous(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train, val = _loaders()
    ref = _searcher(epochs=2)
    run_search(ref, train, val, run_dir=tmp_path / "ref", **_FAST)
    d = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_search(
            _searcher(epochs=2), train, val, run_dir=d, checkpoint_every=2, callbacks=[_Crash(7)], **_FAST
        )
    newest = CheckpointManager(d / "checkpoints").list()[-1]
    assert newest.step == 6
    newest.path.write_bytes(newest.path.read_bytes()[:-10])
    s = _searcher(epochs=2)
    with caplog.at_level(logging.WARNING):
        run_search(s, train, val, run_dir=d, resume=True, checkpoint_every=2, **_FAST)
    assert "truncated" in caplog.text
    _assert_identical(_state(ref), _state(s))


def test_checkpoint_write_failure_stops_run_and_keeps_last_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = _loaders()
    d = tmp_path / "run"
    calls = {"n": 0}
    real = _fs.atomic_write

    def failing(path: Any, data: bytes, **kw: Any) -> Any:
        if str(path).endswith(".dnckpt"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr("datanas_core.runtime.checkpoint.atomic_write", failing)
    with pytest.raises(CheckpointError, match="No space left on device.*untouched"):
        run_search(_searcher(epochs=2), train, val, run_dir=d, checkpoint_every=2, **_FAST)
    monkeypatch.undo()
    infos = CheckpointManager(d / "checkpoints").list()
    assert [i.step for i in infos] == [2]
    read_checkpoint(infos[0].path)
    assert RunDir(d).read_summary()["status"] == "failed"


class _Poison:
    """Makes the weights NaN after a given step (as a diverging optimiser would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, searcher: Any, logs: Any) -> None:
        if searcher.global_step == self.step:
            with torch.no_grad():
                next(searcher.supernet.parameters()).fill_(float("nan"))


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    train, val = _loaders()
    with pytest.raises(NumericalError, match="not finite") as ei:
        run_search(
            _searcher(epochs=3),
            train,
            val,
            run_dir=tmp_path,
            checkpoint_every=2,
            callbacks=[_Poison(5)],
            **_FAST,
        )
    assert "ckpt-s000000004" in str(ei.value)
    infos = CheckpointManager(tmp_path / "checkpoints").list()
    assert infos[-1].step == 4
    st = read_checkpoint(infos[-1].path)
    assert all(torch.isfinite(v).all() for v in st["searcher"]["supernet"].values() if v.is_floating_point())
    summary = RunDir(tmp_path).read_summary()
    assert summary["status"] == "failed_numerical" and "not finite" in summary["nan_guard"]


def test_collapse_stats_of_known_genotype() -> None:
    g = Genotype(
        "darts",
        {
            "normal": CellGenotype(
                [
                    (0, 2, "skip_connect"),
                    (1, 2, "skip_connect"),
                    (0, 3, "max_pool_3x3"),
                    (2, 3, "sep_conv_3x3"),
                ],
                (2, 3),
            )
        },
    )
    probs = {"normal": torch.tensor([[0.25, 0.25, 0.25, 0.25]] * 5)}
    st = collapse_stats(g, probs, ops={"normal": ["none", "skip_connect", "max_pool_3x3", "sep_conv_3x3"]})[
        "normal"
    ]
    assert st["edges"] == 4 and st["param_free"] == 3 and st["skip"] == 2
    assert (
        st["param_free_share"] == 0.75 and st["dominant_op"] == "skip_connect" and st["dominant_share"] == 0.5
    )
    assert st["entropy"] == pytest.approx(1.0) and st["max_prob"] == pytest.approx(0.25)
    assert st["param_free_mass"] == pytest.approx(0.5)


def test_collapse_monitor_warns_and_stops_early(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train, val = _loaders()
    # every op of this space counts as parameter-free by name, so the monitor fires every epoch
    space = ToySpace(ops=("none", "skip_connect", "avg_pool"))
    mon = CollapseMonitor(early_stop=True, patience=2)
    with caplog.at_level(logging.WARNING):
        res = run_search(
            _searcher(epochs=5, space=space), train, val, run_dir=tmp_path, collapse=mon, **_FAST
        )
    assert "possible collapse" in caplog.text
    assert res.stopped_early and len(res.history) == 2
    assert res.history[-1]["stop_reason"] == "collapse"
    assert RunDir(tmp_path).read_summary()["status"] == "stopped_early"


def test_monitor_state_survives_resume(tmp_path: Path) -> None:
    space = ToySpace(ops=("none", "skip_connect", "avg_pool"))
    train, val = _loaders()
    ref = run_search(
        _searcher(epochs=6, space=space),
        train,
        val,
        run_dir=tmp_path / "ref",
        collapse=CollapseMonitor(early_stop=True, patience=3),
        **_FAST,
    )
    assert len(ref.history) == 3
    d = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_search(
            _searcher(epochs=6, space=space),
            train,
            val,
            run_dir=d,
            callbacks=[_Crash(10)],
            collapse=CollapseMonitor(early_stop=True, patience=3),
            **_FAST,
        )
    res = run_search(
        _searcher(epochs=6, space=space),
        train,
        val,
        run_dir=d,
        resume=True,
        collapse=CollapseMonitor(early_stop=True, patience=3),
        **_FAST,
    )
    assert len(res.history) == 3 and res.stopped_early  # two flagged epochs came from the checkpoint


def test_progress_logs_without_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train, val = _loaders()
    with caplog.at_level(logging.INFO, logger="datanas_core.runtime.progress"):
        run_search(
            _searcher(epochs=1),
            train,
            val,
            run_dir=tmp_path,
            progress=None,
            log_every=2,
            tensorboard=False,
            report=False,
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "datanas_core.runtime.progress"]
    assert any("batch 2/4" in m and "loss=" in m and "ETA" in m for m in lines)
    assert any("epoch 1/1 done" in m and "child_acc" in m for m in lines)


def test_report_cli_on_run(tmp_path: Path) -> None:
    train, val = _loaders()
    run_search(_searcher(epochs=1), train, val, run_dir=tmp_path, **_FAST)
    from datanas_core.report import main

    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file()
    assert main([str(tmp_path / "nope")]) == 2


def test_report_of_crashed_run(tmp_path: Path) -> None:
    train, val = _loaders()
    with pytest.raises(RuntimeError):
        run_search(_searcher(epochs=2), train, val, run_dir=tmp_path, callbacks=[_Crash(6)], **_FAST)
    paths = build_report(tmp_path)
    text = paths["md"].read_text()
    assert "status | failed" in text and "figures/cell_cell.svg" in text


def test_progress_bar_when_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, val = _loaders()
    run_search(
        _searcher(epochs=1), train, val, run_dir=tmp_path, progress=True, tensorboard=False, report=False
    )
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "/4 [" in err and "loss=" in err


class _ImageTask:
    def loss(self, model: Any, batch: Any, arch: Any) -> Any:
        x, y = batch
        out = model(x, arch)
        return F.cross_entropy(out, y), {"acc": float((out.argmax(-1) == y).float().mean())}


@pytest.mark.slow
def test_tiny_darts_search_report_with_derived_size(tmp_path: Path) -> None:
    from datanas_core.space.darts import DartsSpace

    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g))
    train = DeterministicLoader(Subset(ds, range(8)), 4, seed=0)
    val = DeterministicLoader(Subset(ds, range(8, 16)), 4, seed=1)
    space = DartsSpace(extended=True)
    cfg = SearchConfig(epochs=1, estimator="egs", estimator_options={"samples": 2}, rule="data")
    s = Searcher(space, _ImageTask(), cfg, supernet_kwargs={"C": 4, "layers": 2, "num_classes": 3})
    res = run_search(
        s,
        train,
        val,
        run_dir=tmp_path,
        progress=False,
        tensorboard=False,
        derived_kwargs={"C": 4, "layers": 3, "num_classes": 3},
        derived_input_shape=(3, 8, 8),
    )
    summary = RunDir(tmp_path).read_summary()
    net = space.build_derived(res.genotype, C=4, layers=3, num_classes=3)
    assert summary["derived"]["params"] == sum(p.numel() for p in net.parameters())
    assert summary["derived"]["flops"] > 0
    ns = "{http://www.w3.org/2000/svg}"
    for ct in ("normal", "reduce"):
        root = ET.parse(tmp_path / "figures" / f"cell_{ct}.svg").getroot()
        drawn = sorted(
            (g.get("data-src"), g.get("data-dst"), g.get("data-op"))
            for g in root.iter(f"{ns}g")
            if g.get("class") == "edge" and g.get("data-op")
        )
        assert drawn == sorted((str(e.src), str(e.dst), e.op) for e in res.genotype.cells[ct].edges)
        nodes = {g.get("data-node") for g in root.iter(f"{ns}g") if g.get("class") == "node"}
        assert nodes == {"0", "1", "2", "3", "4", "5", "out"}  # all 4 intermediate nodes, even without inputs
    assert "Derived network" in (tmp_path / "report.md").read_text()


def test_collapse_is_not_checked_in_warmup_ties_or_reduction_cells() -> None:
    space = ToySpace(ops=("none", "skip_connect", "avg_pool"), cell_types=("normal", "reduce"))
    s = _searcher(epochs=4, space=space)
    mon = CollapseMonitor()
    with torch.no_grad():
        for p in s.distribution.parameters():
            p.zero_()
    rec: dict[str, Any] = {"epoch": 0}
    mon.on_epoch_end(s, rec)  # every edge ties: the derived cell means nothing
    assert rec["collapse_flag"] is False and "uniform" in rec["collapse_skipped"]
    assert rec["collapse"]  # the statistics are still recorded
    with torch.no_grad():
        for p in s.distribution.parameters():
            p.add_(torch.linspace(0, 1, p.numel()).view_as(p))
    rec = {"epoch": 1}
    mon.on_epoch_end(s, rec)
    assert rec["collapse_flag"] is True and "collapse_skipped" not in rec
    only_reduce = CollapseMonitor(exempt_cell_types=("normal", "reduce"))
    rec = {"epoch": 1}
    only_reduce.on_epoch_end(s, rec)
    assert rec["collapse_flag"] is False  # every cell type exempt
    warm = _searcher(epochs=4, space=space, arch_warmup_epochs=2)
    rec = {"epoch": 1}
    CollapseMonitor().on_epoch_end(warm, rec)
    assert rec["collapse_skipped"] == "weights-only warm-up"
