"""Small explicit registries with helpful lookup errors."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from datanas_core.errors import ConfigError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


def _load_builtins() -> None:
    """Every lookup sees the built-in registrations: ``import datanas_core`` defers them (no torch at
    import time), so the first lookup of any registry imports the registering modules."""
    import datanas_core

    datanas_core._load_builtins()


class Registry(Generic[T]):
    """A name -> object map whose lookup errors list the valid names.

    Args:
        kind: What the registry holds ("op", "estimator", ...); used in error messages.

    Example:
        >>> r: Registry[type] = Registry("thing")
        >>> @r.register("a")
        ... class A: ...
        >>> r.get("a") is A
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, override: bool = False) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def _do(o: T) -> T:
            if name in self._items and not override:
                raise ConfigError(
                    f"{self.kind} {name!r} is already registered (pass override=True to replace it)"
                )
            self._items[name] = o
            return o

        if obj is None:
            return _do
        return _do(obj)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists valid names and close matches.
        """
        _load_builtins()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            valid = self.names()
            close = difflib.get_close_matches(str(name), valid, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(valid)}.{hint}"
            ) from None

    def build(self, spec: str | Mapping[str, Any], **defaults: Any) -> Any:
        """Instantiate from ``"name"`` or ``{"type": name, **kwargs}``; unknown kwargs fail early."""
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, Mapping):
            if "type" not in spec:
                raise ConfigError(f"{self.kind} spec {dict(spec)!r} needs a 'type' key")
            kwargs = {k: v for k, v in spec.items() if k != "type"}
            name = spec["type"]
        else:
            raise ConfigError(f"{self.kind} spec must be a name or a mapping, got {type(spec).__name__}")
        factory = self.get(name)
        merged = {**defaults, **kwargs}
        if callable(factory):
            try:
                sig = inspect.signature(factory)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                sig = None
            if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
                bad = sorted(set(kwargs) - set(sig.parameters))
                if bad:
                    raise ConfigError(
                        f"{self.kind} {name!r} got unknown option(s) {bad}; valid options: "
                        f"{', '.join(sorted(sig.parameters))}"
                    )
                merged = {k: v for k, v in merged.items() if k in sig.parameters}
            return factory(**merged)  # type: ignore[operator]
        raise ConfigError(f"{self.kind} {name!r} is not callable and cannot be built")

    def names(self) -> list[str]:
        """Sorted registered names."""
        _load_builtins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        _load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        _load_builtins()
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        _load_builtins()
        return [(k, self._items[k]) for k in self.names()]

    def decorator(self, name: str) -> Callable[[T], T]:
        return self.register(name)
