"""The options every datanas command line shares, defined once: flags, types, defaults and help.

Domain CLIs start from :func:`new_parser`, add the shared method, budget and run flags with
:func:`add_options` (typed from :class:`~datanas_core.search.SearchConfig`'s fields) and their domain options
(data, task, retraining) with :func:`add_dataclass_options` from frozen dataclasses (type, default and
docstring help in one place; :func:`dataclass_from_args` rebuilds them after parsing). ``main =
command(build_parser, run)`` parses with :func:`parse_cli` (``--config FILE`` and ``--resume RUN_DIR`` read a
run's saved options, flags given with them override), runs with :func:`run_logged` and turns failures into
one line (:func:`~datanas_core.entry.cli_entry`). They resolve ``--genotype`` with :func:`resolve_genotype`
and end with :func:`print_summary` (one block on stdout and ``summary.json``). :class:`HelpFormatter` shows
every default once.

Why not jsonargparse: it names options after the fields (``--arch_warmup_epochs``); dash-style names
need an ``add_argument`` override that its nested-dataclass default resolution does not follow, and it
would be one more dependency of every package. The flags here are plain argparse, built from one table.

This module imports neither torch nor a domain package, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core.errors import ConfigError, GenotypeError

if TYPE_CHECKING:
    from datanas_core.genotype import Genotype

__all__ = [
    "CONFIG_KEY",
    "ESTIMATOR_NAMES",
    "REGULARIZER_NAMES",
    "RULE_NAMES",
    "SEARCH_CONFIG_OPTIONS",
    "HelpFormatter",
    "Option",
    "SHARED_OPTIONS",
    "add_dataclass_options",
    "dataclass_from_args",
    "add_options",
    "check_positive",
    "command",
    "dataclass_help",
    "cli_config",
    "config_changes",
    "format_summary",
    "new_parser",
    "parse_cli",
    "parse_kv",
    "parse_reg",
    "regularizer_specs",
    "resumed_run_config",
    "resumed_search_config",
    "print_search_summary",
    "print_summary",
    "resolve_genotype",
    "run_logged",
    "search_metrics",
    "search_warnings",
    "shared_option_names",
    "torch_device",
]

#: The built-in ``--estimator``, ``--reg`` and ``--rule`` names, for option choices and help without importing
#: torch (``--help`` stays fast); ``tests/test_cli_names.py`` checks them against the registries.
ESTIMATOR_NAMES = ("dirichlet", "dst", "e2nas", "egs", "gdas", "gumbel", "snas", "softmax")
REGULARIZER_NAMES = ("adc", "dirichlet_kl", "dst_sparsity", "entropy", "expected_cost", "l2", "novelty")
RULE_NAMES = (
    "all_edges_argmax",
    "argmax_edge",
    "choice",
    "data",
    "dst",
    "entrannas",
    "entrannas_nb201",
    "threshold",
    "topk_edges",
    "topk_pairs",
)

#: The key of a run's ``config.json`` that holds the command line's parsed options (see :func:`cli_config`).
CONFIG_KEY = "cli_args"

#: Options never taken from a saved configuration: where the run goes and how this invocation behaves.
_NOT_RESTORED = frozenset(
    {"out", "resume", "config", "restart", "dry_run", "memory_budget", "debug", "verbose", "print_config"}
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once: not when the help already states a default, and not for ``None``,
    ``False`` flags or suppressed defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or "%(default)" in text:
            return text
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action.default, list) and not action.default:
            return text
        if action.option_strings and action.nargs != 0 or isinstance(action, argparse.BooleanOptionalAction):
            return text + " (default: %(default)s)"
        return text


# ------------------------------------------------------------------------------------------ the CLI frame
def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser every datanas CLI starts from: its ``prog`` (``python -m MODULE``), the description, the
    :class:`HelpFormatter` (each default once) and one-line errors for a bad flag (exit status 2; see
    :func:`~datanas_core.entry.one_line_errors`)."""
    from datanas_core.entry import one_line_errors

    return one_line_errors(
        argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    )


