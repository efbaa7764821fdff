"""The ``mmcv._ext`` placeholder: registered only for an mmcv without compiled ops, loud when called."""

from __future__ import annotations

import types

import pytest

from datanas_core.errors import MissingDependencyError
from datanas_seg._mmcv_compat import (
    EXT_MODULE,
    MissingCompiledOp,
    MmcvExtPlaceholder,
    ensure_mmcv_ext,
    has_compiled_mmcv_ops,
    is_placeholder,
)


def finder(*present: str):  # noqa: ANN201
    """A fake ``find_spec`` that finds exactly the named modules."""
    calls: list[str] = []

    def find(name: str) -> object | None:
        calls.append(name)
        return object() if name in present else None

    find.calls = calls  # type: ignore[attr-defined]
    return find


def test_lite_mmcv_gets_placeholder() -> None:
    modules: dict[str, object] = {}
    assert ensure_mmcv_ext(modules=modules, find_spec=finder("mmcv")) is True
    ext = modules[EXT_MODULE]
    assert is_placeholder(ext)
    # a spec without loader: find_spec() answers and mmcv's check_ops_exist() reports "no ops"
    assert ext.__spec__.name == EXT_MODULE and ext.__spec__.loader is None
    assert not has_compiled_mmcv_ops(modules=modules, find_spec=finder("mmcv"))
    # idempotent: a second call keeps the same object
    assert ensure_mmcv_ext(modules=modules, find_spec=finder("mmcv")) is True
    assert modules[EXT_MODULE] is ext


def test_full_mmcv_is_left_alone() -> None:
    modules: dict[str, object] = {}
    find = finder("mmcv", EXT_MODULE)
    assert ensure_mmcv_ext(modules=modules, find_spec=find) is False
    assert EXT_MODULE not in modules
    assert has_compiled_mmcv_ops(modules=modules, find_spec=find)


def test_already_imported_real_extension_is_left_alone() -> None:
    real = types.ModuleType(EXT_MODULE)
    modules: dict[str, object] = {EXT_MODULE: real}
    # even a finder that claims the extension is missing must not replace an imported module
    assert ensure_mmcv_ext(modules=modules, find_spec=finder("mmcv")) is False
    assert modules[EXT_MODULE] is real
    assert has_compiled_mmcv_ops(modules=modules, find_spec=finder())


def test_no_mmcv_registers_nothing() -> None:
    modules: dict[str, object] = {}
    assert ensure_mmcv_ext(modules=modules, find_spec=finder()) is False
    assert modules == {}


def test_finder_errors_count_as_absent() -> None:
    def broken(name: str) -> object:
        raise ValueError(f"{name}.__spec__ is None")

    modules: dict[str, object] = {}
    assert ensure_mmcv_ext(modules=modules, find_spec=broken) is False
    assert modules == {}


def test_placeholder_attributes_raise_clear_error_when_called() -> None:
    ext = MmcvExtPlaceholder(EXT_MODULE)
    # mmcv's ext_loader checks hasattr() for every op at import time: that must pass
    assert hasattr(ext, "nms")
    assert hasattr(ext, "deform_conv_forward")
    op = ext.deform_conv_forward
    assert isinstance(op, MissingCompiledOp)
    assert "deform_conv_forward" in repr(op)
    with pytest.raises(MissingDependencyError, match="deform_conv_forward") as info:
        op(1, 2, k=3)
    assert "mmcv-lite" in str(info.value) and "pip install" in str(info.value)
    with pytest.raises(ImportError):  # MissingDependencyError is an ImportError too
        ext.nms()


def test_placeholder_dunders_behave_like_a_module() -> None:
    ext = MmcvExtPlaceholder(EXT_MODULE)
    with pytest.raises(AttributeError):
        ext.__path__  # noqa: B018 - attribute access is the test
    assert not hasattr(ext, "__wrapped__")
    assert ext.__name__ == EXT_MODULE
