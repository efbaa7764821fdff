"""Training derived segmentation models, and random (parameter-matched) baselines of the space.

:func:`train_model` is a plain SGD + poly-LR loop over random crops for any model/task pair whose
``task.loss(model, batch, None)`` returns the loss (the pure-torch :class:`~datanas_seg.task.SegSearchTask`
or the mmseg :class:`~datanas_seg.mmseg.MMSegSearchTask`), so searched and random backbones are trained with
exactly the same budget.

:func:`random_genotype` draws a DARTS random-search architecture (per node two distinct inputs, a uniform
non-``none`` op on each); :func:`param_matched_random_genotypes` keeps drawing until the backbone's parameter
count is within a tolerance of a reference genotype's, for comparisons "at equal parameters".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from datanas_core.errors import ConfigError, SearchSpaceError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.search.task import split_loss
from datanas_core.space.networks import op_cost
from datanas_seg.data import RandomCropDataset, SegImages
from datanas_seg.genotypes import GenotypeRef, resolve_genotype
from datanas_seg.space import SegDartsSpace, cell_layout, normalize_stages

__all__ = [
    "TrainSettings",
    "backbone_op_params",
    "count_parameters",
    "in_degrees_of",
    "param_matched_random_genotypes",
    "random_genotype",
    "train_model",
]

logger = logging.getLogger(__name__)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class TrainSettings:
    """Budget and optimiser of :func:`train_model`.

    Attributes:
        iters: optimisation steps.
        batch_size: crops per step.
        crop_size: side of the square random crops.
        lr: initial SGD learning rate (poly decay with power 0.9 to ``lr * 0.01``).
        momentum, weight_decay: SGD options.
        grad_clip: gradient-norm clip (``None``: off).
        seed: seeds the crops (weights are initialised by the caller).
        log_every: steps between log lines.
    """

    iters: int = 600
    batch_size: int = 8
    crop_size: int = 96
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = 5.0
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("iters", "batch_size", "crop_size", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_model(
    model: nn.Module,
    task: Any,
    data: SegImages,
    settings: TrainSettings,
    *,
    on_step: Callable[[int, Mapping[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` on random crops of ``data`` for ``settings.iters`` steps.

    Args:
        model: the network (its device is used for the batches).
        task: object with ``loss(model, batch, arch)`` (called with ``arch=None``).
        data: training images.
        settings: budget and optimiser.
        on_step: called as ``on_step(step, logs)`` after every step (progress bars).

    Returns:
        One record per ``log_every`` steps: ``{"step", "loss", "lr", "seconds"}`` (+ task logs).
    """
    device = next(iter(model.parameters())).device
    steps_per_epoch = max(1, math.ceil(256 / settings.batch_size))
    ds = RandomCropDataset(
        data, settings.crop_size, steps_per_epoch * settings.batch_size, seed=settings.seed
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max((1 - s / settings.iters) ** 0.9, 0.01))
    model.train()
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    count = 0
    start = time.perf_counter()
    step = 0
    epoch = 0
    while step < settings.iters:
        ds.set_epoch(epoch)
        order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(settings.seed * 7919 + epoch))
        for b in range(0, len(ds) - settings.batch_size + 1, settings.batch_size):
            items = [ds[int(i)] for i in order[b : b + settings.batch_size]]
            batch = (
                torch.stack([x for x, _ in items]).to(device),
                torch.stack([y for _, y in items]).to(device),
            )
            loss, logs = split_loss(task.loss(model, batch, None))
            if not torch.isfinite(loss.detach()):
                raise ConfigError(
                    f"training loss became {float(loss)} at step {step}; "
                    f"lower the learning rate (lr={settings.lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, settings.grad_clip)
            opt.step()
            sched.step()
            step += 1
            rec = {"loss": float(loss.detach()), **logs}
            for k, v in rec.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if on_step is not None:
                on_step(step, rec)
            if step % settings.log_every == 0 or step == settings.iters:
                entry = {k: v / count for k, v in sums.items()}
                entry.update(step=step, lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - start)
                history.append(entry)
                logger.info(
                    "step %d/%d loss %.4f lr %.4g (%.0fs)",
                    step,
                    settings.iters,
                    entry["loss"],
                    entry["lr"],
                    entry["seconds"],
                )
                sums, count = {}, 0
            if step >= settings.iters:
                break
        epoch += 1
    return history


def random_genotype(
    space: SegDartsSpace,
    generator: torch.Generator,
    *,
    inputs_per_node: int = 2,
    in_degrees: Mapping[str, Sequence[int]] | None = None,
) -> Genotype:
    """A random architecture of ``space``: per node distinct random inputs, each with a uniform
    non-``none`` op (DARTS' random-search baseline).

    Args:
        generator: source of randomness.
        inputs_per_node: inputs per node (capped by the number of predecessors).
        in_degrees: per cell type, the number of inputs of each intermediate node (overrides
            ``inputs_per_node``; e.g. the in-degrees of a searched genotype, to sample the same topology
            class).
    """
    ops = [o for o in space.ops if o != "none"]
    if not ops:
        raise SearchSpaceError(f"space {space.name!r} has no op besides 'none'")
    cells = {}
    for ct, spec in space.cells().items():
        degrees = list(in_degrees[ct]) if in_degrees is not None else [inputs_per_node] * spec.num_nodes
        if len(degrees) != spec.num_nodes:
            raise ConfigError(f"in_degrees[{ct!r}] has {len(degrees)} entries for {spec.num_nodes} nodes")
        edges = []
        for node, deg in zip(spec.nodes, degrees, strict=True):
            k = max(1, min(int(deg), node))
            srcs = torch.randperm(node, generator=generator)[:k].tolist()
            for src in sorted(srcs):
                op = ops[int(torch.randint(len(ops), (1,), generator=generator))]
                edges.append(EdgeChoice(src, node, op))
        cells[ct] = CellGenotype(tuple(edges), spec.concat)
    return Genotype(space.name, cells, meta={"kind": "random"})


def in_degrees_of(genotype: Genotype, space: SegDartsSpace) -> dict[str, list[int]]:
    """Per cell type, the number of distinct inputs of each intermediate node of ``genotype``."""
    return {
        ct: [len({e.src for e in genotype.cells[ct].inputs_of(node)}) for node in spec.nodes]
        for ct, spec in space.cells().items()
    }


def backbone_op_params(
    genotype: GenotypeRef,
    *,
    C: int = 16,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    cache: dict[tuple[Any, ...], float] | None = None,
) -> int:
    """Parameters of the candidate ops a genotype keeps in the derived backbone (without stem and cell
    preprocessing, which do not depend on the ops); cheap, no network is built."""
    g = resolve_genotype(genotype)
    stages = normalize_stages(cells_per_stage, num_stages)
    cache = {} if cache is None else cache
    total = 0.0
    for ct, s in cell_layout(stages):
        Cs = C * 2**s
        for e in g.cells[ct].edges:
            stride = 2 if ct == "reduce" and e.src < 2 else 1
            total += op_cost(e.op, Cs, Cs, stride, 8, "params", cache)
    return int(total)


def param_matched_random_genotypes(
    space: SegDartsSpace,
    reference: GenotypeRef,
    n: int,
    *,
    C: int = 16,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    backbone_params: int | None = None,
    tolerance: float = 0.1,
    seed: int = 0,
    max_draws: int = 20000,
) -> list[Genotype]:
    """``n`` distinct random genotypes with the reference's node in-degrees whose backbone parameter count is
    within ``tolerance`` (relative) of ``reference``'s.

    Args:
        backbone_params: the reference backbone's total parameter count (stem + preprocessing + ops); the
            relative tolerance is taken against it (default: only the ops' parameters, a stricter match).
        max_draws: give up after this many draws.

    Raises:
        SearchSpaceError: fewer than ``n`` matches in ``max_draws`` draws (raise the tolerance).
    """
    if n < 0 or not 0 < tolerance:
        raise ConfigError(f"need n >= 0 and tolerance > 0, got n={n}, tolerance={tolerance}")
    cache: dict[tuple[Any, ...], float] = {}
    kw = {"C": C, "cells_per_stage": cells_per_stage, "num_stages": num_stages}
    ref_g = resolve_genotype(reference)
    ref = backbone_op_params(ref_g, cache=cache, **kw)  # type: ignore[arg-type]
    degrees = in_degrees_of(ref_g, space)
    scale = float(backbone_params if backbone_params is not None else max(ref, 1))
    g = torch.Generator().manual_seed(seed)
    out: list[Genotype] = []
    seen: set[Genotype] = set()
    for draw in range(max_draws):
        cand = random_genotype(space, g, in_degrees=degrees)
        p = backbone_op_params(cand, cache=cache, **kw)  # type: ignore[arg-type]
        if abs(p - ref) / scale <= tolerance and cand not in seen:
            seen.add(cand)
            out.append(
                cand.with_meta(kind="random", draw=draw, seed=seed, op_params=p, reference_op_params=ref)
            )
            if len(out) == n:
                return out
    raise SearchSpaceError(
        f"found only {len(out)} of {n} random genotypes within {tolerance:.0%} of the reference's "
        f"{ref} op parameters in {max_draws} draws; raise the tolerance"
    )
