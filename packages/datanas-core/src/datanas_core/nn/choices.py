"""Choice modules: mark the decisions of an architecture search inside any ``nn.Module``.

:class:`LayerChoice` picks one of several candidate modules, :class:`InputChoice` picks ``n_chosen`` of the
tensors passed to it. Both are :class:`~datanas_core.space.mixed.MixedOp` subclasses: during a search the
weighted sum over the active candidates (exact straight-through gradients, gradient carriers for the sparse
executor) is MixedOp's, the same code the cell spaces run. A model is searched through
:class:`~datanas_core.space.model.ModelSpace`, which discovers every choice module at any depth; modules that
share a ``label`` share one decision.

Outside a search a choice module runs a fixed choice: the first candidate (``LayerChoice``) or the first
``n_chosen`` inputs (``InputChoice``) unless set otherwise (``fixed=`` or
:func:`~datanas_core.space.model.apply_genotype`), so a model with choices is still a plain working model.
:func:`~datanas_core.space.model.fix` replaces every choice by what a genotype chose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, SearchSpaceError
from datanas_core.space.mixed import MixedOp

__all__ = ["ChoiceModule", "ChosenInputs", "InputChoice", "LayerChoice"]

#: Characters a label may not contain (architecture parameter names and file names are built from labels).
_BAD_LABEL_CHARS = (".", "/", "\\")
_REDUCTIONS = ("sum", "mean")


def check_label(label: Any) -> str | None:
    """``label`` as given, after checking it is ``None`` or a usable name.

    Raises:
        ConfigError: not a non-empty string, or contains ``.``, ``/`` or ``\\``.
    """
    if label is None:
        return None
    if not isinstance(label, str) or not label:
        raise ConfigError(f"a choice label must be a non-empty string, got {label!r}")
    bad = [c for c in _BAD_LABEL_CHARS if c in label]
    if bad:
        raise ConfigError(f"choice label {label!r} contains {bad[0]!r}; labels may not contain . / or \\")
    return label


class ChoiceModule(MixedOp):
    """What :class:`LayerChoice` and :class:`InputChoice` share: a label, a fixed choice and the slot the
    search context fills for one forward pass.

    Attributes:
        label: the decision's name (``None`` until a :class:`~datanas_core.space.model.ModelSpace` names it
            after its module path).
        fixed: indices of the candidates run outside a search.
    """

    kind: str = ""

    def __init__(self, candidates: Sequence[tuple[str, nn.Module]], *, label: str | None) -> None:
        super().__init__(candidates, C_out=0)
        self.label = check_label(label)
        self.fixed: tuple[int, ...] = (0,)
        #: ``(weights_row, active, proxy, zero, arch_grad)`` while a supernet forward pass runs (see
        #: :class:`~datanas_core.space.mixed.PreparedCellSample`); ``None`` otherwise.
        self._search: tuple[Sequence[Tensor], Sequence[int], Tensor | None, Any, bool] | None = None
        self._shapes_checked = False

    @property
    def n_chosen(self) -> int:
        """How many candidates a derived architecture keeps at most."""
        return 1

    @property
    def searching(self) -> bool:
        """Whether the current forward pass is part of a search (weights come from a sample)."""
        return self._search is not None

    def _name(self) -> str:
        return self.label if self.label is not None else "<unlabelled>"

    def set_fixed(self, choice: int | str | Iterable[int | str]) -> None:
        """Run ``choice`` (an index or a candidate name, or several for an InputChoice) outside a search.

        Raises:
            ConfigError: unknown candidate, or more than ``n_chosen`` candidates.
        """
        items = [choice] if isinstance(choice, (int, str)) else list(choice)
        idx = []
        for c in items:
            if isinstance(c, str):
                if c not in self.op_names:
                    raise ConfigError(
                        f"choice {self._name()!r}: unknown candidate {c!r}; candidates: {', '.join(self.op_names)}"
                    )
                idx.append(self.op_names.index(c))
            elif isinstance(c, int) and not isinstance(c, bool) and 0 <= c < self.num_ops:
                idx.append(c)
            else:
                raise ConfigError(
                    f"choice {self._name()!r}: candidate index {c!r} out of range 0..{self.num_ops - 1}"
                )
        if not idx or len(set(idx)) != len(idx) or len(idx) > self.n_chosen:
            raise ConfigError(
                f"choice {self._name()!r}: need 1..{self.n_chosen} distinct candidates, got {items!r}"
            )
        self.fixed = tuple(sorted(idx))

    def _mixed(self, x: Any) -> Tensor:
        """MixedOp's weighted sum over the active candidates of the current sample."""
        assert self._search is not None
        weights, active, proxy, zero, arch_grad = self._search
        if not active and proxy is None:
            raise SearchSpaceError(f"choice {self._name()!r}: the sample switches every candidate off")
        if not active:  # only gradient carriers: a zero output of the right shape
            with torch.no_grad():
                zero = torch.zeros_like(self._run(0, x))
            return zero + proxy
        # the fast exact executor: zero-weight candidates run forward-only (when the engine says which)
        # (InputChoice's candidates are free picks from a list: nothing to save, the plain path)
        fast = {"zero": zero, "arch_grad": arch_grad} if zero and isinstance(x, Tensor) else {}
        return MixedOp.forward(self, x, weights, active, proxy is not None, proxy=proxy, **fast)

    def _run(self, k: int, x: Any) -> Tensor:
        return self.ops[k](x)

    def _check_shapes(self, x: Any) -> None:
        """Run every candidate once (eval mode, no gradients) and compare the output shapes."""
        shapes = []
        modes = [(m, m.training) for m in self.modules()]
        try:
            self.eval()
            with torch.no_grad():
                for k in range(self.num_ops):
                    y = self._run(k, x)
                    if not isinstance(y, Tensor):
                        raise SearchSpaceError(
                            f"choice {self._name()!r}: candidate {self.op_names[k]!r} returned "
                            f"{type(y).__name__}; candidates must return one tensor"
                        )
                    shapes.append(tuple(y.shape))
        finally:
            for m, t in modes:
                m.training = t
        if len(set(shapes)) > 1:
            desc = ", ".join(f"{n}: {list(s)}" for n, s in zip(self.op_names, shapes, strict=True))
            raise SearchSpaceError(
                f"choice {self._name()!r}: candidates give outputs of different shapes ({desc}); every "
                "candidate must produce the same shape"
            )
        self._shapes_checked = True

    def extra_repr(self) -> str:
        return f"label={self.label!r}, candidates={list(self.op_names)}, fixed={list(self.fixed)}"


