"""Hardened runtime: no pickle code runs from a checkpoint, one run per directory, resume edge cases,
Ctrl-C and the one-line CLI errors of :func:`datanas_core.runtime.cli_entry`."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from datanas_core.entry import resume_command
from datanas_core.errors import (
    CheckpointError,
    ConfigError,
    NumericalError,
    RunInterrupted,
    RunLockedError,
    UnsafeCheckpointError,
)
from datanas_core.runtime import (
    CheckpointManager,
    DeterministicLoader,
    RunDir,
    RunLock,
    cli_entry,
    run_search,
)
from datanas_core.runtime.checkpoint import (
    _HEADER,
    MAGIC,
    decode_checkpoint,
    encode_checkpoint,
    read_checkpoint,
)
from datanas_core.search import SearchConfig, Searcher
from datanas_core.testing import ToySpace, ToyTask, toy_batches

_FAST = {"progress": False, "tensorboard": False, "report": False, "consistency": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def _loaders() -> tuple[DeterministicLoader, DeterministicLoader]:
    b = toy_batches(8, batch_size=8, seed=3)
    ds = TensorDataset(torch.cat([x for x, _ in b]), torch.cat([y for _, y in b]))
    return (
        DeterministicLoader(Subset(ds, range(32)), 8, seed=0),
        DeterministicLoader(Subset(ds, range(32, 64)), 8, seed=1),
    )


def _searcher(epochs: int = 1, **cfg: Any) -> Searcher:
    base: dict[str, Any] = {"epochs": epochs, "estimator": "egs", "estimator_options": {"samples": 2}}
    base.update(cfg)
    return Searcher(ToySpace(), ToyTask(), SearchConfig(**base))


def _run(run_dir: Path, **kw: Any) -> Any:
    kw.setdefault("config", {"data": "toy"})
    epochs = kw.pop("epochs", 1)
    cfg = kw.pop("cfg", {})
    return run_search(_searcher(epochs, **cfg), *_loaders(), run_dir=run_dir, **{**_FAST, **kw})


# --------------------------------------------------------------------------------------------- checkpoints
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _crafted(marker: Path) -> bytes:
    """A checkpoint with a valid header and checksum whose payload would run code if unpickled."""
    buf = io.BytesIO()
    torch.save({"format": 1, "epoch": 0, "evil": _Payload(marker)}, buf)
    payload = buf.getvalue()
    return _HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload)) + payload


def test_crafted_checkpoint_with_valid_checksum_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    p = tmp_path / "x.dnckpt"
    p.write_bytes(_crafted(marker))
    with pytest.raises(UnsafeCheckpointError, match=r"not loaded because unpickling it could run code"):
        read_checkpoint(p)
    assert not marker.exists()


def test_crafted_checkpoint_in_a_run_is_refused_on_resume(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    _run(run)
    newest = CheckpointManager(run / "checkpoints").filename(999, 9, 0)
    (run / "checkpoints" / newest).write_bytes(_crafted(marker))
    with pytest.raises(UnsafeCheckpointError, match=newest):
        _run(run, resume=True)
    assert not marker.exists()
    assert (run / "checkpoints" / newest).exists()  # left for the user to inspect, not renamed


def test_non_tensor_state_is_stored_as_plain_data() -> None:
    state = {
        "arr": np.arange(3, dtype=np.float32),
        "np_scalar": np.float64(0.5),
        "s": {3, 1, 2},
        "path": Path("/x"),
        "nested": [(1, "a"), {"t": torch.ones(2)}],
    }
    back = decode_checkpoint(encode_checkpoint(state))
    assert torch.equal(back["arr"], torch.arange(3, dtype=torch.float32))
    assert back["np_scalar"] == 0.5 and isinstance(back["np_scalar"], float)
    assert back["s"] == [1, 2, 3] and back["path"] == "/x"
    assert back["nested"][0] == (1, "a") and torch.equal(back["nested"][1]["t"], torch.ones(2))


# ------------------------------------------------------------------------------------------- run dir lock
_HOLDER = """
import sys, time
from datanas_core.runtime.rundir import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_second_process_is_refused_and_stale_lock_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, env=_env(), text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"in use by another search \(pid {holder.pid}\)") as ei:
            _run(run)
        assert ei.value.pid == holder.pid
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    # the killed holder's lock file is still there, with its pid; the next run takes it over
    assert str(holder.pid) in (run / ".lock").read_text()
    _run(run)
    assert (run / "genotype.json").is_file()
    assert (run / ".lock").read_text() == ""  # released at the end


