"""Shared pieces of the "search your own model" examples: CIFAR-10 from the shared zip (or synthetic images),
batches, a plain training loop, accuracy, random choices and the searched-vs-random table."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import datanas_core as dc
from datanas_core.space.model import ModelSpace, choices_of, genotype_from_choices

#: Where the shared CIFAR-10 zip lives (override with $DATANAS_CIFAR10_ZIP or --data-zip).
DEFAULT_ZIP = Path(os.environ.get("DATANAS_CIFAR10_ZIP", "/work/shared/data/cifar10/cifar10-jpeg.zip"))
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def _stack(dataset: Any) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    x = torch.stack([torch.as_tensor(v) for v in xs]).float() / 255.0
    return (x - MEAN) / STD, torch.tensor(ys, dtype=torch.long)


def synthetic(n_per_class: int, n_classes: int = 10, size: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Learnable fake images: each class is a fixed random colour pattern plus noise."""
    g = torch.Generator().manual_seed(1000 + seed)
    protos = torch.randn(n_classes, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    protos = F.interpolate(protos, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = protos[y] + 0.8 * torch.randn(len(y), 3, size, size, generator=g)
    return x, y


def load_data(args: argparse.Namespace) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], str]:
    """``(train, test, description)``: CIFAR-10 images from the zip when present, else synthetic."""
    zip_path = Path(args.data_zip)
    if not args.synthetic and zip_path.is_file():
        from datanas_vision.data import load_dataset

        data = load_dataset(
            "imagezip", zip_path, max_per_class=args.per_class, test_max_per_class=args.test_per_class
        )
        train, test = _stack(data.train), _stack(data.test)
        desc = f"CIFAR-10 ({zip_path.name})"
    else:
        train = synthetic(args.per_class, seed=0)
        test = synthetic(args.test_per_class, seed=1)
        desc = "synthetic images (no CIFAR-10 zip)"
    if args.image_size != train[0].shape[-1]:  # CPU scale: average-pool the 32x32 images down
        train = (F.adaptive_avg_pool2d(train[0], args.image_size), train[1])
        test = (F.adaptive_avg_pool2d(test[0], args.image_size), test[1])
        desc += f", {args.image_size}x{args.image_size}"
    return train, test, desc


class Batches:
    """Re-iterable ``(x, y)`` batches of a tensor dataset, reshuffled every pass from a seeded generator."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, *, seed: int = 0, shuffle: bool = True) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x[idx], self.y[idx]


def split_half(x: Tensor, y: Tensor, seed: int = 0) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """DARTS' 50/50 split of the training images into a weight half and an architecture half."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    a, b = order[: len(y) // 2], order[len(y) // 2 :]
    return (x[a], y[a]), (x[b], y[b])


def train(
    model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, batch_size: int, lr: float, seed: int
) -> nn.Module:
    """SGD (momentum 0.9, weight decay 5e-4, cosine), random horizontal flips."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    batches = Batches(x, y, batch_size, seed=seed)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * len(batches)))
    flip = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(epochs):
        for xb, yb in batches:
            mask = torch.rand(len(yb), generator=flip) < 0.5
            xb = torch.where(mask.view(-1, 1, 1, 1), xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
        for i in range(0, len(y), batch_size)
    )
    return correct / len(y)


def flops_of(model: nn.Module, size: int = 32) -> int:
    """FLOPs of one 3 x size x size image (torch.utils.flop_counter; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    model.eval()
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size))
    return int(counter.get_total_flops())


def random_genotypes(
    space: ModelSpace, n: int, seed: int, accept: Callable[[dc.Genotype], bool] | None = None
) -> list[dc.Genotype]:
    """``n`` distinct uniformly random architectures (one candidate per choice), optionally filtered."""
    g = torch.Generator().manual_seed(seed)
    out: list[dc.Genotype] = []
    for _ in range(10_000):
        pick = {
            label: info.candidates[int(torch.randint(len(info.candidates), (1,), generator=g))]
            for label, info in space.choices.items()
        }
        geno = genotype_from_choices(pick, space)
        if geno in out or (accept is not None and not accept(geno)):
            continue
        out.append(geno)
        if len(out) == n:
            break
    return out


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-zip", default=str(DEFAULT_ZIP), help="CIFAR-10 zip (train/<class>/*.jpg)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic images instead of CIFAR-10")
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--image-size", type=int, default=16, help="images are pooled to this size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--test-per-class", type=int, default=100, help="test images per class")
    parser.add_argument("--search-epochs", type=int, default=15)
    parser.add_argument("--retrain-epochs", type=int, default=15)
    parser.add_argument("--random", type=int, default=5, help="random architectures in the comparison")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05, help="retraining learning rate")
    parser.add_argument("--width", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--run-dir", default=None, help="run the search with the runtime (checkpoints, report)"
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")


def compare(
    make_model: Callable[[], nn.Module],
    searched: dc.Genotype,
    randoms: Sequence[dc.Genotype],
    train_set: tuple[Tensor, Tensor],
    test_set: tuple[Tensor, Tensor],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Retrain the searched and the random architectures from scratch with the same budget; test accuracy."""
    rows = []
    for name, geno in [("searched", searched)] + [(f"random {i + 1}", g) for i, g in enumerate(randoms)]:
        torch.manual_seed(args.seed)
        model = dc.fix(make_model(), geno)
        t = time.time()
        train(
            model,
            *train_set,
            epochs=args.retrain_epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
        )
        rows.append(
            {
                "name": name,
                "choices": choices_of(geno),
                "test_acc": accuracy(model, *test_set),
                "params": sum(p.numel() for p in model.parameters()),
                "flops": flops_of(model, int(test_set[0].shape[-1])),
                "seconds": round(time.time() - t, 1),
            }
        )
    rand = [r["test_acc"] for r in rows[1:]]
    return {
        "rows": rows,
        "searched_acc": rows[0]["test_acc"],
        "random_median": statistics.median(rand) if rand else None,
    }


def table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = ["| architecture | choices | test acc | params | MFLOPs |", "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        ch = ", ".join(f"{k}={v}" for k, v in r["choices"].items())
        lines.append(
            f"| {r['name']} | {ch} | {100 * r['test_acc']:.2f} | {r['params']:,} | {r['flops'] / 1e6:.2f} |"
        )
    if result["random_median"] is not None:
        lines.append(f"| **median of random** | | {100 * result['random_median']:.2f} | | |")
    return "\n".join(lines)


def write(result: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2, default=str) + "\n")
