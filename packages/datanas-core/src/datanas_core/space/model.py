"""A search space discovered in a user's model: every :class:`~datanas_core.nn.LayerChoice` and
:class:`~datanas_core.nn.InputChoice` becomes one decision of the engine.

Each label is one "cell type" of the engine with a single edge ``0 -> 1`` whose ops are the candidates
(:class:`~datanas_core.space.base.CellSpec` with ``max_in_degree = n_chosen``). So the architecture
distribution holds one ``[1, K]`` logit row per label (edge key ``"<label>/0->1"``), and every estimator,
executor, regulariser, derivation rule, monitor and the runtime work unchanged. Genotypes name, per label,
the chosen candidates: ``{"cells": {"block": {"edges": [[0, 1, "conv5"]], "concat": [1]}}, "space": "model"}``
(:func:`choices_of` gives ``{"block": "conv5"}``).

* :class:`ModelSpace` (the space), :class:`ModelSupernet` (``forward(x, arch)``: the model with the
  sample's weights on its choices);
* :class:`ChoiceRule` (registered as ``"choice"``): argmax per choice, the top ``n_chosen`` inputs of an
  InputChoice, or (``multi="data"``) DATA's most probable exact set under ``n_chosen`` draws;
* :func:`fix` (a plain model with the chosen candidates only), :func:`apply_genotype` (set the fixed choices
  in place), :func:`choices_of` / :func:`genotype_from_choices` (genotype <-> ``{label: choice}``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from datanas_core.derive import DERIVATION_RULES, DerivationRule, EGSMultinomial, TopKPairs
from datanas_core.errors import ConfigError, IncompatibleGenotypeError, SearchSpaceError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.nn.choices import ChoiceModule, ChosenInputs, InputChoice, LayerChoice
from datanas_core.sample import ArchSample
from datanas_core.space.base import CellSpec, SearchSpace
from datanas_core.space.mixed import PreparedCellSample

__all__ = [
    "ChoiceInfo",
    "ChoiceRule",
    "ModelSpace",
    "ModelSupernet",
    "apply_genotype",
    "choices_of",
    "discover_choices",
    "fix",
    "genotype_from_choices",
    "unfixed_choices",
]

logger = logging.getLogger(__name__)

#: ``Genotype.space`` of model-space genotypes.
SPACE_NAME = "model"


@dataclass(frozen=True)
class ChoiceInfo:
    """One decision of a model: its label, kind, candidate names and where it occurs.

    Attributes:
        label: the decision's name (the module's label, or its path with ``.`` replaced by ``_``).
        kind: ``"layer"`` or ``"input"``.
        candidates: candidate names in column order.
        n_chosen: most candidates a derived architecture keeps.
        paths: module paths of every choice module with this label.
    """

    label: str
    kind: str
    candidates: tuple[str, ...]
    n_chosen: int
    paths: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "candidates": list(self.candidates), "n_chosen": self.n_chosen}


def _auto_label(path: str) -> str:
    return path.replace(".", "_") if path else "root"


def _members(model: nn.Module) -> list[tuple[str, str, ChoiceModule]]:
    """``(label, path, module)`` of every choice module reachable from ``model`` (pre-order)."""
    out = []
    for path, m in model.named_modules():
        if isinstance(m, ChoiceModule):
            out.append((m.label if m.label is not None else _auto_label(path), path, m))
    return out


def discover_choices(model: nn.Module) -> dict[str, ChoiceInfo]:
    """The decisions of ``model``, keyed by label, in the order they are first met.

    Raises:
        SearchSpaceError: modules sharing a label disagree on their kind, candidates or ``n_chosen``.
    """
    found: dict[str, ChoiceInfo] = {}
    for label, path, m in _members(model):
        info = ChoiceInfo(label, m.kind, tuple(m.op_names), m.n_chosen, (path,))
        prev = found.get(label)
        if prev is None:
            found[label] = info
            continue
        where = f"label {label!r} is used at {prev.paths[0]!r} and at {path!r}"
        if prev.kind != info.kind:
            raise SearchSpaceError(f"{where} by a {prev.kind} choice and a {info.kind} choice")
        if len(prev.candidates) != len(info.candidates):
            raise SearchSpaceError(
                f"{where} with {len(prev.candidates)} and {len(info.candidates)} candidates; choices that "
                "share a label must have the same candidates"
            )
        if prev.candidates != info.candidates or prev.n_chosen != info.n_chosen:
            raise SearchSpaceError(
                f"{where} with different candidates ({list(prev.candidates)} vs {list(info.candidates)}) or "
                f"n_chosen ({prev.n_chosen} vs {info.n_chosen})"
            )
        found[label] = ChoiceInfo(label, prev.kind, prev.candidates, prev.n_chosen, (*prev.paths, path))
    return found


def unfixed_choices(model: nn.Module) -> list[str]:
    """Labels of the choice modules still inside ``model`` (empty for a plain, fixed model)."""
    return list(dict.fromkeys(label for label, _, _ in _members(model)))


class ModelSupernet(nn.Module):
    """A model with choices as an engine supernet: ``forward(x, arch)`` runs ``model(x)`` with the sample's
    weights on every choice; ``forward(x)`` (no sample) runs the fixed choices.

    Args:
        model: the model (owned: searching trains its weights).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.choices = discover_choices(model)
        if not self.choices:
            raise SearchSpaceError(f"{type(model).__name__} has no LayerChoice or InputChoice to search")

    def forward(self, x: Any, arch: ArchSample | None = None, *args: Any, **kwargs: Any) -> Any:
        if arch is None:
            return self.model(x, *args, **kwargs)
        prepared = {}
        for label, info in self.choices.items():
            if label not in arch:
                raise SearchSpaceError(f"the architecture sample has no entry for choice {label!r}")
            prepared[label] = PreparedCellSample.from_sample(
                arch[label], info.candidates, 1, where=f"choice {label!r}"
            )
        members = _members(self.model)
        try:
            for label, _, m in members:
                p = prepared[label]
                zero_of = getattr(p, "zero_of", None)  # the fast exact executor's zero-weight columns
                zero = zero_of(0) if zero_of is not None else frozenset()
                m._search = (p.rows[0], p.run[0], p.proxy[0], zero, bool(getattr(p, "arch_grad", True)))
            return self.model(x, *args, **kwargs)
        finally:
            for _, _, m in members:
                m._search = None