def _named_candidates(
    candidates: Sequence[nn.Module] | Mapping[str, nn.Module],
) -> list[tuple[str, nn.Module]]:
    if isinstance(candidates, nn.ModuleDict) or isinstance(candidates, Mapping):
        items = [(k, v) for k, v in candidates.items()]
    elif isinstance(candidates, (nn.Module, str)) and not isinstance(
        candidates, (nn.ModuleList, nn.Sequential)
    ):
        raise ConfigError(
            f"LayerChoice needs a list or dict of candidate modules, got {type(candidates).__name__}"
        )
    else:
        items = [(str(i), m) for i, m in enumerate(candidates)]
    if not items:
        raise ConfigError("LayerChoice needs at least one candidate")
    for name, mod in items:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"candidate names must be non-empty strings, got {name!r}")
        if name == "none":
            raise ConfigError("'none' is reserved (the zero op of cell spaces); name the candidate otherwise")
        if not isinstance(mod, nn.Module):
            raise ConfigError(f"candidate {name!r} is a {type(mod).__name__}, not an nn.Module")
    return items


class LayerChoice(ChoiceModule):
    """Choose one of several candidate modules; all candidates take the same input and give the same shape.

    During a search the output is ``sum_k w_k * candidate_k(x)`` over the candidates the estimator switches
    on (EGS with M > 1 may switch on several), exactly as a mixed edge of a cell space. Outside a search it
    runs the fixed candidate.

    Args:
        candidates: a list of modules (named ``"0"``, ``"1"``, ...) or a dict ``name -> module``.
        label: the decision's name; choices with the same label share one decision (default: the module
            path in the model, with ``.`` replaced by ``_``).
        fixed: candidate (index or name) run outside a search (default: the first).

    Raises:
        ConfigError: no candidates, a candidate that is not a module, a bad label.
        SearchSpaceError: at the first search forward pass, candidates whose outputs differ in shape (the
            message names the label and every shape).

    Example:
        >>> import torch
        >>> block = LayerChoice([nn.Conv2d(4, 4, 3, padding=1), nn.Identity()], label="block")
        >>> tuple(block(torch.randn(1, 4, 8, 8)).shape)
        (1, 4, 8, 8)
    """

    kind = "layer"

    def __init__(
        self,
        candidates: Sequence[nn.Module] | Mapping[str, nn.Module],
        *,
        label: str | None = None,
        fixed: int | str = 0,
    ) -> None:
        super().__init__(_named_candidates(candidates), label=label)
        self.set_fixed(fixed)

    @classmethod
    def from_values(
        cls,
        values: Sequence[Any],
        build: Callable[[Any], nn.Module],
        *,
        label: str | None = None,
        fixed: int | str = 0,
    ) -> LayerChoice:
        """A value choice: one candidate ``build(v)`` per value, named ``str(v)``.

        Example:
            >>> k = LayerChoice.from_values([3, 5], lambda k: nn.Conv2d(4, 4, k, padding=k // 2), label="k")
            >>> k.op_names
            ('3', '5')
        """
        values = list(values)
        names = [str(v) for v in values]
        if len(set(names)) != len(names):
            raise ConfigError(f"value choice {label!r}: values must have distinct str() forms, got {names}")
        return cls({n: build(v) for n, v in zip(names, values, strict=True)}, label=label, fixed=fixed)

    def forward(self, x: Tensor, *rest: Any) -> Tensor:  # type: ignore[override]
        if rest:
            raise SearchSpaceError(
                f"LayerChoice {self._name()!r} takes one input tensor, got {1 + len(rest)} arguments; "
                "wrap multi-input candidates in a module that takes a tuple"
            )
        if self._search is None:
            return self.ops[self.fixed[0]](x)
        if not self._shapes_checked:
            self._check_shapes(x)
        return self._mixed(x)


