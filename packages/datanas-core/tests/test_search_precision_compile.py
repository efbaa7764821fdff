"""``SearchConfig.precision`` (bf16 autocast) and ``SearchConfig.compile`` (``torch.compile`` of the supernet
forward), issue 17 item 3: validation, round trip, CPU behaviour, the eager fallback and what the run records.
The GPU checks at the end are marked ``gpu`` (skipped without CUDA; ``tools/device_bench_gpu.sh`` times them)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from datanas_core import get_space
from datanas_core.errors import ConfigError
from datanas_core.runtime import run_search
from datanas_core.search import SearchConfig, Searcher
from datanas_core.testing import ToySpace, ToyTask, toy_batches

NB201 = {"C": 4, "N": 1, "num_classes": 3, "in_channels": 3}


def _images(n: int, *, bs: int = 4, hw: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(bs, 3, hw, hw, generator=g), torch.randint(0, 3, (bs,), generator=g)) for _ in range(n)
    ]


def _searcher(**cfg: Any) -> Searcher:
    cfg = {"epochs": 1, "estimator": "softmax", "estimator_options": {}, "regularizers": (), **cfg}
    return Searcher(get_space("nb201"), ToyTask(), SearchConfig(**cfg), supernet_kwargs=NB201)


def _run_steps(s: Searcher, batches: list, n: int) -> list[dict[str, float]]:
    return [s.step(batches[2 * i], batches[2 * i + 1]) for i in range(n)]


def _state(s: Searcher) -> dict[str, torch.Tensor]:
    out = {f"w.{k}": v.detach().clone() for k, v in s.supernet.state_dict().items()}
    out.update({f"a.{k}": v.detach().clone() for k, v in s.distribution.named_parameters()})
    return out


class _PassThrough:
    """What a fake ``torch.compile`` returns: the module itself, called eagerly (no compiler in the test)."""

    def __init__(self, module: nn.Module) -> None:
        self._orig_mod = module

    def __call__(self, *args: Any) -> Any:
        return self._orig_mod(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._orig_mod, name)


def _assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "bad", "valid"),
    [("precision", "fp16", "fp32, bf16"), ("compile", "fast", "off, default, reduce-overhead, max-autotune")],
)
def test_bad_precision_or_compile_mode_is_refused_with_the_valid_choices(
    field: str, bad: str, valid: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{field} must be one of {valid}; got '{bad}'"):
        SearchConfig(**{field: bad})


def test_precision_and_compile_round_trip_and_bf16_is_an_approximation() -> None:
    cfg = SearchConfig(precision="bf16", compile="reduce-overhead")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["precision"] == "bf16" and d["compile"] == "reduce-overhead"
    assert SearchConfig.from_dict(d) == cfg
    assert any("bf16" in a for a in d["approximations"])
    plain = SearchConfig()
    assert (plain.precision, plain.compile, plain.approximations) == ("fp32", "off", [])
    assert SearchConfig(compile="max-autotune").approximations == []  # compiling is not an approximation


def test_compile_blocker_names_the_data_dependent_pairs() -> None:
    assert SearchConfig(estimator="softmax", estimator_options={}).compile_blocker is None
    assert "sparse executor" in str(SearchConfig(estimator="gdas", estimator_options={}).compile_blocker)
    assert "data-dependent" in str(SearchConfig(estimator="egs").compile_blocker)


# ---------------------------------------------------------------------------------------------- bf16
def test_bf16_step_runs_the_supernet_under_autocast_and_keeps_the_architecture_float32() -> None:
    s = _searcher(precision="bf16", estimator="egs", estimator_options={"samples": 2})
    conv_dtypes: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: conv_dtypes.append(out.dtype))
        for m in s.supernet.modules()
        if isinstance(m, nn.Conv2d)
    ]
    sample_dtypes: list[torch.dtype] = []
    real_sample = s.sample

    def sample(*args: Any, **kwargs: Any) -> Any:
        arch = real_sample(*args, **kwargs)
        sample_dtypes.extend(c.weights.dtype for c in arch.values())
        assert not torch.is_autocast_enabled("cpu")  # sampling runs outside autocast
        return arch

    s.sample = sample  # type: ignore[method-assign]
    logs = s.step(*_images(2))
    for h in hooks:
        h.remove()
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}
    assert sample_dtypes and set(sample_dtypes) == {torch.float32}
    for p in s.arch_params:
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in s.supernet.parameters())
    assert s.execution["precision"] == "bf16" and s.execution["autocast"] == "bfloat16"
    assert torch.isfinite(torch.tensor([logs["val_loss"], logs["train_loss"]])).all()


@pytest.mark.parametrize(
    "cfg",
    [{"order": "second"}, {"order": "single_level", "estimator": "snas"}],
    ids=["second_order", "single_level"],
)
def test_bf16_second_order_and_single_level_steps_keep_float32_arch_gradients(cfg: dict) -> None:
    s = _searcher(precision="bf16", **cfg)
    logs = s.step(*_images(2))
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in s.arch_params)
    assert torch.isfinite(torch.tensor(logs.get("val_loss", logs.get("train_loss")))).all()


@pytest.mark.parametrize("estimator", ["softmax", "egs", "gdas"])
def test_bf16_losses_are_close_to_fp32(estimator: str) -> None:
    opts = {"samples": 2} if estimator == "egs" else {}
    batches = _images(6)
    logs = {
        p: _run_steps(_searcher(precision=p, estimator=estimator, estimator_options=opts), batches, 3)
        for p in ("fp32", "bf16")
    }
    for a, b in zip(logs["fp32"], logs["bf16"], strict=True):
        for key in ("val_loss", "train_loss"):
            assert b[key] == pytest.approx(a[key], rel=0.05, abs=0.05)


def test_bf16_run_records_the_approximation_in_manifest_and_summary(tmp_path: Path) -> None:
    s = _searcher(precision="bf16")
    b = _images(4)
    run_search(s, b[:2], b[2:], run_dir=tmp_path / "run", progress=False, tensorboard=False, report=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert any("bf16" in a and "approximation" in a for a in manifest["search_config"]["approximations"])
    assert any("bf16" in a for a in summary["approximations"])
    for doc in (manifest, summary):
        assert doc["execution"]["precision"] == "bf16"
        assert doc["execution"]["compile_used"] == "off"


def test_a_resumed_run_may_change_precision_and_compile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = toy_batches(4, seed=1)

    def run(epochs: int, **cfg: Any) -> Searcher:
        conf = SearchConfig(epochs=epochs, estimator="softmax", estimator_options={}, regularizers=(), **cfg)
        s = Searcher(ToySpace(), ToyTask(), conf)
        run_search(
            s,
            b[:2],
            b[2:],
            run_dir=tmp_path / "run",
            resume="auto",
            progress=False,
            tensorboard=False,
            report=False,
        )
        return s

    run(1)
    with caplog.at_level(logging.INFO, logger="datanas_core"):
        s = run(2, precision="bf16", compile="default")
    assert s.epoch == 2 and s.execution["compile_used"] == "default"
    assert "precision fp32 -> bf16" in caplog.text and "compile off -> default" in caplog.text


# ---------------------------------------------------------------------------------------------- compile
def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "eagerly" in r.getMessage()
    ]


def test_a_failing_torch_compile_falls_back_to_eager_once_with_the_same_results(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    batches = _images(6)
    eager = _searcher()
    eager_logs = _run_steps(eager, batches, 3)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    with caplog.at_level(logging.WARNING):
        s = _searcher(compile="reduce-overhead")
        logs = _run_steps(s, batches, 3)
    assert logs == eager_logs
    _assert_bit_equal(_state(s), _state(eager))
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "no C++ compiler" in warnings[0]
    assert s.execution["compile"] == "reduce-overhead" and s.execution["compile_used"] == "off"
    assert "no C++ compiler" in str(s.execution["compile_fallback"])


def test_a_compiled_forward_that_fails_midway_falls_back_with_buffers_restored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The compiled call runs part of the forward (BatchNorm statistics move) and then fails: the buffers are
    restored and the step is computed eagerly, bit-equal to an eager run."""
    batches = _images(6)
    eager = _searcher()
    _run_steps(eager, batches, 3)

    class HalfCompiled:
        def __init__(self, module: nn.Module) -> None:
            self._orig_mod = module

        def __call__(self, *args: Any) -> Any:
            self._orig_mod(*args)  # runs (and updates running statistics) ...
            raise RuntimeError("inductor lowering failed")  # ... then "compilation" fails

        def __getattr__(self, name: str) -> Any:
            return getattr(self._orig_mod, name)

    monkeypatch.setattr(torch, "compile", lambda module, **_k: HalfCompiled(module))
    with caplog.at_level(logging.WARNING):
        s = _searcher(compile="default")
        _run_steps(s, batches, 3)
    _assert_bit_equal(_state(s), _state(eager))
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "inductor lowering failed" in warnings[0]