class ModelSpace(SearchSpace):
    """The search space of a model with :class:`~datanas_core.nn.LayerChoice` /
    :class:`~datanas_core.nn.InputChoice` modules (at any depth).

    Args:
        model: the model (kept as the template: ``build_supernet`` and ``build_derived`` deep-copy it), or a
            zero-argument factory (called under the caller's seed for every build).
        example_input: one input (batch of 1) for the FLOPs cost table (``edge_costs("flops")``).

    Raises:
        SearchSpaceError: no choices; modules sharing a label disagree.

    Example:
        >>> from datanas_core.nn import LayerChoice
        >>> net = nn.Sequential(nn.Linear(4, 4), LayerChoice([nn.Linear(4, 4), nn.Identity()], label="b"))
        >>> space = ModelSpace(net)
        >>> list(space.cells()), space.cells()["b"].ops
        (['b'], ('0', '1'))
    """

    name = SPACE_NAME
    default_rule = "choice"

    def __init__(self, model: nn.Module | Callable[[], nn.Module], *, example_input: Any = None) -> None:
        if isinstance(model, nn.Module):
            self._factory: Callable[[], nn.Module] | None = None
            self.model = model
        elif callable(model):
            self._factory = model
            self.model = model()
            if not isinstance(self.model, nn.Module):
                raise ConfigError(f"the model factory returned {type(self.model).__name__}, not an nn.Module")
        else:
            raise ConfigError(f"ModelSpace needs an nn.Module or a factory, got {type(model).__name__}")
        self.choices = discover_choices(self.model)
        if not self.choices:
            raise SearchSpaceError(
                f"{type(self.model).__name__} has no LayerChoice or InputChoice to search "
                "(import them from datanas_core.nn)"
            )
        self._cells = {
            label: CellSpec(label, 1, 1, info.candidates, ((0, 1),), (1,), False, info.n_chosen)
            for label, info in self.choices.items()
        }
        self.example_input = example_input
        self._cost_cache: dict[str, dict[str, Tensor]] = {}

    # ------------------------------------------------------------------ SearchSpace
    def cells(self) -> Mapping[str, CellSpec]:
        return self._cells

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "choices": {label: info.to_dict() for label, info in self.choices.items()},
        }

    def _fresh(self) -> nn.Module:
        return self._factory() if self._factory is not None else copy.deepcopy(self.model)

    def build_supernet(self, **hparams: Any) -> nn.Module:
        """A :class:`ModelSupernet` around a copy of the model (a fresh build for a factory)."""
        if hparams:
            raise ConfigError(f"ModelSpace.build_supernet takes no options, got {sorted(hparams)}")
        return ModelSupernet(self._fresh())

    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        """A plain copy of the model with the genotype's candidates only (see :func:`fix`)."""
        if hparams:
            raise ConfigError(f"ModelSpace.build_derived takes no options, got {sorted(hparams)}")
        return fix(self._fresh(), genotype, inplace=True)

    def validate(self, genotype: Genotype) -> None:
        """Check that ``genotype`` was made for this model.

        Raises:
            IncompatibleGenotypeError: another space, missing or extra labels (named), unknown candidates,
                more than ``n_chosen`` candidates kept.
        """
        if genotype.space != self.name:
            raise IncompatibleGenotypeError(
                f"genotype is for space {genotype.space!r}, not for a model (space {self.name!r})"
            )
        missing = [label for label in self.choices if label not in genotype.cells]
        extra = sorted(set(genotype.cells) - set(self.choices))
        if missing or extra:
            raise IncompatibleGenotypeError(
                f"genotype does not fit {type(self.model).__name__}: missing labels {missing}, extra labels "
                f"{extra} (the model's labels: {list(self.choices)})"
            )
        for label, info in self.choices.items():
            cg = genotype.cells[label]
            for e in cg.edges:
                if (e.src, e.dst) != (0, 1):
                    raise IncompatibleGenotypeError(
                        f"choice {label!r}: entry {e.to_list()} is not [0, 1, name]"
                    )
                if e.op not in info.candidates:
                    raise IncompatibleGenotypeError(
                        f"choice {label!r}: unknown candidate {e.op!r}; candidates: {', '.join(info.candidates)}"
                    )
            if not 1 <= len(cg.edges) <= info.n_chosen:
                raise IncompatibleGenotypeError(
                    f"choice {label!r}: {len(cg.edges)} candidates chosen, expected 1..{info.n_chosen}"
                )
        super().validate(genotype)

    def edge_costs(self, metric: str = "params") -> dict[str, Tensor]:
        """``{label: [1, K]}`` cost of each candidate, summed over the modules sharing the label.

        ``"params"``: parameter count of the candidate. ``"flops"``: FLOPs of one forward pass of the
        candidate on its input for ``example_input``, counted by ``torch.utils.flop_counter`` (a multiply-add
        counts 2). Inputs of an InputChoice cost 0. Nested choices: an outer candidate's cost includes the
        inner choices at their fixed candidates (params: all inner candidates).

        Raises:
            ConfigError: unknown metric; ``"flops"`` without ``example_input``.
        """
        if metric not in ("params", "flops"):
            return super().edge_costs(metric)
        if metric not in self._cost_cache:
            table = self._params_table() if metric == "params" else self._flops_table()
            self._cost_cache[metric] = {
                label: torch.tensor([row], dtype=torch.float64) for label, row in table.items()
            }
        return {k: v.clone() for k, v in self._cost_cache[metric].items()}

    def _params_table(self) -> dict[str, list[float]]:
        table = {label: [0.0] * len(info.candidates) for label, info in self.choices.items()}
        for label, _, m in _members(self.model):
            if isinstance(m, LayerChoice):
                for k in range(m.num_ops):
                    table[label][k] += float(sum(p.numel() for p in m.ops[k].parameters()))
        return table

    def _flops_table(self) -> dict[str, list[float]]:
        from torch.utils.flop_counter import FlopCounterMode

        if self.example_input is None:
            raise ConfigError(
                "the FLOPs cost table needs an example input: ModelSpace(model, example_input=x[:1]) "
                "(datanas_core.search passes the first training input)"
            )
        model = self.model
        members = _members(model)
        captured: dict[int, Any] = {}

        def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
            captured.setdefault(id(mod), args[0])

        handles = [m.register_forward_pre_hook(hook) for _, _, m in members]
        modes = [(m, m.training) for m in model.modules()]
        table = {label: [0.0] * len(info.candidates) for label, info in self.choices.items()}
        try:
            model.eval()
            with torch.no_grad():
                model(self.example_input)
                for label, _, m in members:
                    if not isinstance(m, LayerChoice) or id(m) not in captured:
                        continue
                    for k in range(m.num_ops):
                        counter = FlopCounterMode(display=False)
                        with counter:
                            m.ops[k](captured[id(m)])
                        table[label][k] += float(counter.get_total_flops())
        finally:
            for h in handles:
                h.remove()
            for m, t in modes:
                m.training = t
        return table


