"""The ``datanas`` console script: one entry point for every installed datanas package.

``datanas DOMAIN COMMAND [ARGS...]`` runs a domain command (``datanas vision search --epochs 5``,
``datanas lm train ...``); ``datanas COMMAND [ARGS...]`` runs a core command (``datanas report RUN_DIR``,
``datanas show GENOTYPE``). Everything after the command goes to that command unchanged, so
``datanas vision search ARGS`` is ``python -m datanas_vision.search ARGS``.

Packages register their commands in the ``datanas.commands`` entry-point group: a name ``DOMAIN.COMMAND``
(or ``COMMAND`` for core) pointing at a ``main(argv) -> int`` function, e.g.
``"vision.search" = "datanas_vision.search:main"``. Listing the commands reads only package metadata and the
commands' module docstrings from their source files, so ``datanas --help`` imports neither torch nor any
framework: a package's modules are imported only when one of its commands runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["Command", "discover_commands", "main"]

GROUP = "datanas.commands"


@dataclass(frozen=True)
class Command:
    """One registered command: ``domain`` is ``""`` for core commands."""

    domain: str
    name: str
    target: str  # "module:function"

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def function(self) -> str:
        return self.target.partition(":")[2] or "main"

    def summary(self) -> str:
        """First line of the command module's docstring, read from its source without importing it."""
        source = _module_source(self.module)
        if source is None:
            return ""
        try:
            doc = ast.get_docstring(ast.parse(source.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return ""
        return _plain(doc.strip().splitlines()[0]) if doc else ""


def _plain(line: str) -> str:
    """A docstring's first line without its ``python -m ...`` invocation (the listing shows the command)."""
    head, sep, tail = line.partition(": ")
    if sep and (head.startswith("``") and head.endswith("``") or head == "Command line"):
        line = tail
    for marker in (": ``", " ``python -m"):
        if marker in line:
            line = line[: line.index(marker)] + "."
    line = line.replace("``", "")
    return line[:1].upper() + line[1:]


def _module_source(module: str) -> Path | None:
    """The source file of ``module``, located from its top-level package's spec (nothing is imported)."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not spec.submodule_search_locations:  # a plain top-level module
        return Path(spec.origin) if spec.origin and not rest else None
    path = Path(next(iter(spec.submodule_search_locations)))
    if rest:
        path = path.joinpath(*rest.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def discover_commands() -> dict[str, dict[str, Command]]:
    """Registered commands by domain (``""`` for core), each by name; sorted for stable listings."""
    found: dict[str, dict[str, Command]] = {}
    for ep in entry_points(group=GROUP):
        domain, _, name = ep.name.rpartition(".")
        found.setdefault(domain, {})[name] = Command(domain, name, ep.value)
    return {d: dict(sorted(cmds.items())) for d, cmds in sorted(found.items())}


def _usage(commands: dict[str, dict[str, Command]]) -> str:
    lines = [
        "usage: datanas DOMAIN COMMAND [ARGS...]   |   datanas COMMAND [ARGS...]",
        "",
        "Differentiable architecture search (DATA, DARTS, GDAS, SNAS, DrNAS, EnTranNAS, E2NAS).",
        "Run `datanas DOMAIN COMMAND --help` for a command's options.",
    ]
    width = max([len(f"{d} {n}".strip()) for d, cmds in commands.items() for n in cmds] or [0]) + 2
    for domain, cmds in commands.items():
        lines += ["", f"{domain} commands:" if domain else "core commands:"]
        for name, cmd in cmds.items():
            lines.append(f"  {f'{domain} {name}'.strip():<{width}}{cmd.summary()}")
    if not commands:
        lines += ["", "No datanas command is registered: is datanas-core installed in this environment?"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default: ``sys.argv[1:]``) to a registered command; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = discover_commands()
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(commands))
        return 0
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"datanas-core {version('datanas-core')}")
        return 0
    head, rest = args[0], args[1:]
    if head in commands and head:
        domain = commands[head]
        if not rest or rest[0] in ("-h", "--help"):
            print(_usage({head: domain}), file=sys.stdout if rest else sys.stderr)
            return 0 if rest else 2
        if rest[0] not in domain:
            print(
                f"datanas: unknown {head} command {rest[0]!r}; valid: {', '.join(domain)}",
                file=sys.stderr,
            )
            return 2
        cmd, cmd_args = domain[rest[0]], rest[1:]
    elif head in commands.get("", {}):
        cmd, cmd_args = commands[""][head], rest
    else:
        valid = [d for d in commands if d] + list(commands.get("", {}))
        print(f"datanas: unknown domain or command {head!r}; valid: {', '.join(valid)}", file=sys.stderr)
        return 2
    fn = getattr(importlib.import_module(cmd.module), cmd.function)
    status = fn(cmd_args)
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
