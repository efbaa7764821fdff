"""Run a peer's NB201 search (xautodl's GDAS or DARTS-V1 supernet) on the NB201 study's data and budget.

Why: to tell a weakness of a method at a budget from a defect of our implementation. This script feeds the
reference supernet of AutoDL-Projects (``pip install xautodl==1.0.0``, MIT licence; not a dependency of
datanas, imported only here) exactly the batches that ``tools/study_nb201.py`` gives our searches (the same
``make_search_loaders`` on the same CIFAR-10 subset, seeded the same way), trains it with AutoDL's NB201
recipe (weights: SGD 0.025, momentum 0.9, Nesterov, weight decay 5e-4 for GDAS and 3e-4 for DARTS, cosine to
0.001 per iteration, gradient clip 5; architecture: Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3; GDAS's
tau linear 10 -> 0.1 over the epochs; weight step then architecture step on every pair of batches) and
scores the cell it derives after every epoch with the NAS-Bench-201 table (``--table``, as in the study).

Output: one JSON file per (method, seed) in ``--out`` with the per-epoch cells and scores, and ``--summary``
prints the table of the finished runs. One torch thread (``--threads``), like the study.

Example::

    pip install xautodl==1.0.0
    python tools/peer_nb201.py --table ~/nb201/nats_bench.csv --method gdas --seeds 0,1,2 --out runs/peer
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ZIP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, required=True, help="NAS-Bench-201 results table (CSV)")
    p.add_argument("--data-zip", type=Path, default=DEFAULT_ZIP, help="CIFAR-10 as a zip of JPEG folders")
    p.add_argument("--method", choices=("gdas", "darts"), default="gdas")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--max-per-class", type=int, default=500)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=1, help="N: cells per stage")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--summary", action="store_true", help="only print the table of the finished runs")
    return p.parse_args(argv)


def run_one(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import torch
    from torch import nn
    from xautodl.models.cell_searchs import TinyNetworkDarts, TinyNetworkGDAS

    from datanas_core.benchmarks import load_benchmark
    from datanas_vision.data import load_dataset, make_search_loaders

    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    table = load_benchmark(args.table)
    data = load_dataset("imagezip", args.data_zip, max_per_class=args.max_per_class, test_max_per_class=1)
    train, val = make_search_loaders(data, batch_size=args.batch_size, seed=seed)
    cls = TinyNetworkGDAS if args.method == "gdas" else TinyNetworkDarts
    net = cls(args.C, args.layers, 4, data.num_classes, list(NB201_OPS), False, True)
    w_opt = torch.optim.SGD(
        net.get_weights(),
        lr=0.025,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4 if args.method == "gdas" else 3e-4,
    )
    a_opt = torch.optim.Adam(net.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps = min(len(train), len(val))
    total = args.epochs * steps
    history: list[dict[str, Any]] = []
    t0 = time.process_time()
    it = 0
    for epoch in range(args.epochs):
        if args.method == "gdas":
            net.set_tau(10.0 - (10.0 - 0.1) * epoch / max(args.epochs - 1, 1))
        train.set_epoch(epoch)
        val.set_epoch(epoch)
        net.train()
        correct = seen = 0
        for (xw, yw), (xa, ya) in zip(train, val, strict=False):
            lr = 0.001 + 0.5 * (0.025 - 0.001) * (1 + math.cos(math.pi * it / total))
            for g in w_opt.param_groups:
                g["lr"] = lr
            w_opt.zero_grad()
            _, logits = net(xw)
            loss = loss_fn(logits, yw)
            loss.backward()
            nn.utils.clip_grad_norm_(net.get_weights(), 5.0)
            w_opt.step()
            correct += int((logits.argmax(1) == yw).sum())
            seen += len(yw)
            a_opt.zero_grad()
            _, logits = net(xa)
            loss_fn(logits, ya).backward()
            a_opt.step()
            it += 1
        arch = net.genotype().tostr()
        score = table.score(arch)
        with torch.no_grad():
            probs = torch.softmax(net.arch_parameters, dim=-1)
            entropy = float(
                (-(probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(len(NB201_OPS))).mean()
            )
        history.append(
            {
                "epoch": epoch,
                "arch": arch,
                "accuracy": score.values.get(table.primary_metric) if score.in_table else None,
                "entropy": round(entropy, 4),
                "train_accuracy": round(correct / max(seen, 1), 4),
            }
        )
        print(json.dumps({"seed": seed, **history[-1]}), flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "method": f"xautodl {args.method} (TinyNetwork{'GDAS' if args.method == 'gdas' else 'Darts'})",
        "seed": seed,
        "budget": {
            "max_per_class": args.max_per_class,
            "C": args.C,
            "N": args.layers,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "steps_per_epoch": steps,
        },
        "final": history[-1],
        "history": history,
        "cpu_minutes": round((time.process_time() - t0) / 60, 2),
        "max_rss_mb": round(usage.ru_maxrss / 1024),
    }


def summarize(out: Path, method: str) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob(f"{method}_seed*.json"))]
    if not rows:
        return f"no finished {method} runs in {out}"
    lines = [
        "| seed | final cell | NB201 CIFAR-10 | entropy | cells by epoch | CPU min |",
        "|---|---|---:|---:|---|---:|",
    ]
    finals = []
    for r in rows:
        f = r["final"]
        finals.append(f["accuracy"])
        curve = " / ".join("-" if h["accuracy"] is None else f"{h['accuracy']:.1f}" for h in r["history"])
        lines.append(
            f"| {r['seed']} | `{f['arch'].replace('|', chr(92) + '|')}` | {f['accuracy']:.2f} | {f['entropy']:.3f} | {curve} | {r['cpu_minutes']} |"
        )
    valid = [a for a in finals if a is not None]
    if valid:
        lines.append(f"\nmean {statistics.mean(valid):.2f}, min {min(valid):.2f} over {len(valid)} seeds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            path = args.out / f"{args.method}_seed{seed}.json"
            if path.exists():
                continue
            result = run_one(args, seed)
            path.write_text(json.dumps(result, indent=1) + "\n")
    print(summarize(args.out, args.method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