@DERIVATION_RULES.register("choice")
class ChoiceRule(DerivationRule):
    """Derivation for model spaces: per choice the argmax candidate, for an InputChoice the top
    ``n_chosen`` inputs (:class:`~datanas_core.derive.TopKPairs` with ``k = n_chosen``); with
    ``multi="data"``, an InputChoice keeps DATA's most probable exact set of at most ``n_chosen`` inputs
    (:class:`~datanas_core.derive.EGSMultinomial` with ``M = n_chosen``, which is the argmax for
    ``n_chosen = 1``).

    Works on any cell spec: ``k`` is the spec's ``max_in_degree`` (1 when unset).

    Args:
        multi: ``"topk"`` or ``"data"``.
        exclude: ops never kept.
    """

    name: ClassVar[str] = "choice"

    def __init__(self, multi: str = "topk", exclude: Sequence[str] = ("none",)) -> None:
        super().__init__(exclude)
        if multi not in ("topk", "data"):
            raise ConfigError(f"ChoiceRule multi must be 'topk' or 'data', got {multi!r}")
        self.multi = multi

    def derive_cell(self, p: list[list[float]], spec: CellSpec) -> list[EdgeChoice]:
        k = spec.max_in_degree or 1
        if self.multi == "data" and k > 1:
            return EGSMultinomial(samples=k, min_inputs=1, exclude=self.exclude).derive_cell(p, spec)
        return TopKPairs(k=k, exclude=self.exclude).derive_cell(p, spec)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "multi": self.multi}