def run_logged(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Configure logging (``args.verbose``), then ``run(args)``; a datanas error is logged as one line and
    gives exit status 2 (the CLIs' common ending of ``main``)."""
    import logging

    from datanas_core.errors import DataNASError
    from datanas_core.runtime import configure_logging

    configure_logging(int(getattr(args, "verbose", 0) or 0))
    try:
        return run(args)
    except DataNASError as exc:
        logging.getLogger(run.__module__).error("%s", exc)
        return 2


def command(
    build_parser: Callable[[], argparse.ArgumentParser], run: Callable[[argparse.Namespace], int]
) -> Callable[..., int]:
    """A CLI's ``main(argv=None) -> int``: build the parser, parse with :func:`parse_cli` (``--config`` and
    ``--resume RUN_DIR`` where the parser has them), then :func:`run_logged`; wrapped in
    :func:`~datanas_core.entry.cli_entry` (one-line errors, the Ctrl-C resume line naming ``run``'s module).

    Example::

        main = command(build_parser, _run)
    """
    from datanas_core.entry import cli_entry

    def main(argv: Sequence[str] | None = None) -> int:
        return run_logged(run, parse_cli(build_parser(), argv))

    main.__module__ = run.__module__
    main.__qualname__ = main.__name__ = "main"
    main.__doc__ = f"Run the command line of {run.__module__}; returns the process exit status."
    return cli_entry(main)


def torch_device(name: str | None) -> Any:
    """``--device``: the named torch device, else CUDA when available, else the CPU."""
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def check_positive(owner: Any = None, *names: str, **values: Any) -> None:
    """Raise :class:`~datanas_core.errors.ConfigError` naming the flag (``--batch-size``) unless every value
    is ``None`` or a positive integer: the attributes ``names`` of ``owner`` (a dataclass in its
    ``__post_init__``) and the keyword ``values``."""
    items = [(n, getattr(owner, n)) for n in names] + list(values.items())
    for name, v in items:
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Option:
    """One shared option: its flags (the first is canonical, the others aliases), ``add_argument``
    keywords, and the :class:`~datanas_core.search.SearchConfig` field it sets (type and help source)."""

    flags: tuple[str, ...]
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    config_field: str | None = None

    @property
    def name(self) -> str:
        return self.flags[0]

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")


def _config_type(name: str) -> Callable[[str], Any]:
    """The argparse type of a SearchConfig field (int, float or str; Optional unwrapped)."""
    import dataclasses

    from datanas_core.search.config import SearchConfig

    hints = {f.name: str(f.type) for f in dataclasses.fields(SearchConfig)}
    text = hints[name]
    if text.startswith("int"):
        return int
    if text.startswith("float"):
        return float
    return str


def _choices(name: str) -> tuple[str, ...] | None:
    """The Literal choices of a SearchConfig field (``None`` when it is not a Literal)."""
    import dataclasses
    import typing

    from datanas_core.search.config import SearchConfig

    hint = typing.get_type_hints(SearchConfig)[name]
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is typing.Literal:
            return tuple(typing.get_args(candidate))
    del dataclasses
    return None


class _DecisionWindow(argparse.Action):
    """``--progressive-decisions START END``: two floats checked like
    :attr:`~datanas_core.search.SearchConfig.progressive_decisions` (a bad window is an argparse error: one
    line, exit status 2, naming the values)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        from datanas_core.search.config import is_decision_window

        try:
            window = [float(v) for v in values]
        except (TypeError, ValueError):
            raise argparse.ArgumentError(
                self, f"START END must be two numbers, got {' '.join(values)}"
            ) from None
        if not is_decision_window(window):
            raise argparse.ArgumentError(
                self,
                "START END must be fractions of the architecture steps with 0 <= START < END <= 1, got "
                + " ".join(values),
            )
        setattr(namespace, self.dest, window)


class _FieldValue:
    """The argparse ``type`` of a :class:`~datanas_core.search.SearchConfig` field whose range SearchConfig
    checks (``--arch-travel``, ``--a-lr-warmup``, ``--a-lr-schedule``): ``base(text)``, refused at parse time
    (one argparse line, exit status 2) when SearchConfig refuses it, with SearchConfig's reason."""

    def __init__(self, config_field: str, base: Callable[[str], Any]) -> None:
        self.config_field = config_field
        self.base = base
        self.__name__ = getattr(base, "__name__", "value")

    def __call__(self, text: str) -> Any:
        from datanas_core.errors import DataNASError
        from datanas_core.search.config import SearchConfig

        try:
            value = self.base(text)
        except (TypeError, ValueError):
            kind = "number" if self.base is float else self.__name__
            raise argparse.ArgumentTypeError(f"must be a {kind}, got {text!r}") from None
        try:
            SearchConfig(**{self.config_field: value})
        except DataNASError as exc:
            reason = exc.args[0] if exc.args else str(exc)
            raise argparse.ArgumentTypeError(f"{text!r} refused: {reason}") from None
        return value

    def __repr__(self) -> str:
        return f"_FieldValue({self.config_field!r}, {self.__name__})"


#: Every option shared by two or more domain CLIs. Domain CLIs add them with :func:`add_options` (and may
#: override ``default``/``help``/``choices`` per CLI); nothing here is written twice.
SHARED_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            ("--preset",),
            "a method's published recipe for the searched space (derivation rule, estimator, warm-up, ...); "
            "explicit flags override it",
        ),
        Option(("--estimator",), "architecture estimator", {"type": str}, "estimator"),
        Option(("--samples",), "architecture samples M per step (egs, gumbel)", {"type": int}),
        Option(
            ("--executor",),
            "mixed-edge executor (default: the estimator's native one); 'exact' runs every op of every "
            "edge, 'sparse' only ops with non-zero weight",
            {},
            "executor",
        ),
        Option(
            ("--reg",),
            "regulariser NAME[:WEIGHT][:KEY=VALUE,...] (repeatable) or 'none'",
            {"action": "append", "metavar": "NAME[:WEIGHT][:K=V,...]"},
        ),
        Option(
            ("--rule",), "derivation rule (default: the method's rule for the space)", {"type": str}, "rule"
        ),
        Option(("--order",), "gradient order of the architecture step", {}, "order"),
        Option(
            ("--epochs",),
            "search epochs (the budget; --resume RUN_DIR --epochs N extends a run)",
            {},
            "epochs",
        ),
        Option(
            ("--arch-warmup-epochs", "--arch-warmup"),
            "epochs that train the weights only before the architecture is updated",
            {},
            "arch_warmup_epochs",
        ),
        Option(("--w-optimizer",), "supernet weight optimiser", {}, "w_optimizer"),
        Option(("--w-lr",), "weight learning rate", {}, "w_lr"),
        Option(("--a-lr",), "architecture learning rate (Adam)", {}, "a_lr"),
        Option(
            ("--weight-sampling",),
            "where the weight step draws its architecture: the distribution or uniform logits (fair path "
            "sampling; see SearchConfig.weight_sampling); not given: the preset's, else distribution",
            {},
            "weight_sampling",
        ),
        Option(
            ("--schedule-unit",),
            "what the temperature / M / arch-lr schedules progress over: epochs (published) or architecture "
            "steps (every step; ends at the last step whatever the budget); not given: the preset's or the CLI's",
            {},
            "schedule_unit",
        ),
        Option(
            ("--arch-travel",),
            "budget-aware architecture lr: a_lr = ARCH_TRAVEL / number of architecture steps (DATA's published "
            "run: about 12); replaces --a-lr; not given: the preset's or the CLI's",
            {"type": _FieldValue("arch_travel", float), "metavar": "ARCH_TRAVEL"},
            "arch_travel",
        ),
        Option(
            ("--a-lr-warmup",),
            "fraction of the architecture steps over which the architecture lr ramps up linearly; not given: "
            "the preset's or the CLI's",
            {"type": _FieldValue("a_lr_warmup", float), "metavar": "FRACTION"},
            "a_lr_warmup",
        ),
        Option(
            ("--a-lr-schedule",),
            "schedule of a factor on the architecture lr, e.g. cosine:1:0.1 (see datanas_core.schedules); not "
            "given: the preset's or the CLI's",
            {"type": _FieldValue("a_lr_schedule", str), "metavar": "SCHEDULE"},
            "a_lr_schedule",
        ),
        Option(
            ("--progressive-decisions",),
            "decide the edges one at a time between the fractions START and END of the architecture steps, the "
            "most certain first, each fixed to its top op (SGAS-style); after END only the chosen cell trains, so "
            "the search ends decided (e.g. 0.1 0.7; off unless given or set by the preset)",
            {"nargs": 2, "metavar": ("START", "END"), "action": _DecisionWindow},
            "progressive_decisions",
        ),
        Option(
            ("--decision-criterion",),
            "how --progressive-decisions picks the next edge and its op: margin (largest top-1 probability "
            "margin), fix (lowest mean validation loss with the edge fixed to the op) or remove (DARTS-PT: largest "
            "loss increase when the op is removed); fix and remove cost candidates x --decision-samples x "
            "--decision-batches forwards per decision, need --progressive-decisions and are refused in keep-k "
            "cells (DARTS' topk_edges); not part of DATA's published method (default: margin)",
            {},
            "decision_criterion",
        ),
        Option(
            ("--decision-batches",),
            "held-out batches (the first of the architecture split) a measured --decision-criterion averages over "
            "(default: 8)",
            {"metavar": "N"},
            "decision_batches",
        ),
        Option(
            ("--decision-samples",),
            "architecture samples per candidate a measured --decision-criterion averages over (default: 2)",
            {"metavar": "N"},
            "decision_samples",
        ),
        Option(
            ("--precision",),
            "arithmetic of the supernet forward and loss: fp32, or bf16 under torch.autocast (an approximation "
            "of the float32 search, flagged in the log, manifest and summary; sampling, architecture parameters, "
            "their gradients and the optimiser steps stay float32)",
            {},
            "precision",
        ),
        Option(
            ("--compile",),
            "torch.compile mode of the supernet forward (off: eager; reduce-overhead: CUDA graphs). The sparse "
            "executor and straight-through estimators on the exact executor (EGS) choose the ops to run from the "
            "sample every step and run eagerly, as does a failed compilation (one warning; the summary records "
            "what ran)",
            {},
            "compile",
        ),
        Option(
            ("--threads",),
            "CPU threads for torch (default: the CLI's choice for its data, see the description)",
            {"type": int},
        ),
        Option(
            ("--download",),
            "download missing dataset files into --data-dir (checksum-verified; off by default)",
            {"action": argparse.BooleanOptionalAction, "default": False},
        ),
        Option(
            ("--genotype",),
            "a genotype JSON file, a search run directory, a bundled name or an NB201 string",
            {"type": str},
        ),
        Option(
            ("--print-config",),
            "print the resolved options (with --config / --resume applied) as YAML or JSON and exit; the "
            "output is a valid --config file",
            {"action": "store_true", "default": False},
        ),
        Option(
            ("--config",),
            "read options from a YAML/JSON file, e.g. a run's config.yaml (re-runs it; flags given here "
            "override the file)",
            {"type": Path, "metavar": "FILE"},
        ),
    )
}


