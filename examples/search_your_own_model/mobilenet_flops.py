"""Example (b): a MobileNet-style chain choosing kernel size and expansion ratio per layer under a FLOPs budget.

Every inverted-residual layer is one LayerChoice over (kernel 3/5/7) x (expansion 1/3/6): 9 candidates. The
search adds the expected FLOPs of the sampled architecture (``expected_cost`` with the per-candidate FLOPs
that ``ModelSpace`` measures with ``torch.utils.flop_counter``) as a hinge penalty above ``--budget``
MFLOPs to DATA's loss. The searched chain and 5 random chains that also fit the budget are retrained with
the same budget and compared.

    python examples/search_your_own_model/mobilenet_flops.py                 # CIFAR-10 zip, CPU scale
    python examples/search_your_own_model/mobilenet_flops.py --synthetic --per-class 8 --search-epochs 1 \\
        --retrain-epochs 1 --random 2                                        # seconds
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
    flops_of,
    load_data,
    random_genotypes,
    split_half,
    table,
    write,
)

import datanas_core as dc  # noqa: E402
from datanas_core.nn import LayerChoice  # noqa: E402

KERNELS = (3, 5, 7)
EXPANSIONS = (1, 3, 6)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (skipped at expansion 1), depthwise kxk, 1x1 project; residual if shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6()]
        layers += [
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.residual else y


#: (output channels, stride) of each searched layer, as multiples of --width.
LAYOUT = ((1, 1), (2, 2), (2, 1), (4, 2), (4, 1))


class MobileChain(nn.Module):
    """Stem, then one searched inverted-residual layer per LAYOUT entry, 1x1 head conv, pooling, classifier."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
        layers = []
        c = width
        for i, (mult, stride) in enumerate(LAYOUT):
            c_out = width * mult
            layers.append(
                LayerChoice(
                    {
                        f"k{k}e{e}": InvertedResidual(c, c_out, k, e, stride)
                        for k in KERNELS
                        for e in EXPANSIONS
                    },
                    label=f"layer{i + 1}",
                )
            )
            c = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU6())
        self.classifier = nn.Linear(4 * c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.head(self.layers(self.stem(x))).mean((2, 3)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--preset", default="data")
    parser.add_argument("--a-lr", type=float, default=0.02, help="architecture learning rate")
    parser.add_argument(
        "--budget", type=float, default=None, help="MFLOPs per image (default: halfway between min and max)"
    )
    parser.add_argument("--cost-weight", type=float, default=1.0, help="weight of the FLOPs hinge penalty")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    (train_x, train_y), test_set, source = load_data(args)
    w_half, a_half = split_half(train_x, train_y, args.seed)
    size = int(train_x.shape[-1])

    def make() -> nn.Module:
        return MobileChain(args.width)

    # the cost table the search will use, to place the default budget and filter the random baseline
    space = dc.ModelSpace(make(), example_input=train_x[:1])
    table_flops = space.edge_costs("flops")
    fixed = flops_of(dc.fix(make(), _cheapest(space, table_flops)), size) - sum(
        float(t.min()) for t in table_flops.values()
    )
    lo = fixed + sum(float(t.min()) for t in table_flops.values())
    hi = fixed + sum(float(t.max()) for t in table_flops.values())
    budget = args.budget * 1e6 if args.budget is not None else (lo + hi) / 2
    searched_budget = budget - fixed  # the penalty sees the searched layers' FLOPs only

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
        arch_warmup_epochs=args.search_epochs // 4,
        weight_sampling="uniform",
        seed=args.seed,
        regularizers=[
            {"type": "adc", "weight": 0.1},
            {
                "type": "expected_cost",
                "metric": "flops",
                "form": "hinge",
                "budget": searched_budget,
                "weight": args.cost_weight,
            },
        ],
        run_dir=args.run_dir,
        **({"progress": False} if args.run_dir else {}),
    )
    search_seconds = round(time.time() - t0, 1)

    def fits(g: dc.Genotype) -> bool:
        return flops_of(dc.fix(make(), g), size) <= budget

    randoms = random_genotypes(result.space, args.random, seed=args.seed + 100, accept=fits)
    out = compare(make, result.genotype, randoms, (train_x, train_y), test_set, args)
    out.update(
        {
            "example": "mobilenet_flops",
            "data": source,
            "train_images": len(train_y),
            "test_images": len(test_set[1]),
            "search_epochs": args.search_epochs,
            "search_seconds": search_seconds,
            "retrain_epochs": args.retrain_epochs,
            "image_size": args.image_size,
            "width": args.width,
            "preset": args.preset,
            "a_lr": args.a_lr,
            "budget_mflops": budget / 1e6,
            "range_mflops": [lo / 1e6, hi / 1e6],
            "searched_within_budget": out["rows"][0]["flops"] <= budget,
            "genotype": result.genotype.to_dict(),
            "probabilities": {
                k: [round(float(v), 3) for v in p[0].detach()]
                for k, p in result.searcher.distribution.probs().items()
            },
        }
    )
    print(table(out))  # noqa: T201 - a script
    print(f"budget {budget / 1e6:.2f} MFLOPs (range {lo / 1e6:.2f}..{hi / 1e6:.2f})")  # noqa: T201
    write(out, args.out)
    return out


def _cheapest(space: dc.ModelSpace, costs: dict[str, Tensor]) -> dc.Genotype:
    from datanas_core.space.model import genotype_from_choices

    return genotype_from_choices({label: int(c[0].argmin()) for label, c in costs.items()}, space)


if __name__ == "__main__":
    main()