def test_lock_in_process_is_exclusive_and_released(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        # flock locks are per open file: a second acquisition in the same process is refused as well
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()


def test_out_is_a_file_or_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"is a file, not a directory"):
        _run(f)
    with pytest.raises(ConfigError, match=r"is a file, not a directory"):
        _run(f / "sub")

    def read_only(self: Path, *a: Any, **k: Any) -> None:
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(ConfigError, match=r"cannot create run directory .*Read-only file system"):
        _run(tmp_path / "new")
    monkeypatch.undo()
    (tmp_path / "immutable").mkdir()
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as for chattr +i or a read-only mount
    with pytest.raises(ConfigError, match=r"immutable' is not writable"):
        _run(tmp_path / "immutable")


# ------------------------------------------------------------------------------------------------- resume
def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_from_step_0(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    RunDir(run).write_config({"data": "toy"})
    RunDir(run).append_metrics({"kind": "event", "event": "start", "step": 0, "epoch": 0})
    with pytest.raises(ConfigError, match="already holds a run"):
        _run(run)
    res = _run(run, resume=True)
    assert res.genotype is not None and RunDir(run).read_summary()["status"] == "completed"


def test_a_run_saved_before_a_search_option_existed_resumes(tmp_path: Path, monkeypatch: Any) -> None:
    """A run written by an older version has no key for a newer SearchConfig field (and no CLI key for its
    flag): it resumes while the field keeps its default (which reproduces the old behaviour) or the flag is
    not given, and a non-default value is still reported as a difference."""
    run = tmp_path / "run"
    real = SearchConfig.to_dict
    new_fields = ("decision_criterion", "decision_batches", "decision_samples")

    def old_to_dict(self: SearchConfig) -> dict[str, Any]:
        return {k: v for k, v in real(self).items() if k not in new_fields}

    monkeypatch.setattr(SearchConfig, "to_dict", old_to_dict)
    _run(run, epochs=1, config={"data": "toy"})
    monkeypatch.setattr(SearchConfig, "to_dict", real)
    with pytest.raises(ConfigError, match=r"search_config.decision_batches: not in the saved run, now 4"):
        _run(run, resume=True, epochs=2, cfg={"decision_batches": 4})
    with pytest.raises(ConfigError, match=r"config.decision_batches: not in the saved run, now 4"):
        _run(run, resume=True, epochs=2, config={"data": "toy", "decision_batches": 4})
    res = _run(run, resume=True, epochs=2, config={"data": "toy", "decision_criterion": None})
    assert res.genotype is not None and RunDir(run).read_summary()["status"] == "completed"


def test_all_checkpoints_damaged_says_what_to_do_and_restart_works(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _run(run, epochs=2)
    for info in CheckpointManager(run / "checkpoints").list():
        data = bytearray(info.path.read_bytes())
        data[-5] ^= 0xFF
        info.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"all 2 are damaged.*new --out, or with --restart"):
        _run(run, resume=True, epochs=2)
    # the files are now *.corrupt: a second resume still explains, instead of "no checkpoint"
    with pytest.raises(CheckpointError, match=r"every checkpoint was damaged.*\.corrupt.*--restart"):
        _run(run, resume=True, epochs=2)
    _run(run, restart=True, epochs=2)
    assert RunDir(run).read_summary()["status"] == "completed"
    previous = list((run / "previous").iterdir())
    assert len(previous) == 1 and (previous[0] / "config.json").is_file()
    assert len(list((previous[0] / "checkpoints").glob("*.corrupt"))) == 2


class _Poison:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, searcher: Any, logs: Any) -> None:
        if searcher.global_step == self.step:
            with torch.no_grad():
                next(searcher.supernet.parameters()).fill_(float("nan"))


def test_nan_in_first_epoch_says_no_checkpoint_exists(tmp_path: Path) -> None:
    with pytest.raises(NumericalError) as ei:
        _run(tmp_path / "run", callbacks=[_Poison(1)])
    msg = str(ei.value)
    assert "None" not in msg and "No checkpoint exists yet" in msg and "--restart" in msg


def test_nan_advice_matches_resume_which_accepts_a_lower_learning_rate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(NumericalError, match=r"resume from it with a lower learning rate"):
        _run(run, epochs=2, cfg={"w_lr": 0.1}, callbacks=[_Poison(6)], config={"w_lr": 0.1})
    s = _searcher(3, w_lr=0.05, a_lr=1e-3)
    run_search(s, *_loaders(), run_dir=run, resume=True, config={"w_lr": 0.05, "epochs": 3}, **_FAST)
    assert s.epoch == 3
    assert s.a_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert s.w_scheduler.T_max == 3 and s.w_scheduler.base_lrs[0] == pytest.approx(0.05)
    # anything else is refused with the list of differences and the allowed set
    with pytest.raises(ConfigError, match=r"search_config\.grad_clip.*may change on resume: .*epochs"):
        _run(run, resume=True, epochs=3, cfg={"w_lr": 0.05, "grad_clip": 1.0}, config={"w_lr": 0.05})


