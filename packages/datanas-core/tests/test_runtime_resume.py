"""Bit-exact resume across real process kills (SIGKILL), including kills in the middle of checkpoint writes.

The search runs in subprocesses (this file is also the worker script: ``python test_runtime_resume.py
worker ...``). A run is killed with SIGKILL at chosen points (after a step, half-way through writing a
checkpoint file, after writing it but before the rename), resumed with ``resume="auto"``, and must end with
exactly the weights and architecture parameters of an uninterrupted run. After every kill, every
checkpoint file in the run directory must read back intact.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).resolve()
EPOCHS, BATCHES = 3, 4  # 12 steps
CKPT_EVERY = 3


# ------------------------------------------------------------------------------------------ worker
def _worker(argv: Sequence[str]) -> int:
    import torch.nn.functional as F
    from torch.utils.data import Subset, TensorDataset

    from datanas_core.runtime import DeterministicLoader, _fs, run_search
    from datanas_core.search import SearchConfig, Searcher
    from datanas_core.testing import ToySpace, ToyTask, toy_batches

    p = argparse.ArgumentParser()
    p.add_argument("run_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--kill-at-step", type=int, default=None)
    p.add_argument(
        "--kill-in-write", type=int, default=None, help="SIGKILL half-way through the N-th checkpoint write"
    )
    p.add_argument(
        "--kill-before-rename", type=int, default=None, help="SIGKILL before renaming the N-th checkpoint"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    class DropTask(ToyTask):
        def loss(self, model: Any, batch: Any, arch: Any) -> Any:
            x, y = batch
            logits = F.dropout(model(x, arch), 0.2, training=model.training)
            return F.cross_entropy(logits, y), {"acc": float((logits.argmax(-1) == y).float().mean())}

    class KillAtStep:
        def on_step_end(self, searcher: Any, logs: Any) -> None:
            if searcher.global_step == args.kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)

    writes = {"n": 0, "r": 0}
    real_write, real_replace = os.write, os.replace

    def killing_write(fd: int, data: Any) -> int:
        if ".dnckpt" + _fs.TMP_MARKER in os.readlink(f"/proc/self/fd/{fd}"):
            writes["n"] += 1
            if writes["n"] == args.kill_in_write:
                real_write(fd, bytes(data)[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return real_write(fd, data)

    def killing_replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".dnckpt"):
            writes["r"] += 1
            if writes["r"] == args.kill_before_rename:
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    _fs.os.write = killing_write  # type: ignore[attr-defined]
    _fs.os.replace = killing_replace  # type: ignore[attr-defined]

    b = toy_batches(8, batch_size=8, seed=3)
    ds = TensorDataset(torch.cat([x for x, _ in b]), torch.cat([y for _, y in b]))
    train = DeterministicLoader(Subset(ds, range(32)), 8, seed=0)
    val = DeterministicLoader(Subset(ds, range(32, 64)), 8, seed=1)
    cfg = SearchConfig(epochs=EPOCHS, estimator="egs", estimator_options={"samples": 2})
    s = Searcher(ToySpace(), DropTask(), cfg)
    run_search(
        s,
        train,
        val,
        run_dir=args.run_dir,
        config={"data": "toy"},
        resume="auto",
        checkpoint_every=CKPT_EVERY,
        keep_last=2,
        callbacks=[KillAtStep()],
        progress=False,
        tensorboard=False,
        report=False,
    )
    state = {f"w.{k}": v for k, v in s.supernet.state_dict().items()}
    state.update({f"a.{k}": v.detach() for k, v in s.distribution.named_parameters()})
    state["global_step"] = torch.tensor(s.global_step)
    torch.save(state, args.out)
    return 0


# ------------------------------------------------------------------------------------------ tests
def _env() -> dict[str, str]:
    import datanas_core

    src = str(Path(next(iter(datanas_core.__path__))).parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _launch(run_dir: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE), "worker", str(run_dir), str(out), *extra],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait(proc: subprocess.Popen[bytes], timeout: float = 300) -> int:
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"worker failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return proc.returncode


def _assert_checkpoints_intact(run_dir: Path) -> None:
    from datanas_core.runtime import CheckpointManager, read_checkpoint

    for info in CheckpointManager(run_dir / "checkpoints", enabled=False).list():
        read_checkpoint(info.path)  # raises on a torn file


def _assert_same(a: Path, b: Path) -> None:
    sa, sb = torch.load(a), torch.load(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.slow  # three subprocesses that import torch: ~10 s on an idle 2-core machine, minutes under load
def test_sigkill_mid_run_then_resume_is_bit_exact(tmp_path: Path) -> None:
    ref = _launch(tmp_path / "ref", tmp_path / "ref.pt")
    killed = _launch(tmp_path / "run", tmp_path / "run.pt", "--kill-at-step", "7")
    assert _wait(ref) == 0
    assert _wait(killed) == -signal.SIGKILL
    assert not (tmp_path / "run.pt").exists()
    _assert_checkpoints_intact(tmp_path / "run")
    assert _wait(_launch(tmp_path / "run", tmp_path / "run.pt")) == 0
    _assert_same(tmp_path / "ref.pt", tmp_path / "run.pt")


SAVE_STEPS = (3, 4, 6, 8, 9, 12)  # every 3 steps except on an epoch's last batch, plus every epoch end


def _position(run_dir: Path) -> int:
    from datanas_core.runtime import CheckpointManager

    infos = CheckpointManager(run_dir / "checkpoints", enabled=False).list()
    return infos[-1].step if infos else 0


@pytest.mark.slow
def test_fault_injection_random_kills_always_resume_to_the_same_result(tmp_path: Path) -> None:
    rng = random.Random(1234)
    ref = _launch(tmp_path / "ref", tmp_path / "ref.pt")
    run = tmp_path / "run"
    kinds = ["--kill-in-write", "--kill-at-step", "--kill-before-rename", "--kill-at-step", "--kill-in-write"]
    for kind in kinds:
        pos = _position(run)
        remaining = [s for s in SAVE_STEPS if s > pos]
        if kind == "--kill-at-step":
            value = rng.randint(pos + 1, EPOCHS * BATCHES - 1)
        else:
            value = rng.randint(1, min(2, len(remaining)))
        rc = _wait(_launch(run, tmp_path / "run.pt", kind, str(value)))
        assert rc == -signal.SIGKILL, (kind, value, pos)
        _assert_checkpoints_intact(run)
        names = [p.name for p in (run / "checkpoints").iterdir()] if (run / "checkpoints").is_dir() else []
        # a torn write leaves at most a temporary file (removed at the next start), never a checkpoint name
        assert all(n.endswith(".dnckpt") or ".tmp-" in n or n.endswith(".corrupt") for n in names)
        assert not any(n.endswith(".corrupt") for n in names)
    assert _wait(_launch(run, tmp_path / "run.pt")) == 0
    assert _wait(ref) == 0
    _assert_same(tmp_path / "ref.pt", tmp_path / "run.pt")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        raise SystemExit(_worker(sys.argv[2:]))
    raise SystemExit(
        "usage: test_runtime_resume.py worker RUN_DIR OUT [--kill-at-step N | --kill-in-write N]"
    )