def test_a_task_error_under_compile_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda module, **_k: _PassThrough(module))
    s = _searcher(compile="default")
    with pytest.raises(RuntimeError):  # wrong input channels: eager fails as well, so the error is the task's
        s.step((torch.randn(2, 5, 8, 8), torch.zeros(2, dtype=torch.long)), _images(1)[0])


@pytest.mark.parametrize(("estimator", "opts"), [("egs", {"samples": 2}), ("gdas", {})])
def test_data_dependent_pairs_run_eagerly_with_one_warning(
    estimator: str, opts: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    batches = _images(6)
    eager = _searcher(estimator=estimator, estimator_options=opts)
    _run_steps(eager, batches, 3)

    def never(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("torch.compile must not be called for this pair")

    monkeypatch.setattr(torch, "compile", never)
    with caplog.at_level(logging.WARNING):
        s = _searcher(estimator=estimator, estimator_options=opts, compile="reduce-overhead")
        _run_steps(s, batches, 3)
    _assert_bit_equal(_state(s), _state(eager))
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "data-dependent" in warnings[0]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None, reason="needs a C++ compiler"
)
def test_compiled_step_matches_eager_arch_gradients_on_cpu() -> None:
    """Real ``torch.compile`` (inductor, CPU) of a tiny NB201 supernet: the first architecture step's
    gradients equal eager ones within 1e-5. Measured about 90 s on the loaded 2-core dev box (mostly
    compilation: the lean executor's custom autograd functions break the graph)."""
    torch.set_num_threads(1)
    batches = _images(2)
    grads = {}
    for mode in ("off", "default"):
        s = _searcher(compile=mode)
        s.step(*batches)
        grads[mode] = [p.grad.clone() for p in s.arch_params]
        if mode == "default":
            assert s.execution["compile_used"] == "default", s.execution
    for a, b in zip(grads["off"], grads["default"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["off", "reduce-overhead"])
def test_bf16_and_compile_step_on_cuda(mode: str) -> None:
    dev = torch.device("cuda")
    cfg = SearchConfig(
        epochs=1, estimator="softmax", estimator_options={}, regularizers=(), precision="bf16", compile=mode
    )
    s = Searcher(get_space("nb201"), ToyTask(), cfg, supernet_kwargs=NB201, device=dev)
    batches = [(x.to(dev), y.to(dev)) for x, y in _images(8)]
    for i in range(4):
        logs = s.step(batches[2 * i], batches[2 * i + 1])
    assert torch.isfinite(torch.tensor(logs["val_loss"]))
    assert s.execution["compile_used"] == mode
    assert all(p.grad.dtype == torch.float32 for p in s.arch_params)
