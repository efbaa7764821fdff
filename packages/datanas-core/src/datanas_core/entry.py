"""What every datanas command line does with errors: one line on stderr, exit status 2, no traceback.

Domain CLIs decorate their ``main`` with :func:`cli_entry`::

    @cli_entry
    def main(argv: Sequence[str] | None = None) -> int:
        ...

and get, for every failure that escapes ``main``:

- a datanas error (:class:`~datanas_core.errors.DataNASError`) or an operating-system error (a file that
  cannot be read or written): ``error: <message>`` on one line, exit status 2;
- Ctrl-C during a run: ``interrupted: resume with: python -m <module> --resume RUN_DIR`` on one line (or
  ``datanas DOMAIN COMMAND --resume RUN_DIR`` when the ``datanas`` console script ran it): the run directory
  holds the run's options, so no other flag is repeated; exit status 130;
- anything else (a bug): ``internal error: <type>: <message>`` on one line and exit status 1.

``--debug`` anywhere on the command line shows the Python traceback instead (also for errors that ``main``
catches and logs itself); the wrapper removes the flag before ``main`` parses the arguments, so every CLI
accepts it. :func:`one_line_errors` makes argparse
report a bad flag value on one line too (usage is only printed by ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from datanas_core.errors import DataNASError, RunInterrupted

__all__ = ["cli_entry", "one_line_errors", "resume_command"]

F = TypeVar("F", bound=Callable[..., int])

#: Exit status of a Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cli_module(module: str) -> str:
    """The module a user runs with ``python -m``: a package's ``__main__`` is run as the package."""
    return module[: -len(".__main__")] if module.endswith(".__main__") else module


def _console_command(module: str) -> str | None:
    """``datanas DOMAIN COMMAND`` of ``module`` when this process is the ``datanas`` console script (or
    ``python -m datanas``) and a registered command runs ``module``; ``None`` otherwise."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or not (
        script.name == "datanas" or (script.name == "__main__.py" and script.parent.name == "datanas")
    ):
        return None
    try:
        from datanas.cli import discover_commands
    except ImportError:
        return None
    for domain, commands in discover_commands().items():
        for name, cmd in commands.items():
            if _cli_module(cmd.module) == _cli_module(module):
                return " ".join(["datanas", *([domain] if domain else []), name])
    return None


def resume_command(
    module: str, argv: Sequence[str], run_dir: str | Path, *, program: str | None = None
) -> str:
    """The command that resumes ``run_dir``: ``PROGRAM --resume RUN_DIR``, nothing else (the run directory
    holds the run's own options, which ``--resume`` restores).

    ``program`` is how the user started the command (``datanas vision search``); by default ``python -m
    MODULE``. With ``--seeds`` in ``argv`` the run directory of one seed (``OUT/seed_N``) resumes as ``OUT``
    (every seed's run is continued or started)."""
    target = Path(run_dir)
    if any(a == "--seeds" or a.startswith("--seeds=") for a in argv) and target.name.startswith("seed_"):
        target = target.parent
    head = shlex.split(program) if program else ["python", "-m", _cli_module(module)]
    return shlex.join([*head, "--resume", str(target)])


@contextlib.contextmanager
def _tracebacks_in_error_logs() -> Iterator[None]:
    """While active, an ERROR log record made inside an ``except`` block carries that exception, so the
    log line is followed by its traceback (``--debug``). The previous record factory is restored after."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.levelno >= logging.ERROR and record.exc_info is None and sys.exc_info()[0] is not None:
            record.exc_info = sys.exc_info()
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def _fail(message: str, status: int) -> int:
    sys.stderr.write(_one_line(message) + "\n")
    sys.stderr.flush()
    return status


def cli_entry(main: F) -> F:
    """Decorate a CLI ``main(argv=None) -> int`` (see the module docstring)."""
    module = main.__module__
    if module == "__main__":  # run as ``python -m pkg.mod``: the spec names the module
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = getattr(spec, "name", None) or module

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> int:
        given = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in given
        args = [a for a in given if a != "--debug"]
        try:
            with _tracebacks_in_error_logs() if debug else contextlib.nullcontext():
                return main(args, *rest, **kwargs)
        except RunInterrupted as exc:
            command = resume_command(module, args, exc.run_dir, program=_console_command(module))
            return _fail(f"interrupted: resume with: {command}", INTERRUPTED)
        except KeyboardInterrupt:
            return _fail("interrupted before the run started; nothing to resume", INTERRUPTED)
        except DataNASError as exc:
            if debug:
                raise
            return _fail(f"error: {exc}", 2)
        except OSError as exc:
            if debug:
                raise
            where = f" {exc.filename!r}" if exc.filename else ""
            return _fail(f"error:{where} {exc.strerror or exc} (rerun with --debug for details)", 2)
        except RecursionError:
            if debug:
                raise
            return _fail(
                "error: an input is nested too deeply to be read (rerun with --debug for details)", 2
            )
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into one line
            if debug:
                raise
            return _fail(
                f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1
            )

    return wrapper  # type: ignore[return-value]


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad argument as one line (``prog: error: ...``) with exit status 2,
    without the multi-line usage block (``--help`` still prints it). Returns ``parser``."""

    def error(message: str) -> NoReturn:
        parser.exit(2, f"{parser.prog}: error: {_one_line(message)} (see --help)\n")

    parser.error = error  # type: ignore[method-assign]
    return parser
