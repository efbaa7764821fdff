"""A conformance check for search spaces: what every space plugged into datanas must do.

Authors of a new space (a ``datanas.spaces`` entry point or a :class:`~datanas_core.space.base.SearchSpace`
subclass in their own project) call :func:`check_search_space` from one of their tests::

    from datanas_core.testing import check_search_space

    def test_my_space_conforms():
        report = check_search_space(
            MySpace(),
            supernet_kwargs={"C": 4, "num_classes": 3},
            make_input=lambda g: torch.randn(2, 3, 16, 16, generator=g),
        )
        assert report.checks  # names of the checks that ran

It raises :class:`ContractError` naming the first violated rule. The checks need the core conventions:
``space.build_supernet(**kw)`` returns a module called as ``net(x, arch)`` and ``space.build_derived(genotype,
**kw)`` one called as ``net(x)``; both return a tensor (or a tuple/list whose first item is one). Nothing here
imports pytest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import DataNASError
from datanas_core.genotype import Genotype
from datanas_core.space.base import SearchSpace

__all__ = ["ContractError", "SpaceReport", "check_search_space"]


class ContractError(AssertionError):
    """A search space breaks one of the rules checked by :func:`check_search_space`."""


@dataclass
class SpaceReport:
    """What :func:`check_search_space` ran and measured."""

    space: str
    checks: list[str] = field(default_factory=list)
    supernet_params: int = 0
    derived_params: int = 0
    genotype: Genotype | None = None


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ContractError(f"a network returned {type(out).__name__}; expected a tensor or a tuple of tensors")


def _shapes_agree(a: tuple[int, ...], b: tuple[int, ...], exact: bool) -> bool:
    return a == b if exact else (len(a) == len(b) and a[:1] == b[:1])


def _fail(name: str, msg: str) -> ContractError:
    return ContractError(f"[{name}] {msg}")


def check_search_space(
    space: SearchSpace,
    supernet_kwargs: Mapping[str, Any],
    make_input: Callable[[torch.Generator], Any],
    *,
    derived_kwargs: Mapping[str, Any] | None = None,
    estimators: Sequence[str] = ("softmax", "egs", "gdas"),
    genotypes: Sequence[Genotype] = (),
    same_output_shape: bool = True,
    seed: int = 0,
) -> SpaceReport:
    """Check that ``space`` follows the contracts the engine relies on.

    Checks, in order (each name is added to the report, and a failure names it):

    1. ``cell_specs``: at least one cell type; every spec's edges, ops and edge keys are consistent.
    2. ``supernet_forward`` (per estimator): a sampled architecture runs through the supernet, the output is
       finite, and a backward pass reaches the architecture logits (some non-zero gradient).
    3. ``seeded_build``: two supernets built under the same seed have identical weights.
    4. ``derive``: the default derivation rule gives a genotype the space accepts (``validate``), which
       survives a JSON round trip.
    5. ``derived_forward``: the derived network (for the derived genotype and every one in ``genotypes``)
       runs on the same input with the supernet's batch size and output shape, and has no more parameters
       than the supernet.
    6. ``fixed_code``: the supernet runs with the genotype's fixed 0/1 code (the derived child inside the
       supernet, as the runtime's consistency monitor uses it) and gives the derived network's output shape.

    Args:
        space: the space under test.
        supernet_kwargs: keyword arguments of ``space.build_supernet`` (keep them tiny: C=4).
        make_input: builds one input batch from a seeded generator.
        derived_kwargs: keyword arguments of ``space.build_derived`` (default: ``supernet_kwargs``).
        estimators: estimator names to run the supernet with.
        genotypes: extra genotypes to build (e.g. published cells of the space).
        same_output_shape: the derived network's output must have the supernet's shape (classifiers). Pass
            ``False`` for backbones whose feature channels depend on the genotype (e.g. cells that concatenate
            a variable number of nodes): then only the batch size and the number of dimensions must agree.
        seed: seed of every draw.

    Raises:
        ContractError: the first broken rule, named.
    """
    from datanas_core.distribution import ArchitectureDistribution
    from datanas_core.search.searcher import arch_from_genotype

    report = SpaceReport(space=getattr(space, "name", type(space).__name__))
    dkw = dict(supernet_kwargs if derived_kwargs is None else derived_kwargs)

    cells = space.cells()
    if not cells:
        raise _fail("cell_specs", "space.cells() is empty")
    for ct, spec in cells.items():
        if spec.cell_type != ct:
            raise _fail("cell_specs", f"cells()[{ct!r}] has cell_type {spec.cell_type!r}")
        if spec.num_edges < 1 or spec.num_ops < 1:
            raise _fail("cell_specs", f"cell type {ct!r} has {spec.num_edges} edges and {spec.num_ops} ops")
        keys = [spec.edge_key(e) for e in range(spec.num_edges)]
        if len(set(keys)) != len(keys):
            raise _fail("cell_specs", f"cell type {ct!r} has duplicate edge keys")
        if len(set(spec.ops)) != len(spec.ops):
            raise _fail("cell_specs", f"cell type {ct!r} lists an op twice: {list(spec.ops)}")
    report.checks.append("cell_specs")

    def build_supernet() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return space.build_supernet(**supernet_kwargs)

    x = make_input(torch.Generator().manual_seed(seed))
    supernet = build_supernet()
    report.supernet_params = sum(p.numel() for p in supernet.parameters())
    out_shape: tuple[int, ...] | None = None
    last_dist: ArchitectureDistribution | None = None
    for name in estimators:
        check = f"supernet_forward[{name}]"
        try:
            dist = ArchitectureDistribution(
                space, estimator=name, generator=torch.Generator().manual_seed(seed)
            )
        except DataNASError as exc:
            raise _fail(check, f"cannot build the distribution: {exc}") from exc
        supernet.train()
        arch = dist.sample(generator=torch.Generator().manual_seed(seed + 1))
        try:
            y = _first_tensor(supernet(x, arch))
        except ContractError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with the check's name
            raise _fail(check, f"supernet(x, arch) raised {type(exc).__name__}: {exc}") from exc
        if not torch.isfinite(y).all():
            raise _fail(check, "the supernet's output has NaN or inf values")
        supernet.zero_grad(set_to_none=True)
        y.float().square().mean().backward()
        grads = [p.grad for p in dist.parameters() if p.grad is not None]
        if not grads or not any(bool(torch.any(g != 0)) for g in grads):
            raise _fail(check, "no gradient reached the architecture logits")
        if out_shape is None:
            out_shape = tuple(y.shape)
        elif tuple(y.shape) != out_shape:
            raise _fail(
                check, f"output shape {tuple(y.shape)} differs from {out_shape} with another estimator"
            )
        report.checks.append(check)
        last_dist = dist

    twin = build_supernet()
    if list(supernet.state_dict()) != list(twin.state_dict()):
        raise _fail("seeded_build", "two builds register different parameters or buffers (names or order)")
    # the forward/backward passes above left the parameters as built (no optimiser step)
    fresh = dict(twin.named_parameters())
    for n, p in supernet.named_parameters():
        if not torch.equal(p, fresh[n]):
            raise _fail("seeded_build", f"{n} differs between two builds under the same seed")
    report.checks.append("seeded_build")

    from datanas_core.derive import derive

    if last_dist is None:
        last_dist = ArchitectureDistribution(space, estimator="softmax")
    with torch.no_grad():  # a non-uniform distribution, so the rule has something to choose
        g = torch.Generator().manual_seed(seed + 2)
        for p in last_dist.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    try:
        genotype = derive(last_dist, space)
        space.validate(genotype)
    except DataNASError as exc:
        raise _fail("derive", f"the derived genotype is not valid: {exc}") from exc
    if Genotype.from_json(genotype.to_json()) != genotype:
        raise _fail("derive", "the genotype changed in a JSON round trip")
    report.genotype = genotype
    report.checks.append("derive")

    for i, geno in enumerate([genotype, *genotypes]):
        check = f"derived_forward[{i}]"
        try:
            space.validate(geno)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                derived = space.build_derived(geno, **dkw)
            derived.eval()
            with torch.no_grad():
                yd = _first_tensor(derived(x))
        except ContractError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with the check's name
            raise _fail(check, f"build_derived / forward raised {type(exc).__name__}: {exc}") from exc
        if out_shape is not None and not _shapes_agree(tuple(yd.shape), out_shape, same_output_shape):
            raise _fail(check, f"derived output shape {tuple(yd.shape)} != supernet output shape {out_shape}")
        n_params = sum(p.numel() for p in derived.parameters())
        if n_params > report.supernet_params:
            raise _fail(check, f"the derived network has more parameters ({n_params}) than the supernet")
        if i == 0:
            report.derived_params = n_params
        report.checks.append(check)

    net = copy.deepcopy(supernet).eval()
    try:
        with torch.no_grad():
            yf = _first_tensor(net(x, arch_from_genotype(genotype, space)))
    except Exception as exc:  # noqa: BLE001 - reported with the check's name
        raise _fail("fixed_code", f"supernet(x, fixed code) raised {type(exc).__name__}: {exc}") from exc
    if out_shape is not None and not _shapes_agree(tuple(yf.shape), out_shape, same_output_shape):
        raise _fail("fixed_code", f"output shape {tuple(yf.shape)} != {out_shape}")
    if not torch.isfinite(yf).all():
        raise _fail("fixed_code", "NaN or inf with the genotype's fixed code")
    report.checks.append("fixed_code")
    return report