#: The shared options every domain search CLI adds unchanged and passes to its
#: :class:`~datanas_core.search.SearchConfig` as given (:func:`config_changes`); not given (``None``), the
#: preset's value, the CLI's own default (the vision search's budget-aware lr) or SearchConfig's default (off,
#: fp32, eager, per-epoch schedules, distribution sampling) applies.
SEARCH_CONFIG_OPTIONS = (
    "--progressive-decisions",
    "--decision-criterion",
    "--decision-batches",
    "--decision-samples",
    "--weight-sampling",
    "--schedule-unit",
    "--arch-travel",
    "--a-lr-warmup",
    "--a-lr-schedule",
    "--precision",
    "--compile",
)


def config_changes(args: argparse.Namespace, names: Iterable[str] = SEARCH_CONFIG_OPTIONS) -> dict[str, Any]:
    """The :class:`~datanas_core.search.SearchConfig` fields that the shared options ``names`` set in the parsed
    ``args``: ``{field: value}`` for each one given (not ``None``); lists become tuples."""
    out: dict[str, Any] = {}
    for name in names:
        opt = SHARED_OPTIONS[name]
        value = getattr(args, opt.dest, None)
        if value is not None and opt.config_field is not None:
            out[opt.config_field] = tuple(value) if isinstance(value, list) else value
    return out