# ----------------------------------------------------------------------------------------- Ctrl-C and CLI
class _CtrlC:
    def on_step_end(self, searcher: Any, logs: Any) -> None:
        if searcher.global_step == 2:
            raise KeyboardInterrupt


def test_ctrl_c_raises_run_interrupted_naming_the_directory(tmp_path: Path) -> None:
    with pytest.raises(RunInterrupted) as ei:
        _run(tmp_path / "run", callbacks=[_CtrlC()])
    assert ei.value.run_dir == str(tmp_path / "run")
    assert RunDir(tmp_path / "run").read_summary()["status"] == "interrupted"


def test_cli_entry_turns_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    @cli_entry
    def main(argv: Any = None) -> int:
        kind = argv[0]
        if kind == "interrupt":
            raise RunInterrupted("runs/x")
        if kind == "config":
            raise ConfigError("bad value 'q' for --thing\nvalid: a, b")
        if kind == "os":
            raise PermissionError(13, "Permission denied", "/ro/out")
        raise TypeError("a bug")

    assert main(["interrupt", "--out", "runs/x", "--epochs", "3"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: resume with: python -m ")
    assert err.endswith("hardening_runtime --resume runs/x\n")  # the run dir holds the options
    assert err.count("\n") == 1 and "--epochs" not in err and "interrupt " not in err
    assert main(["config"]) == 2
    assert capsys.readouterr().err == "error: bad value 'q' for --thing valid: a, b\n"
    assert main(["os"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'/ro/out'" in err and "Permission denied" in err
    assert main(["bug"]) == 1
    assert capsys.readouterr().err.startswith("internal error: TypeError: a bug")
    with pytest.raises(TypeError):
        main(["bug", "--debug"])


def test_resume_command_for_multi_seed_runs() -> None:
    cmd = resume_command("datanas_vision.search", ["--seeds", "0,1", "--out=o", "--restart"], "o/seed_1")
    assert cmd == "python -m datanas_vision.search --resume o"
    assert resume_command("m", ["--epochs", "3"], "o/seed_1") == "python -m m --resume o/seed_1"


def test_resume_command_names_the_program_the_user_ran() -> None:
    cmd = resume_command("datanas_fewshot.cluster.__main__", [], "runs/my run")
    assert cmd == "python -m datanas_fewshot.cluster --resume 'runs/my run'"
    cmd = resume_command("datanas_lm.search", ["--epochs", "9"], "r", program="datanas lm search")
    assert cmd == "datanas lm search --resume r"


@pytest.mark.parametrize("argv0", ["/venv/bin/datanas", "/site/datanas/__main__.py"])
def test_ctrl_c_under_the_console_script_prints_the_datanas_form(
    argv0: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datanas import cli

    @cli_entry
    def main(argv: Any = None) -> int:
        raise RunInterrupted("runs/x")

    monkeypatch.setattr(sys, "argv", [argv0, "vision", "search", "--epochs", "3"])
    monkeypatch.setattr(
        cli,
        "discover_commands",
        lambda: {"vision": {"search": cli.Command("vision", "search", f"{main.__module__}:main")}},
    )
    assert main(["--epochs", "3"]) == 130
    assert capsys.readouterr().err == "interrupted: resume with: datanas vision search --resume runs/x\n"


def test_multi_seed_resume_starts_seeds_that_never_ran(tmp_path: Path) -> None:
    import argparse

    from datanas_core.runtime import RuntimeOptions, add_runtime_args

    parser = add_runtime_args(argparse.ArgumentParser())
    with pytest.raises(ConfigError, match="no such run directory"):
        RuntimeOptions.from_args(parser.parse_args(["--resume", str(tmp_path / "missing")]))
    opts = RuntimeOptions.from_args(parser.parse_args(["--resume", str(tmp_path), "--seeds", "0,1"]))
    assert opts.run_kwargs()["resume"] == "auto"
    single = RuntimeOptions.from_args(parser.parse_args(["--resume", str(tmp_path)]))
    assert single.run_kwargs()["resume"] is True
    # "auto" over a run whose checkpoints were all set aside explains instead of starting over silently
    run = tmp_path / "run"
    _run(run)
    for info in CheckpointManager(run / "checkpoints").list():
        info.path.rename(info.path.with_name(info.path.name + ".corrupt"))
    with pytest.raises(CheckpointError, match="every checkpoint was damaged"):
        _run(run, resume="auto")
