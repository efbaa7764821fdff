"""Export derived networks and fixed models: TorchScript and ONNX (checked against torch).

Both functions take a network with a fixed architecture: the derived network of any space
(``space.build_derived(genotype, ...)``) or a searched model after :func:`datanas_core.fix`. A supernet or a
model that still holds :class:`~datanas_core.nn.LayerChoice` / :class:`~datanas_core.nn.InputChoice`
modules is refused with an error that says what to do.

ONNX needs the optional extra ``datanas-core[export]`` (``onnx``, ``onnxruntime``; ``onnxscript`` for
torch's exporter).

Example::

    from datanas_core.export import export_onnx, export_torchscript
    net = space.build_derived(genotype, C=16, layers=8).eval()
    export_torchscript(net, torch.randn(1, 3, 32, 32), "net.pt")
    export_onnx(net, torch.randn(1, 3, 32, 32), "net.onnx")      # runs it in onnxruntime and compares
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import DataNASError, MissingDependencyError

__all__ = ["ExportError", "check_exportable", "export_onnx", "export_torchscript"]

logger = logging.getLogger(__name__)


class ExportError(DataNASError, RuntimeError):
    """A network cannot be exported, or the exported file does not reproduce torch's outputs."""


def check_exportable(model: nn.Module) -> None:
    """Refuse networks whose architecture is not fixed.

    Raises:
        ExportError: ``model`` holds choice modules (names their labels) or mixed edges of a supernet.
    """
    from datanas_core.nn.choices import ChoiceModule
    from datanas_core.space.mixed import MixedOp

    labels = []
    mixed = []
    for path, m in model.named_modules():
        if isinstance(m, ChoiceModule):
            labels.append(m.label if m.label is not None else path.replace(".", "_") or "root")
        elif isinstance(m, MixedOp):
            mixed.append(path or "(root)")
    if labels:
        raise ExportError(
            f"{type(model).__name__} has unfixed choices {sorted(set(labels))}: export a fixed model, "
            "datanas_core.fix(model, genotype) (or search(...).model)"
        )
    if mixed:
        raise ExportError(
            f"{type(model).__name__} is a supernet (mixed edges at {mixed[:3]}{' ...' if len(mixed) > 3 else ''}"
            "): export the derived network, space.build_derived(genotype, ...)"
        )


def _export_twin(model: nn.Module) -> nn.Module:
    """``model``, or a copy in which modules that exporters cannot record are replaced by their standard
    equivalents (same function): the fast box-filter ``AvgPool3x3`` (a Python autograd function) becomes
    ``nn.AvgPool2d(3, stride, 1, count_include_pad=False)``."""
    import copy

    from datanas_core import ops

    avg = getattr(ops, "AvgPool3x3", None)
    if avg is None or not any(isinstance(m, avg) for m in model.modules()):
        return model
    twin = copy.deepcopy(model)

    def walk(module: nn.Module) -> None:
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            if isinstance(child, avg):
                module._modules[name] = nn.AvgPool2d(3, child.stride, 1, count_include_pad=False)
            else:
                walk(child)

    walk(twin)
    return twin.train(model.training)


def _as_tuple(example: Any) -> tuple[Any, ...]:
    return tuple(example) if isinstance(example, tuple) else (example,)


def _flatten(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flatten(out[k])]
    if out is None:
        return []
    raise ExportError(f"cannot compare an output of type {type(out).__name__}")


def _max_abs_err(a: Sequence[Any], b: Sequence[Any]) -> float:
    if len(a) != len(b):
        raise ExportError(f"the exported network returns {len(b)} outputs, torch returns {len(a)}")
    err = 0.0
    for x, y in zip(a, b, strict=True):
        x = torch.as_tensor(x).detach().to("cpu", torch.float64)
        y = torch.as_tensor(y).detach().to("cpu", torch.float64)
        if tuple(x.shape) != tuple(y.shape):
            raise ExportError(
                f"output shape {tuple(y.shape)} of the exported network != torch's {tuple(x.shape)}"
            )
        if x.numel():
            err = max(err, float((x - y).abs().max()))
    return err


