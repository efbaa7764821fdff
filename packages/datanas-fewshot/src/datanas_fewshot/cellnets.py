"""Helpers shared by the clustering and few-shot searches: the compact DARTS space used by CPU defaults,
random genotypes (the baselines), and seeded network construction.

No learn2learn here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.space.darts import DARTS_OPS, DartsSpace

__all__ = [
    "CONV_OPS",
    "SMALL_OPS",
    "COMPACT_OPS",
    "build_space",
    "count_parameters",
    "random_genotype",
    "resize_images",
    "seeded_build",
    "use_weight_optimizer",
]

logger = logging.getLogger(__name__)

#: The DARTS candidates without the 5x5 separable and dilated convolutions: about half the supernet cost on
#: CPU. Used by the CPU defaults of both CLIs (``--ops darts`` selects the full DARTS list).
COMPACT_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "dil_conv_3x3",
)

#: Small-image op set: pooling, identity, plain 1x1 / 3x3 convolutions (ReLU-conv-BN, as in NAS-Bench-201) and
#: the 3x3 separable convolution. Plain convolutions are cheaper per channel on CPU than the depthwise ones and
#: more expressive at the small widths (C = 8) of the CPU configurations.
SMALL_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "sep_conv_3x3",
)

#: Convolutions only (plus ``none``): short CPU searches on an unsupervised objective drift to pooling and
#: identity ops (the parameter-free collapse of DARTS-style search; measured on MNIST, see the README); this
#: set searches the topology and the kind of convolution instead.
CONV_OPS: tuple[str, ...] = ("none", "nor_conv_1x1", "nor_conv_3x3", "sep_conv_3x3", "dil_conv_3x3")

_OP_SETS = {"compact": COMPACT_OPS, "conv": CONV_OPS, "darts": DARTS_OPS, "small": SMALL_OPS}

M = TypeVar("M", bound=nn.Module)


def build_space(ops: str | Sequence[str] = "compact", *, steps: int = 4) -> DartsSpace:
    """A DARTS space with the named op set (``"compact"``, ``"conv"``, ``"small"`` or ``"darts"``) or an explicit op list.

    Raises:
        ConfigError: unknown op-set name (listing the valid ones).
    """
    if isinstance(ops, str):
        if ops not in _OP_SETS:
            raise ConfigError(f"unknown op set {ops!r}; valid op sets: {', '.join(sorted(_OP_SETS))}")
        ops = _OP_SETS[ops]
    return DartsSpace(tuple(ops), steps=steps, multiplier=steps)


def random_genotype(space: DartsSpace, generator: torch.Generator) -> Genotype:
    """A uniformly random genotype of ``space``: per node two distinct inputs, each with a random
    non-``none`` op.

    This is the "random cell" baseline of the acceptance comparisons.
    """
    ops = [o for o in space.ops if o != "none"]
    cells = {}
    for ct, spec in space.cells().items():
        edges = []
        for node in spec.nodes:
            srcs = torch.randperm(node, generator=generator)[:2].tolist()
            for s in sorted(srcs):
                op = ops[int(torch.randint(len(ops), (1,), generator=generator))]
                edges.append(EdgeChoice(int(s), node, op))
        cells[ct] = CellGenotype(tuple(edges), spec.concat)
    g = Genotype(space.name, cells, meta={"source": "random"})
    space.validate(g)
    return g


def use_weight_optimizer(searcher: Any, name: str, lr: float, lr_min: float) -> None:
    """Give a core ``Searcher`` a different weight optimiser (``"sgd"``: keep the core's SGD; ``"adam"``).

    Unsupervised pair objectives (IIC) and ProtoNet on the supernet's wide batch-normalised embeddings train
    far more slowly with SGD than with Adam in the short CPU searches. The optimiser and its cosine schedule
    are replaced before the first step, so checkpoints and resumes see the Adam state.

    Raises:
        ConfigError: unknown optimiser name.
    """
    if name == "sgd":
        return
    if name != "adam":
        raise ConfigError(f"unknown weight optimiser {name!r}; valid: adam, sgd")
    searcher.w_optimizer = torch.optim.Adam(searcher.w_params, lr=lr)
    searcher.w_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        searcher.w_optimizer, T_max=searcher.config.epochs, eta_min=lr_min
    )


def seeded_build(factory: Callable[[], M], seed: int) -> M:
    """Build a module with parameter initialisation drawn from ``seed``, without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def resize_images(images: Tensor, size: int | None) -> Tensor:
    """Resize ``[N, C, H, W]`` images to ``size x size`` (bilinear, antialiased); ``None`` keeps them."""
    if size is None or (images.shape[-1] == size and images.shape[-2] == size):
        return images
    if size < 4:
        raise ConfigError(f"image size must be >= 4, got {size}")
    out = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    return out.clamp_(0.0, 1.0)
