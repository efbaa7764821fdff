"""Example (a): choose the block type of every stage of a small ResNet on CIFAR-10.

Each stage has one LayerChoice between a basic residual block, a bottleneck block, a depthwise-separable
block and no block at all (identity); the stem and the strided transitions between stages are fixed. DATA
(EGS, M=2, ADC) searches it, the searched network and 5 random ones are retrained from scratch with the same
budget, and their test accuracies are compared.

    python examples/search_your_own_model/resnet_blocks.py                  # CIFAR-10 zip, CPU scale
    python examples/search_your_own_model/resnet_blocks.py --synthetic --per-class 8 --search-epochs 1 \\
        --retrain-epochs 1 --random 2                                       # seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Batches,
    add_common_args,
    compare,
    load_data,
    random_genotypes,
    split_half,
    table,
    write,
)

import datanas_core as dc  # noqa: E402
from datanas_core.nn import LayerChoice  # noqa: E402


def conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)
    )


class Residual(nn.Module):
    """``relu(x + body(x))``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


def basic(c: int) -> nn.Module:
    return Residual(nn.Sequential(conv_bn(c, c), nn.ReLU(), conv_bn(c, c)))


def bottleneck(c: int) -> nn.Module:
    m = max(4, c // 4)
    return Residual(nn.Sequential(conv_bn(c, m, 1), nn.ReLU(), conv_bn(m, m), nn.ReLU(), conv_bn(m, c, 1)))


def separable(c: int) -> nn.Module:
    return Residual(
        nn.Sequential(
            conv_bn(c, c, 3, groups=c),
            conv_bn(c, c, 1),
            nn.ReLU(),
            conv_bn(c, c, 3, groups=c),
            conv_bn(c, c, 1),
        )
    )


class SmallResNet(nn.Module):
    """Stem, then per stage (16, 32, 64 channels by default) a searched block and a strided transition."""

    def __init__(self, width: int = 16, num_classes: int = 10, stages: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, width), nn.ReLU())
        layers: list[nn.Module] = []
        c = width
        for s in range(stages):
            layers.append(
                LayerChoice(
                    {
                        "basic": basic(c),
                        "bottleneck": bottleneck(c),
                        "separable": separable(c),
                        "identity": nn.Identity(),
                    },
                    label=f"stage{s + 1}",
                )
            )
            if s < stages - 1:
                layers.append(nn.Sequential(conv_bn(c, 2 * c, 3, 2), nn.ReLU()))
                c *= 2
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--preset", default="data")
    parser.add_argument("--a-lr", type=float, default=0.02, help="architecture learning rate")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    (train_x, train_y), test_set, source = load_data(args)
    w_half, a_half = split_half(train_x, train_y, args.seed)

    def make() -> nn.Module:
        return SmallResNet(args.width)

    torch.manual_seed(args.seed)
    t0 = time.time()
    result = dc.search(
        make(),
        Batches(*w_half, args.batch_size, seed=args.seed),
        Batches(*a_half, args.batch_size, seed=args.seed + 1),
        loss=F.cross_entropy,
        preset=args.preset,
        epochs=args.search_epochs,
        a_lr=args.a_lr,
        arch_warmup_epochs=args.search_epochs // 4,  # weights first, so candidates compete fairly
        weight_sampling="uniform",  # every candidate keeps training (SPOS-style fair path sampling)
        seed=args.seed,
        run_dir=args.run_dir,
        **({"progress": False} if args.run_dir else {}),
    )
    search_seconds = round(time.time() - t0, 1)
    randoms = random_genotypes(result.space, args.random, seed=args.seed + 100)
    out = compare(make, result.genotype, randoms, (train_x, train_y), test_set, args)
    out.update(
        {
            "example": "resnet_blocks",
            "data": source,
            "train_images": len(train_y),
            "test_images": len(test_set[1]),
            "search_epochs": args.search_epochs,
            "search_seconds": search_seconds,
            "image_size": args.image_size,
            "width": args.width,
            "retrain_epochs": args.retrain_epochs,
            "preset": args.preset,
            "a_lr": args.a_lr,
            "genotype": result.genotype.to_dict(),
            "probabilities": {
                k: [round(float(v), 3) for v in p[0].detach()]
                for k, p in result.searcher.distribution.probs().items()
            },
        }
    )
    print(table(out))  # noqa: T201 - a script
    write(out, args.out)
    return out


if __name__ == "__main__":
    main()