def shared_option_names() -> list[str]:
    """The canonical flags of :data:`SHARED_OPTIONS`."""
    return list(SHARED_OPTIONS)


def add_options(
    parser: argparse.ArgumentParser | Any,
    names: Iterable[str],
    *,
    defaults: Mapping[str, Any] | None = None,
    help: Mapping[str, str] | None = None,  # noqa: A002 - mirrors argparse's keyword
    choices: Mapping[str, Sequence[Any] | None] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    dests: Mapping[str, str] | None = None,
    required: Iterable[str] = (),
) -> None:
    """Add shared options to ``parser`` (or an argument group).

    Args:
        names: canonical flags (``"--epochs"``, ...), keys of :data:`SHARED_OPTIONS`.
        defaults: per-CLI defaults (``None`` if not given: the value then comes from the preset or
            :class:`~datanas_core.search.SearchConfig`).
        help: per-CLI help that replaces the shared text (say what differs, e.g. the default's source).
        choices: per-CLI choices (default: a SearchConfig Literal's values, or none).
        aliases: extra (deprecated) flag names per option, e.g. ``{"--epochs": ["--episodes"]}``.
        dests: per-CLI attribute names (default: the flag's name with underscores).
        required: options that must be given.

    Raises:
        ConfigError: an unknown option name (the message lists the shared ones).
    """
    defaults, help, choices, aliases = defaults or {}, help or {}, choices or {}, aliases or {}
    dests = dests or {}
    for name in names:
        if name not in SHARED_OPTIONS:
            raise ConfigError(f"unknown shared option {name!r}; valid: {', '.join(SHARED_OPTIONS)}")
        opt = SHARED_OPTIONS[name]
        kw: dict[str, Any] = {"default": None, **opt.kwargs}
        if opt.config_field is not None:
            kw.setdefault("type", _config_type(opt.config_field))
            literal = _choices(opt.config_field)
            if literal is not None:
                kw.setdefault("choices", literal)
        if name in choices:
            if choices[name] is None:
                kw.pop("choices", None)
            else:
                kw["choices"] = tuple(choices[name])  # type: ignore[arg-type]
        if name in defaults:
            kw["default"] = defaults[name]
        if kw.get("action") is not None:
            kw.pop("type", None)
        if name in set(required):
            kw["required"] = True
        flags = (*opt.flags, *aliases.get(name, ()))
        parser.add_argument(*flags, dest=dests.get(name, opt.dest), help=help.get(name, opt.help), **kw)


def dataclass_help(cls: type) -> dict[str, str]:
    """Field -> help text from the ``Attributes:`` section of a dataclass's docstring (Google style;
    ``a, b: text`` documents two fields; continuation lines are joined)."""
    import inspect

    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    in_section, current = False, []  # type: ignore[var-annotated]
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_section = True
            continue
        if not in_section:
            continue
        if line and not line.startswith(" "):
            break  # the next section
        text = line.strip()
        if line.startswith("    ") and not line.startswith("     ") and ":" in text:
            names, _, desc = text.partition(":")
            current = [n.strip() for n in names.split(",")]
            for n in current:
                out[n] = desc.strip().replace("``", "")
        elif text and current:
            for n in current:
                out[n] = f"{out[n]} {text.replace('``', '')}"
    return out


