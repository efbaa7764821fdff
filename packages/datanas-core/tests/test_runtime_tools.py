"""Dry run, multi-seed summaries and the shared CLI flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype, Genotype
from datanas_core.runtime import (
    DeterministicLoader,
    RuntimeOptions,
    add_runtime_args,
    dry_run,
    genotype_similarity,
    parse_memory,
    parse_seeds,
    register_data_files,
    run_search,
    run_seeds,
)
from datanas_core.search import SearchConfig, Searcher
from datanas_core.testing import ToySpace, ToyTask, toy_batches

pytestmark = pytest.mark.usefixtures("one_thread")


def _searcher(seed: int = 0, epochs: int = 1, **sizes: Any) -> Searcher:
    cfg = SearchConfig(epochs=epochs, estimator="egs", estimator_options={"samples": 2}, seed=seed)
    return Searcher(ToySpace(**sizes), ToyTask(), cfg)


def _batch(n: int, in_features: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, in_features), torch.randint(0, 3, (n,))


def test_dry_run_measures_and_restores_state() -> None:
    s = _searcher(dim=64, in_features=256)
    before = {k: v.clone() for k, v in s.supernet.state_dict().items()}
    alpha = [p.detach().clone() for p in s.distribution.parameters()]
    gen_state = s.generator.get_state()
    rep = dry_run(s, lambda n: _batch(n, 256), batch_size=512, memory_budget=10**12)
    assert rep.step_time_s > 0 and rep.peak_memory > 0 and rep.supernet_params > 0
    assert rep.fits is True
    assert rep.per_sample_memory is not None and rep.per_sample_memory > 0
    assert rep.suggested_batch_size is not None and rep.suggested_batch_size >= 512
    assert "batch 512" in rep.to_text() and "budget" in rep.to_text()
    after = s.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(a, b) for a, b in zip(alpha, s.distribution.parameters(), strict=True))
    assert torch.equal(gen_state, s.generator.get_state()) and s.global_step == 0


def test_dry_run_suggests_smaller_batch_for_small_budget() -> None:
    s = _searcher(dim=64, in_features=512)
    rep = dry_run(s, lambda n: _batch(n, 512), batch_size=1024, memory_budget=1)
    assert rep.fits is False
    assert rep.suggested_batch_size == 0


def test_dry_run_memory_model_is_consistent() -> None:
    s = _searcher(dim=32, in_features=128)
    rep = dry_run(s, lambda n: _batch(n, 128), batch_size=256, probe_batch_size=64, memory_budget=2 * 1024**3)
    assert rep.per_sample_memory is not None and rep.base_memory is not None
    # the linear model goes through both measurements; memory grows with the batch
    assert rep.base_memory + rep.per_sample_memory * 256 == pytest.approx(rep.peak_memory, rel=1e-6)
    assert rep.base_memory + rep.per_sample_memory * 64 == pytest.approx(rep.probe_peak_memory, rel=1e-6)
    assert rep.peak_memory > rep.probe_peak_memory
    # a sample of 128 float32 inputs needs at least its own 512 bytes
    assert rep.per_sample_memory >= 512
    b = rep.suggested_batch_size
    assert b is not None and rep.base_memory + rep.per_sample_memory * b <= 2 * 1024**3


def _loaders(seed: int) -> tuple[DeterministicLoader, DeterministicLoader]:
    b = toy_batches(8, batch_size=8, seed=3)
    ds = torch.utils.data.TensorDataset(torch.cat([x for x, _ in b]), torch.cat([y for _, y in b]))
    return (
        DeterministicLoader(torch.utils.data.Subset(ds, range(32)), 8, seed=seed),
        DeterministicLoader(torch.utils.data.Subset(ds, range(32, 64)), 8, seed=seed + 100),
    )


def test_run_seeds_summary(tmp_path: Path) -> None:
    def one(seed: int, out: Path) -> Any:
        train, val = _loaders(seed)
        return run_search(
            _searcher(seed),
            train,
            val,
            run_dir=out,
            config={"seed": seed},
            progress=False,
            tensorboard=False,
            report=False,
        )

    summary = run_seeds(one, [0, 1, 2], tmp_path)
    assert [r["seed"] for r in summary.rows] == [0, 1, 2]
    assert all(r["status"] == "completed" for r in summary.rows)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "seed_0",
        "seed_1",
        "seed_2",
        "multiseed.json",
        "multiseed.md",
    }
    vals = [r["child_acc"] for r in summary.rows]
    mean = sum(vals) / 3
    std = (sum((v - mean) ** 2 for v in vals) / 2) ** 0.5
    assert summary.stats["child_acc"]["mean"] == pytest.approx(mean)
    assert summary.stats["child_acc"]["std"] == pytest.approx(std)
    genos = [Genotype.load(tmp_path / f"seed_{s}" / "genotype.json") for s in (0, 1, 2)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert summary.identical_fraction == pytest.approx(sum(genos[a] == genos[b] for a, b in pairs) / 3)
    assert (
        1 <= summary.unique_genotypes <= 3 and summary.most_common_count + summary.unique_genotypes - 1 <= 3
    )
    md = (tmp_path / "multiseed.md").read_text()
    assert "mean ± std" in md and "Genotype agreement" in md
    # the multi-seed report renders (per-seed reports plus the summary)
    from datanas_core.report import main

    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file() and (tmp_path / "seed_1" / "report.html").is_file()


def test_genotype_similarity() -> None:
    a = Genotype("x", {"c": CellGenotype([(0, 1, "a"), (0, 2, "b")], (1, 2))})
    b = Genotype("x", {"c": CellGenotype([(0, 1, "a"), (1, 2, "b")], (1, 2))})
    assert genotype_similarity(a, a) == 1.0
    assert genotype_similarity(a, b) == pytest.approx(1 / 3)


def test_parse_helpers() -> None:
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3-5,1") == [3, 4, 5, 1]
    assert parse_seeds("2,2") == [2]
    with pytest.raises(ConfigError, match="seeds"):
        parse_seeds("a,b")
    assert parse_memory("1.5GiB") == int(1.5 * 1024**3)
    assert parse_memory("512M") == 512_000_000
    assert parse_memory(None) is None
    with pytest.raises(ConfigError, match="unit"):
        parse_memory("3 parsecs")


def _parse(argv: list[str]) -> RuntimeOptions:
    p = argparse.ArgumentParser()
    add_runtime_args(p)
    return RuntimeOptions.from_args(p.parse_args(argv))


def test_runtime_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    o = _parse(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "0,1",
            "--checkpoint-every",
            "100",
            "--keep-last",
            "2",
            "--no-progress",
            "--early-stop-collapse",
            "--dry-run",
            "--memory-budget",
            "8GiB",
        ]
    )
    assert o.out == tmp_path and o.resume is False and o.seeds == [0, 1] and o.multi_seed
    assert o.run_dir_for(1) == tmp_path / "seed_1"
    assert o.dry_run and o.memory_budget == 8 * 1024**3
    kw = o.run_kwargs()
    assert kw == {
        "resume": False,
        "checkpoint_every": 100,
        "keep_last": 2,
        "progress": False,
        "log_every": 50,
        "early_stop_collapse": True,
        "report": True,
        "restart": False,
    }
    r = _parse(["--resume", str(tmp_path)])
    assert r.out == tmp_path and r.resume is True and r.seeds == [0] and r.run_dir_for(0) == tmp_path
    with pytest.raises(ConfigError, match="disagree"):
        _parse(["--resume", str(tmp_path), "--out", str(tmp_path / "other")])
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert _parse(["--out", str(tmp_path)]).resume == "auto"
    with pytest.raises(ConfigError, match="keep-last"):
        _parse(["--keep-last", "0"])


def test_manifest_records_declared_data_files(tmp_path: Path) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(b"hello")
    train, val = _loaders(0)
    register_data_files(train.dataset, f)  # how a domain dataset declares the files it reads
    run_search(
        _searcher(), train, val, run_dir=tmp_path / "run", progress=False, tensorboard=False, report=False
    )
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (entry,) = man["data_files"]
    assert entry["bytes"] == 5
    assert entry["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_dry_run_measures_a_full_step_with_per_step_schedules_and_warm_up() -> None:
    """A search that starts weights-only with the budget-aware (per-step) schedule: the dry run measures a
    step with its architecture step (outside ``fit``, where the steps per epoch are unknown) and restores
    epoch, step counter and ``steps_per_epoch``."""
    from datanas_core.search.config import BUDGET_AWARE_SCHEDULE

    cfg = SearchConfig(
        epochs=5,
        estimator="egs",
        estimator_options={"samples": 2},
        arch_warmup_epochs=2,
        seed=0,
        **BUDGET_AWARE_SCHEDULE,
    )
    s = Searcher(ToySpace(dim=16, in_features=8), ToyTask(), cfg)
    arch_steps = []
    inner = s._arch_first_order

    def counted(batch: Any) -> dict[str, float]:
        arch_steps.append(s.epoch)
        return inner(batch)

    s._arch_first_order = counted  # type: ignore[method-assign]
    alpha = [p.detach().clone() for p in s.distribution.parameters()]
    rep = dry_run(s, lambda n: _batch(n, 8), batch_size=8, steps_per_epoch=3)
    assert rep.step_time_s > 0
    assert arch_steps and set(arch_steps) == {2}  # measured at the first architecture epoch
    assert s.epoch == 0 and s.global_step == 0 and s.steps_per_epoch is None
    assert all(torch.equal(a, b) for a, b in zip(alpha, s.distribution.parameters(), strict=True))
    rep = dry_run(s, lambda n: _batch(n, 8), batch_size=8)  # steps per epoch unknown: 1 for the measurement
    assert rep.step_time_s > 0 and s.steps_per_epoch is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_dry_run_rejects_bad_steps_per_epoch(bad: Any) -> None:
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        dry_run(_searcher(), lambda n: _batch(n), batch_size=4, steps_per_epoch=bad)