# ---------------------------------------------------------------------------------------- genotypes
def choices_of(genotype: Genotype) -> dict[str, str | list[str]]:
    """``{label: candidate}`` of a model-space genotype (a list where several candidates were kept)."""
    out: dict[str, str | list[str]] = {}
    for label, cg in genotype.cells.items():
        names = [e.op for e in cg.edges]
        out[label] = names[0] if len(names) == 1 else names
    return out


def genotype_from_choices(
    choices: Mapping[str, str | int | Sequence[str | int]],
    model: nn.Module | ModelSpace | None = None,
) -> Genotype:
    """A model-space genotype from ``{label: candidate name (or index), ...}``.

    With ``model`` (or its space) indices are turned into names and the genotype is validated.

    Raises:
        IncompatibleGenotypeError: the choices do not fit ``model``.
    """
    space = model if isinstance(model, ModelSpace) else (ModelSpace(model) if model is not None else None)
    cells = {}
    for label, choice in choices.items():
        items = [choice] if isinstance(choice, (str, int)) else list(choice)
        names = []
        for c in items:
            if isinstance(c, int) and not isinstance(c, bool):
                if space is not None and label in space.choices:
                    cands = space.choices[label].candidates
                    if not 0 <= c < len(cands):
                        raise IncompatibleGenotypeError(
                            f"choice {label!r}: index {c} out of range 0..{len(cands) - 1}"
                        )
                    names.append(cands[c])
                else:
                    names.append(str(c))
            else:
                names.append(str(c))
        cells[str(label)] = CellGenotype(tuple(EdgeChoice(0, 1, n) for n in names), (1,))
    genotype = Genotype(SPACE_NAME, cells)
    if space is not None:
        space.validate(genotype)
    return genotype


def _chosen_indices(genotype: Genotype, label: str, m: ChoiceModule) -> list[int]:
    return sorted(m.op_names.index(e.op) for e in genotype.cells[label].edges)


def apply_genotype(model: nn.Module, genotype: Genotype) -> nn.Module:
    """Set every choice module's fixed choice to the genotype's, in place (candidates are kept).

    Raises:
        IncompatibleGenotypeError: the genotype is for another model (missing/extra labels named).
    """
    ModelSpace(model).validate(genotype)
    for label, _, m in _members(model):
        m.set_fixed(_chosen_indices(genotype, label, m))
    return model


def fix(model: nn.Module, genotype: Genotype, *, inplace: bool = False) -> nn.Module:
    """A plain model: every LayerChoice replaced by its chosen candidate, every InputChoice by
    :class:`~datanas_core.nn.ChosenInputs` (weights as in ``model``; a copy unless ``inplace``).

    Raises:
        IncompatibleGenotypeError: the genotype is for another model (missing/extra labels named).
    """
    space = ModelSpace(model)
    space.validate(genotype)
    out = model if inplace else copy.deepcopy(model)
    labels = {id(m): label for label, _, m in _members(out)}

    def chosen(m: ChoiceModule) -> nn.Module:
        idx = _chosen_indices(genotype, labels[id(m)], m)
        if isinstance(m, InputChoice):
            return ChosenInputs(idx, m.reduction, m.n_candidates)
        return m.ops[idx[0]]

    def walk(module: nn.Module) -> None:
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            while isinstance(child, ChoiceModule):
                child = chosen(child)
            module._modules[name] = child
            walk(child)

    root = out
    while isinstance(root, ChoiceModule):
        root = chosen(root)
    walk(root)
    left = unfixed_choices(root)
    if left:  # pragma: no cover - walk replaces every registered child
        raise SearchSpaceError(f"choices {left} could not be replaced")
    return root


def iter_choice_modules(model: nn.Module) -> Iterator[tuple[str, ChoiceModule]]:
    """``(label, module)`` of every choice module of ``model``."""
    for label, _, m in _members(model):
        yield label, m
