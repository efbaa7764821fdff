"""Distributed search with torchrun (gloo on loopback): identical α and genotype on every rank, agreement
with one process on the same global batch, and elastic restarts that resume from the last checkpoint.

This file is also the worker script (``torchrun ... test_runtime_distributed.py worker OUT ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).resolve()
PER_RANK_BATCH, WORLD = 8, 2


def _worker(argv: Sequence[str]) -> int:
    from torch.utils.data import Subset, TensorDataset

    from datanas_core.runtime import DeterministicLoader, init_distributed, run_search
    from datanas_core.search import SearchConfig, Searcher
    from datanas_core.testing import ToySpace, ToyTask, toy_batches

    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--batch", type=int, default=PER_RANK_BATCH)
    p.add_argument("--kill-rank-at-step", type=int, nargs=2, default=None, metavar=("RANK", "STEP"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import faulthandler

    faulthandler.dump_traceback_later(600, exit=True)  # debugging aid: a hung worker shows where it hangs
    ctx = init_distributed()

    class Kill:
        def on_step_end(self, searcher: Any, logs: Any) -> None:
            if args.kill_rank_at_step is None or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
                return
            rank, step = args.kill_rank_at_step
            if ctx.rank == rank and searcher.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)

    b = toy_batches(16, batch_size=8, seed=3)
    ds = TensorDataset(torch.cat([x for x, _ in b]), torch.cat([y for _, y in b]))
    train = DeterministicLoader(Subset(ds, range(64)), args.batch, seed=0, drop_last=True)
    val = DeterministicLoader(Subset(ds, range(64, 128)), args.batch, seed=1, drop_last=True)
    cfg = SearchConfig(epochs=3, estimator="egs", estimator_options={"samples": 2}, grad_clip=None)
    s = Searcher(ToySpace(cell_types=("normal", "reduce")), ToyTask(), cfg)
    res = run_search(
        s,
        train,
        val,
        run_dir=args.out / "run",
        config={"data": "toy"},
        resume="auto",
        checkpoint_every=2,
        callbacks=[Kill()],
        progress=False,
        tensorboard=False,
        report=False,
        distributed=ctx,
    )
    state = {f"a.{k}": v.detach().clone() for k, v in s.distribution.named_parameters()}
    state.update({f"w.{k}": v.detach().clone() for k, v in s.supernet.named_parameters()})
    torch.save(state, args.out / f"state.rank{ctx.rank}.pt")
    (args.out / f"genotype.rank{ctx.rank}.json").write_text(res.genotype.to_json())
    (args.out / f"steps.rank{ctx.rank}.json").write_text(
        json.dumps({"steps": s.global_step, "world": ctx.world_size})
    )
    if ctx.enabled:
        torch.distributed.destroy_process_group()
    return 0


def _env() -> dict[str, str]:
    import datanas_core

    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(next(iter(datanas_core.__path__))).parent) + os.pathsep + env.get("PYTHONPATH", "")
    )
    env["OMP_NUM_THREADS"] = "1"
    env["GLOO_SOCKET_IFNAME"] = "lo"
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT"):
        env.pop(k, None)
    return env


def _torchrun(out: Path, *extra: str, restarts: int = 0) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        f"--max-restarts={restarts}",
        str(HERE),
        "worker",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900, check=False)


def _single(out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(HERE), "worker", str(out), "--batch", str(PER_RANK_BATCH * WORLD)]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900, check=False)


def _load(out: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"state.rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    res = _torchrun(out)
    assert res.returncode == 0, res.stderr[-4000:]
    return out


@pytest.mark.slow
def test_ranks_hold_identical_alpha_and_genotype(two_ranks: Path) -> None:
    r0, r1 = _load(two_ranks, 0), _load(two_ranks, 1)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert (two_ranks / "genotype.rank0.json").read_text() == (two_ranks / "genotype.rank1.json").read_text()
    # only rank 0 wrote the run directory
    assert (two_ranks / "run" / "genotype.json").is_file()
    assert json.loads((two_ranks / "steps.rank1.json").read_text()) == {"steps": 12, "world": 2}
    man = json.loads((two_ranks / "run" / "manifest.json").read_text())
    assert man["world_size"] == 2 and man["distributed"]["backend"] == "gloo"


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_global_batch(two_ranks: Path, tmp_path: Path) -> None:
    res = _single(tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    one, dist = _load(tmp_path, 0), _load(two_ranks, 0)
    for k in one:
        torch.testing.assert_close(dist[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    assert (tmp_path / "genotype.rank0.json").read_text() == (two_ranks / "genotype.rank0.json").read_text()


@pytest.mark.slow
def test_elastic_restart_resumes_from_last_checkpoint(two_ranks: Path, tmp_path: Path) -> None:
    res = _torchrun(tmp_path, "--kill-rank-at-step", "1", "7", restarts=1)
    assert res.returncode == 0, res.stderr[-4000:]
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e.get("kind") == "event"][:2] == ["start", "resume"]
    ref, got = _load(two_ranks, 0), _load(tmp_path, 0)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        raise SystemExit(_worker(sys.argv[2:]))
    raise SystemExit("usage: test_runtime_distributed.py worker OUT [--batch N] [--kill-rank-at-step R S]")