def _field_default(f: Any) -> Any:
    import dataclasses

    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_dataclass_options(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    fields: Iterable[str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    help: Mapping[str, str] | None = None,  # noqa: A002 - mirrors argparse's keyword
    flags: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    metavars: Mapping[str, Any] | None = None,
    required: Iterable[str] = (),
    actions: Mapping[str, str] | None = None,
) -> None:
    """Add one option per field of the dataclass ``cls``: type, default and help all come from the dataclass.

    Types: ``int``, ``float``, ``str``, :class:`~pathlib.Path`; ``bool`` as ``--x/--no-x``; ``Literal`` as
    choices; ``tuple[T, ...]``/``list[T]`` as one or more values, ``tuple[T, T, T]`` as exactly three;
    ``Optional`` unwrapped. The default is the field's (or ``defaults``), the help its ``Attributes:`` entry
    in the docstring (or ``help``); the attribute name (``dest``) is the field's name, so
    :func:`dataclass_from_args` rebuilds the dataclass from the parsed options.

    Args:
        fields: the fields to add, in this order (default: every field).
        defaults: per-CLI defaults (``None`` with help that names the default's source, e.g. a size preset).
        help: per-CLI help that replaces the docstring's.
        flags: per-field flag (default: ``--field-name``).
        aliases: per-field extra (old) flag names.
        metavars: per-field metavar.
        required: fields that must be given.
        actions: per-field argparse action instead of the type's: ``"append"`` (a repeatable flag of a
            ``tuple[T, ...]`` field, one value each time), ``"store_true"`` (a ``bool`` field without a
            ``--no-`` form) or ``"count"`` (an ``int`` field, e.g. ``-vv``).

    Raises:
        ConfigError: a field without help, of a type that has no flag form, or an unknown action.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    docs = {**dataclass_help(cls), **dict(help or {})}
    defaults, flags, aliases, metavars = defaults or {}, flags or {}, aliases or {}, metavars or {}
    actions = actions or {}
    required = set(required)
    for name in known if fields is None else fields:
        f = known[name]
        if not docs.get(name):
            raise ConfigError(f"{cls.__name__}.{name} has no help (document it under Attributes:)")
        form = _flag_form(cls.__name__, name, hints[name])
        if name in actions:
            form = _action_form(cls.__name__, name, actions[name], form)
        kw: dict[str, Any] = {
            "default": defaults[name] if name in defaults else _field_default(f),
            "help": docs[name].rstrip("."),
            **form,
        }
        if name in metavars:
            kw["metavar"] = metavars[name]
        if name in required:
            kw["required"] = True
        names = (flags.get(name, "--" + name.replace("_", "-")), *aliases.get(name, ()))
        parser.add_argument(*names, dest=name, **kw)


#: The actions :func:`add_dataclass_options` takes instead of a field type's own flag form.
_ACTIONS = ("append", "store_true", "count")


def _action_form(owner: str, name: str, action: str, form: Mapping[str, Any]) -> dict[str, Any]:
    """``add_argument`` keywords of a field added with another ``action`` than its type's: ``append`` keeps the
    item type and choices (one value per flag), ``store_true`` and ``count`` take no value."""
    if action not in _ACTIONS:
        raise ConfigError(f"{owner}.{name}: unknown action {action!r}; valid: {', '.join(_ACTIONS)}")
    if action == "append":
        return {**{k: v for k, v in form.items() if k != "nargs"}, "action": "append"}
    return {"action": action}


def _flag_form(owner: str, name: str, hint: Any) -> dict[str, Any]:
    """``add_argument`` keywords (type, action, choices, nargs) of a field's type."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint
    origin = typing.get_origin(base)
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        values = typing.get_args(base)
        return {"choices": values, "type": type(values[0])}
    if base in (int, float, str, Path):
        return {"type": base}
    if origin in (tuple, list):
        items = typing.get_args(base)
        item = items[0] if items else str
        if item in (int, float, str, Path):
            if origin is tuple and items and items[-1] is not Ellipsis:
                return {"type": item, "nargs": len(items)}
            return {"type": item, "nargs": "+"}
    raise ConfigError(
        f"{owner}.{name}: no flag form for type {hint!r}; valid: int, float, str, Path, bool, Literal, "
        "tuple/list of those"
    )


def dataclass_from_args(
    cls: type[Any], args: argparse.Namespace | Mapping[str, Any], **overrides: Any
) -> Any:
    """An instance of the dataclass ``cls`` from parsed options (the attributes named like its fields;
    fields not among them keep their defaults) and ``overrides``. Lists given to tuple fields become tuples.

    Raises:
        ConfigError: the dataclass refuses a value (its ``__post_init__``).
    """
    import dataclasses
    import typing

    values = dict(args) if isinstance(args, Mapping) else vars(args)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or (f.name not in values and f.name not in overrides):
            continue
        value = overrides[f.name] if f.name in overrides else values[f.name]
        hint = hints[f.name]
        tuple_typed = typing.get_origin(hint) is tuple or any(
            typing.get_origin(a) is tuple for a in typing.get_args(hint)
        )
        if tuple_typed and isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------ values
def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def parse_kv(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as JSON when possible).

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} must look like KEY=VALUE")
        out[key.strip()] = _value(val.strip())
    return out


def parse_reg(text: str, valid: Sequence[str]) -> dict[str, Any] | None:
    """``NAME[:WEIGHT][:KEY=VALUE[,KEY=VALUE...]]`` -> a regulariser spec; ``none`` -> ``None``.

    Examples: ``adc``, ``adc:0.2``, ``expected_cost:0.01:metric=flops,budget=2e6``.

    Raises:
        ConfigError: unknown name or unparsable weight (the message lists the valid names).
    """
    parts = text.split(":", 2)
    name = parts[0].strip()
    if name == "none":
        return None
    if name not in valid:
        raise ConfigError(f"unknown regularizer {name!r} in --reg {text!r}; valid: {', '.join(valid)}, none")
    spec: dict[str, Any] = {"type": name}
    default_weight = _default_weight(name)
    if default_weight is not None:
        spec["weight"] = default_weight
    if len(parts) > 1 and parts[1].strip():
        try:
            spec["weight"] = float(parts[1])
        except ValueError:
            raise ConfigError(f"--reg {text!r}: weight {parts[1]!r} is not a number") from None
    if len(parts) > 2 and parts[2].strip():
        spec.update(parse_kv(parts[2].split(","), f"--reg {text!r} option"))
    return spec