class _Pick(nn.Module):
    """Returns input ``index`` of a sequence of tensors (the "candidate" of an InputChoice)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return inputs[self.index]

    def extra_repr(self) -> str:
        return str(self.index)


class InputChoice(ChoiceModule):
    """Choose ``n_chosen`` of the ``n_candidates`` tensors passed in a list, and reduce them.

    During a search the output is ``sum_k w_k * inputs[k]`` (MixedOp's weighted sum with one candidate per
    input); ``reduction="mean"`` divides it by the (detached) sum of the weights, so a derived choice of
    several inputs is their mean. A derived genotype keeps between 1 and ``n_chosen`` inputs (the argmax
    rule: the top ``n_chosen``; DATA's rule: the most probable exact set under ``n_chosen`` draws).

    Args:
        n_candidates: number of tensors passed to ``forward``.
        n_chosen: most inputs a derived architecture keeps.
        label: the decision's name (see :class:`LayerChoice`).
        reduction: ``"sum"`` or ``"mean"`` of the chosen inputs.
        fixed: inputs run outside a search (default: the first ``n_chosen``).

    Example:
        >>> import torch
        >>> skip = InputChoice(3, 1, label="skip")
        >>> a, b, c = (torch.full((2,), float(v)) for v in range(3))
        >>> skip([a, b, c]).tolist()
        [0.0, 0.0]
    """

    kind = "input"

    def __init__(
        self,
        n_candidates: int,
        n_chosen: int = 1,
        *,
        label: str | None = None,
        reduction: str = "sum",
        fixed: Iterable[int] | int | None = None,
    ) -> None:
        for name, v in (("n_candidates", n_candidates), ("n_chosen", n_chosen)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"InputChoice {name} must be an int >= 1, got {v!r}")
        if n_chosen > n_candidates:
            raise ConfigError(f"InputChoice n_chosen={n_chosen} exceeds n_candidates={n_candidates}")
        if reduction not in _REDUCTIONS:
            raise ConfigError(
                f"InputChoice reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}"
            )
        super().__init__([(str(i), _Pick(i)) for i in range(n_candidates)], label=label)
        self._n_chosen = n_chosen
        self.reduction = reduction
        self.set_fixed(range(n_chosen) if fixed is None else fixed)

    @property
    def n_candidates(self) -> int:
        return self.num_ops

    @property
    def n_chosen(self) -> int:
        return self._n_chosen

    def _run(self, k: int, x: Any) -> Tensor:
        return x[k]

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:  # type: ignore[override]
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_ops:
            got = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise SearchSpaceError(
                f"InputChoice {self._name()!r} expects a list of {self.num_ops} tensors, got {got}"
            )
        if self._search is None:
            return _reduce([inputs[k] for k in self.fixed], self.reduction)
        if not self._shapes_checked:
            self._check_shapes(inputs)
        out = self._mixed(tuple(inputs))
        if self.reduction == "mean":
            weights, active = self._search[0], self._search[1]
            total = weights[active[0]] if active else None
            for k in active[1:]:
                total = total + weights[k]
            if total is not None:
                out = out / total.detach().clamp_min(1e-12)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_chosen={self.n_chosen}, reduction={self.reduction!r}"


def _reduce(xs: list[Tensor], reduction: str) -> Tensor:
    out = xs[0]
    for t in xs[1:]:
        out = out + t
    if reduction == "mean" and len(xs) > 1:
        out = out / len(xs)
    return out


class ChosenInputs(nn.Module):
    """What :func:`~datanas_core.space.model.fix` puts in place of an :class:`InputChoice`: the reduction of
    the chosen inputs (a plain module, scriptable and exportable).

    Args:
        indices: the chosen inputs.
        reduction: ``"sum"`` or ``"mean"``.
        n_candidates: number of inputs ``forward`` receives (checked).
    """

    def __init__(
        self, indices: Sequence[int], reduction: str = "sum", n_candidates: int | None = None
    ) -> None:
        super().__init__()
        if not indices:
            raise ConfigError("ChosenInputs needs at least one index")
        self.indices: list[int] = [int(i) for i in indices]
        self.mean: bool = reduction == "mean"
        self.n_candidates: int = -1 if n_candidates is None else int(n_candidates)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        if self.n_candidates >= 0 and len(inputs) != self.n_candidates:
            raise ValueError(f"expected {self.n_candidates} inputs, got {len(inputs)}")
        out = inputs[self.indices[0]]
        for i in self.indices[1:]:
            out = out + inputs[i]
        if self.mean and len(self.indices) > 1:
            out = out / len(self.indices)
        return out

    def extra_repr(self) -> str:
        return f"indices={self.indices}, reduction={'mean' if self.mean else 'sum'!r}"