def export_torchscript(
    model: nn.Module,
    example: Any,
    path: str | os.PathLike[str],
    *,
    method: str = "trace",
    atol: float = 1e-5,
) -> Path:
    """Save ``model`` (eval mode) as TorchScript and check that the saved file reproduces its outputs.

    Args:
        model: a fixed network (derived network or fixed model).
        example: an input (or a tuple of inputs) for tracing and the check.
        path: the ``.pt`` file to write.
        method: ``"trace"`` (any fixed network) or ``"script"`` (keeps Python control flow; the module's code
            must be scriptable).
        atol: largest accepted absolute difference between torch and the reloaded file.

    Returns:
        The path written.

    Raises:
        ExportError: unfixed choices or a supernet, tracing/scripting failed, or outputs differ.
    """
    check_exportable(model)
    if method not in ("trace", "script"):
        raise ExportError(f"method must be 'trace' or 'script', got {method!r}")
    args = _as_tuple(example)
    was_training = model.training
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.export
            warnings.simplefilter("ignore", FutureWarning)
            twin = _export_twin(model)
            try:
                ts = (
                    torch.jit.trace(twin, args, check_trace=False)
                    if method == "trace"
                    else torch.jit.script(twin)
                )
            except Exception as exc:  # noqa: BLE001 - wrapped with context
                raise ExportError(f"torch.jit.{method} failed for {type(model).__name__}: {exc}") from exc
            torch.jit.save(ts, str(path))
            loaded = torch.jit.load(str(path), map_location="cpu")
            dev = next((p.device for p in model.parameters()), torch.device("cpu"))
            ref = _flatten(model(*args))
            got = _flatten(loaded.to(dev)(*args))
        err = _max_abs_err(ref, got)
        if err > atol:
            raise ExportError(f"the TorchScript file differs from torch by {err:.3g} (> {atol:g})")
    finally:
        model.train(was_training)
    logger.info("wrote %s (TorchScript, %s, max abs error %.3g)", path, method, err)
    return path


def _require_onnx(check: bool) -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if check and importlib.util.find_spec("onnxruntime") is None:
        missing.append("onnxruntime")
    if missing:
        raise MissingDependencyError(
            f"ONNX export needs {', '.join(missing)}: pip install 'datanas-core[export]'"
        )


def export_onnx(
    model: nn.Module,
    example: Any,
    path: str | os.PathLike[str],
    *,
    check: bool = True,
    atol: float = 1e-4,
    opset: int | None = None,
    dynamic_batch: bool = False,
) -> Path:
    """Export ``model`` (eval mode) to ONNX; with ``check`` run the file in onnxruntime and compare.

    Args:
        model: a fixed network (derived network or fixed model).
        example: an input (or a tuple of inputs); its shapes are the exported shapes.
        path: the ``.onnx`` file to write.
        check: run the file with onnxruntime (CPU) on ``example`` and compare every output with torch.
        atol: largest accepted absolute difference (default 1e-4).
        opset: ONNX opset (default: torch's exporter default).
        dynamic_batch: mark the first dimension of every input as dynamic.

    Returns:
        The path written.

    Raises:
        MissingDependencyError: onnx/onnxscript (or onnxruntime with ``check``) missing.
        ExportError: unfixed choices or a supernet, the exporter failed, or onnxruntime's outputs differ
            from torch's by more than ``atol`` (the message gives the error).
    """
    check_exportable(model)
    _require_onnx(check)
    args = _as_tuple(example)
    if not all(isinstance(a, Tensor) for a in args):
        raise ExportError("export_onnx needs tensor inputs")
    was_training = model.training
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_args = tuple(a.detach().to("cpu") for a in args)
    try:
        kwargs: dict[str, Any] = {"dynamo": True, "external_data": False, "verbose": False}
        if opset is not None:
            kwargs["opset_version"] = opset
        if dynamic_batch:
            kwargs["dynamic_shapes"] = tuple({0: torch.export.Dim("batch")} for _ in args)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(_export_twin(model), args, str(path), **kwargs)
        except Exception as exc:  # noqa: BLE001 - wrapped with context
            raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc
        if check:
            import onnxruntime as ort

            with torch.no_grad():
                ref = _flatten(model(*args))
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), cpu_args, strict=False)}
            got = sess.run(None, feeds)
            err = _max_abs_err(ref, got)
            if err > atol:
                raise ExportError(
                    f"onnxruntime's outputs differ from torch by {err:.3g} (> {atol:g}) for {path}"
                )
            logger.info("wrote %s (ONNX, onnxruntime max abs error %.3g)", path, err)
    finally:
        model.train(was_training)
    return path