def _default_weight(name: str) -> float | None:
    """The ``weight`` default of a registered regulariser (the searcher otherwise assumes 1.0)."""
    import inspect

    from datanas_core.regularizers import REGULARIZERS

    try:
        param = inspect.signature(REGULARIZERS.get(name)).parameters.get("weight")
    except (TypeError, ValueError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return float(param.default)


def regularizer_specs(items: Sequence[str]) -> list[dict[str, Any]]:
    """``--reg`` values -> the ``regularizers`` of a :class:`~datanas_core.search.SearchConfig` (``none``
    entries dropped; ``[]`` when every entry is ``none``).

    Raises:
        ConfigError: an unknown regulariser or a bad weight (see :func:`parse_reg`).
    """
    from datanas_core.regularizers import REGULARIZERS

    specs = [parse_reg(r, REGULARIZERS.names()) for r in items]
    return [r for r in specs if r is not None]


# ------------------------------------------------------------------------------------------ config files
def cli_config(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON-able values (paths as strings), to store under :data:`CONFIG_KEY` in a
    run's config so that ``--resume RUN_DIR`` and ``--config RUN_DIR/config.yaml`` can rebuild them."""
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key in _NOT_RESTORED or key.startswith("_"):
            continue
        out[key] = os.fspath(value) if isinstance(value, os.PathLike) else value
    return out


def _read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping (a run directory means its config.json)."""
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    f"{str(path)!r} is YAML but PyYAML is not installed; pass the run's config.json instead"
                ) from None
            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
        raise ConfigError(f"cannot parse the config file {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"the config file {str(path)!r} must hold a mapping, not {type(doc).__name__}")
    return doc


def _saved_options(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The CLI options in a config document: its :data:`CONFIG_KEY` group, else its top-level keys and those
    of its ``settings`` group (plain option files and runs written before the group existed)."""
    group = doc.get(CONFIG_KEY)
    if isinstance(group, Mapping):
        return dict(group)
    settings = doc.get("settings")  # the LM CLIs' resolved sizes (runs without the group)
    return {**(dict(settings) if isinstance(settings, Mapping) else {}), **doc}


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """The config.json of a run directory (or of its first ``seed_*`` run), ``None`` when there is none."""
    for candidate in (run_dir / "config.json", *sorted(run_dir.glob("seed_*/config.json"))):
        if candidate.is_file():
            return _read_config_file(candidate)
    return None


def parse_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` where ``--config FILE`` or ``--resume RUN_DIR`` supply the defaults.

    ``--config FILE`` (a run's ``config.yaml``/``config.json`` or a plain mapping of option names to
    values) re-runs with those options into a new ``--out``; ``--resume RUN_DIR`` continues the run with
    its own saved options. Flags given on the command line override the file; on resume the runtime then
    checks them against the settings that may change (learning rates, epochs, checkpoint cadence,
    logging) and lists every other difference. Keys the parser does not know are ignored.

    Raises:
        ConfigError: the file cannot be read or parsed, or holds an option of the wrong kind.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path, default=None)
    pre.add_argument("--resume", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    saved: dict[str, Any] = {}
    if getattr(known, "config", None) is not None and _has_dest(parser, "config"):
        saved.update(_saved_options(_read_config_file(Path(known.config).expanduser())))
    if getattr(known, "resume", None) is not None and _has_dest(parser, "resume"):
        doc = _run_config(Path(known.resume).expanduser())
        if doc is not None:
            saved.update(_saved_options(doc))
    if not saved:
        return _maybe_print_config(parser.parse_args(argv))
    if "seeds" in saved and saved.get("seeds"):
        saved.pop("seed", None)  # each seed's config records its own seed
    later: dict[str, Any] = {}
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    for dest, value in saved.items():
        action = actions.get(dest)
        if action is None or dest in _NOT_RESTORED or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, (argparse._AppendAction, argparse._ExtendAction)):
            later[dest] = value  # filled in after parsing, so that a flag given replaces it
            continue
        if value is not None and action.choices is not None and value not in action.choices:
            raise ConfigError(
                f"option {dest!r} = {value!r} in the config is not one of {', '.join(map(str, action.choices))}"
            )
        if value is not None and isinstance(action, _DecisionWindow):
            from datanas_core.search.config import is_decision_window

            if not is_decision_window(value):
                raise ConfigError(
                    f"option {dest!r} = {value!r} in the config is not two fractions START END of the "
                    "architecture steps with 0 <= START < END <= 1"
                )
        parser.set_defaults(**{dest: value})
        if action.required and value is not None:
            action.required = False  # the saved run supplies it (``--resume RUN_DIR`` alone)
    args = parser.parse_args(argv)
    for dest, value in later.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    return _maybe_print_config(args)


def _maybe_print_config(args: argparse.Namespace) -> argparse.Namespace:
    """``--print-config``: write the options (a ``--config`` file) to stdout and exit with status 0."""
    if not getattr(args, "print_config", False):
        return args
    doc = cli_config(args)
    try:
        import yaml

        text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
    except ImportError:
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    raise SystemExit(0)


def resumed_run_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``config.json`` of the run that ``--resume`` continues (``None`` without ``--resume`` or when the
    run has none). CLIs read it for settings whose default changed after the run was started."""
    resume = getattr(args, "resume", None)
    if resume is None:
        return None
    return _run_config(Path(resume).expanduser())


def resumed_search_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``search_config`` saved in the run that ``--resume`` continues (``None`` without ``--resume`` or
    when the run has none).

    CLIs use it for settings that follow ``--epochs`` in a fresh run but stay fixed when a run is extended:
    a preset scales its warm-up to the run's length, so ``--resume RUN_DIR --epochs N`` keeps the run's
    warm-up epochs (unless ``--arch-warmup-epochs`` is given).
    """
    doc = resumed_run_config(args)
    sc = (doc or {}).get("search_config")
    return dict(sc) if isinstance(sc, Mapping) else None


def _has_dest(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(a.dest == dest for a in parser._actions)


# ------------------------------------------------------------------------------------------ genotypes
def resolve_genotype(
    ref: Any,
    *,
    bundled: Mapping[str, Callable[[], Genotype]] | None = None,
    nb201: bool = True,
    run_dirs_only: bool = False,
) -> Genotype:
    """Turn a genotype reference into a :class:`~datanas_core.genotype.Genotype` (the one resolver of every
    ``--genotype`` flag).

    Args:
        ref: a Genotype; a genotype document (mapping or JSON text); a bundled name (case-insensitive, ``-``
            and ``_`` alike); a genotype JSON file; a search run directory (its ``genotype.json``); or,
            with ``nb201``, a NAS-Bench-201 string (``|nor_conv_3x3~0|+|...|``).
        bundled: the domain's bundled genotypes, name -> loader.
        nb201: accept NB201 strings.
        run_dirs_only: a directory must be a search run directory (``genotype.json`` next to ``config.json``
            or ``summary.json``, see :func:`~datanas_core.runtime.find_run_dir`); otherwise any directory
            holding a ``genotype.json`` will do.

    Raises:
        GenotypeError: none of these (the message lists the bundled names); a malformed document.
    """
    from datanas_core.genotype import Genotype

    if isinstance(ref, Genotype):
        return ref
    if isinstance(ref, Mapping):
        return Genotype.from_dict(ref)
    if not isinstance(ref, (str, os.PathLike)):
        raise GenotypeError(
            f"genotype must be a Genotype, a mapping, a bundled name or a path, got {type(ref).__name__}"
        )
    text = os.fspath(ref).strip()
    bundled = dict(bundled or {})
    if isinstance(ref, str):
        if text.startswith("{"):
            return Genotype.from_json(text)
        if nb201 and text.startswith("|"):
            from datanas_core.space.nb201 import NB201Space

            return NB201Space().from_string(text)
        lowered = {n.lower().replace("-", "_"): n for n in bundled}
        key = text.lower().replace("-", "_")
        if key in lowered:
            return bundled[lowered[key]]()
    path = Path(text).expanduser()
    if path.is_file():
        return Genotype.load(path)
    if path.is_dir():
        from datanas_core.runtime.report import find_run_dir

        run_dir = (
            find_run_dir(path) if run_dirs_only else (path if (path / "genotype.json").is_file() else None)
        )
        if run_dir is not None:
            return Genotype.load(run_dir / "genotype.json")
        raise GenotypeError(
            f"genotype {text!r} is a directory but not a search run directory (one holds genotype.json"
            + (" next to config.json or summary.json" if run_dirs_only else "")
            + "; a search that has not finished has no genotype.json yet)"
        )
    kinds = ["a bundled genotype"] if bundled else []
    kinds += ["an existing JSON file or search run directory", "a JSON document"]
    if nb201:
        kinds.append("an NB201 string")
    names = f"; bundled genotypes: {', '.join(sorted(bundled))}" if bundled else ""
    raise GenotypeError(
        f"genotype {text!r} is neither " + ", ".join(kinds[:-1]) + " nor " + kinds[-1] + names
    )


# ------------------------------------------------------------------------------------------ the ending
def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.6g}"
    return str(value)


def _genotype_text(genotype: Any) -> str | None:
    if genotype is None:
        return None
    if isinstance(genotype, (str, os.PathLike)):
        return os.fspath(genotype)
    cells = getattr(genotype, "cells", None)
    name = (getattr(genotype, "meta", None) or {}).get("name") if hasattr(genotype, "meta") else None
    parts = []
    for ct, cell in (cells or {}).items():
        edges = ", ".join(f"{e.src}->{e.dst} {e.op}" for e in cell.edges)
        parts.append(f"{ct}: {edges}")
    head = f"{getattr(genotype, 'space', '?')}" + (f" ({name})" if name else "")
    return head + ("; " + " | ".join(parts) if parts else "")


def format_summary(block: Mapping[str, Any], genotype: Any = None) -> str:
    """The text of a summary block (see :func:`print_summary`): title, run directory, genotype (``genotype``
    or the block's), metrics, extra lines and warnings."""
    lines = [f"== {block['command']} =="]
    if block.get("run_dir") is not None:
        lines.append(f"run directory: {block['run_dir']}")
    g = _genotype_text(genotype if genotype is not None else block.get("genotype"))
    if g:
        lines.append(f"genotype: {g}")
    if block.get("metrics"):
        lines.append("metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in block["metrics"].items()))
    for k, v in (block.get("extra") or {}).items():
        lines.append(f"{k}: {_fmt(v)}")
    lines.extend(f"warning: {w}" for w in block.get("warnings") or ())
    return "\n".join(lines)


def print_summary(
    title: str,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    genotype: Any = None,
    metrics: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    write: bool = True,
    stream: Any = None,
) -> dict[str, Any]:
    """Print the one summary block (run directory, genotype, headline metrics, warnings) and, with
    ``write`` and a ``run_dir``, merge it into ``run_dir/summary.json`` under ``"cli"`` (what the runtime
    wrote there is kept). Returns the block as a dict."""
    block: dict[str, Any] = {"command": title}
    if run_dir is not None:
        block["run_dir"] = os.fspath(run_dir)
    if genotype is not None:
        block["genotype"] = genotype.to_dict() if hasattr(genotype, "to_dict") else _genotype_text(genotype)
    block["metrics"] = dict(metrics or {})
    block["warnings"] = list(warnings)
    if extra:
        block["extra"] = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in extra.items()}
    out = stream if stream is not None else sys.stdout
    out.write(format_summary(block, genotype) + "\n")
    out.flush()
    if write and run_dir is not None:
        from datanas_core.runtime._jsonutil import to_jsonable
        from datanas_core.runtime.rundir import RunDir

        rd = RunDir(run_dir, tensorboard=False)
        if rd.path.is_dir():
            rd.update_summary(lambda summary: {**summary, "cli": to_jsonable(block)})
    return block


#: Epoch-record keys that make the headline of a search (the first ones present, in this order).
_HEADLINE_PREFIXES = ("val_", "train_", "test_", "consistency", "benchmark")
_HEADLINE_SKIP = ("time", "lr", "step", "epoch", "seconds", "samples", "_se")


def search_metrics(result: Any, *, limit: int = 8) -> dict[str, Any]:
    """The headline numbers of a search result: numeric entries of its last epoch record whose names start
    with ``val_``, ``train_``, ``test_`` or ``consistency`` (timings and learning rates left out)."""
    history = list(getattr(result, "history", None) or [])
    if not history:
        return {}
    last = history[-1]
    out: dict[str, Any] = {}
    for prefix in _HEADLINE_PREFIXES:
        for k, v in last.items():
            if len(out) >= limit:
                return out
            if (
                k.startswith(prefix)
                and k not in out
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and not any(s in k for s in _HEADLINE_SKIP)
            ):
                out[k] = v
    return out


def search_warnings(result: Any, searcher: Any = None) -> list[str]:
    """The warnings of a finished search: the decision verdict (undecided search), collapse, stopped early,
    and the approximations of the run."""
    out: list[str] = []
    history = list(getattr(result, "history", None) or [])
    last = history[-1] if history else {}
    verdict = last.get("decision_verdict")
    if verdict and last.get("decided") is False:  # a decided search's verdict is news, not a warning
        out.append(str(verdict))
    collapse = last.get("collapse")
    if isinstance(collapse, Mapping) and collapse.get("collapsed"):
        out.append(
            f"collapse: {collapse.get('reason', 'the derived cells are dominated by parameter-free ops')}"
        )
    if getattr(result, "stopped_early", False):
        out.append("the search stopped early")
    config = getattr(searcher, "config", None)
    out.extend(f"approximation: {a}" for a in (getattr(config, "approximations", None) or []))
    fallback = getattr(searcher, "compile_fallback", None)
    if fallback:
        out.append(f"compile: the supernet ran eagerly ({fallback})")
    return out


def print_search_summary(
    title: str,
    run_dir: str | os.PathLike[str],
    result: Any,
    searcher: Any = None,
    *,
    metrics: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`print_summary` of a finished search: its genotype, :func:`search_metrics` (plus ``metrics``),
    :func:`search_warnings` (plus ``warnings``) and, when written, the report's path."""
    more = dict(extra or {})
    history = list(getattr(result, "history", None) or [])
    last = history[-1] if history else {}
    if last.get("decided") and last.get("decision_verdict"):
        more.setdefault("decision", str(last["decision_verdict"]))
    report = Path(run_dir) / "report.html"
    if report.is_file():
        more.setdefault("report", str(report))
    return print_summary(
        title,
        run_dir=run_dir,
        genotype=getattr(result, "genotype", None),
        metrics={**search_metrics(result), **dict(metrics or {})},
        warnings=[*search_warnings(result, searcher), *warnings],
        extra=more,
    )
