#!/usr/bin/env python
"""Benchmark one full search step (architecture step + weight step) per estimator x executor x space.

Each configuration runs in its own subprocess so that its peak memory (max RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU) is its own. Reported per configuration:

- ``step_ms``: median wall time of one ``Searcher.step`` (α step on a validation batch + w step on a
  training batch), after warm-up steps;
- ``floor_pass_ms``: median forward+backward (weight gradients) of the supernet running a *fixed* 0/1 code of
  the architectures the estimator samples (only the kept ops run, no architecture graph): the cost of training
  that discrete architecture at the same size. A search step does two passes, so ``ratio_to_floor`` is
  ``step_ms / (2 * floor_pass_ms)``;
- ``peak_mb``: peak memory of the subprocess.

A ``naive`` configuration mimics a straightforward DARTS supernet (every candidate runs, ``none`` computed as
``x * 0``, weights multiplied into every output) as a reference for the exact executor.

Sizes follow the issue: NB201 C=16 N=5 batch 64 on 32x32; DARTS space 8 cells C=16 batch 32 on 32x32.
``--quick`` shrinks everything for a smoke run. Output: JSON and a Markdown table.

Example:
    python tools/bench_search.py --threads 2 --out bench/search
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

CONFIGS = [
    # (name, estimator, options, executor)
    ("naive-darts", "softmax", {}, "naive"),
    ("softmax", "softmax", {}, "exact"),
    ("snas", "snas", {}, "exact"),
    ("gdas", "gdas", {}, "sparse"),
    ("egs-M2-exact", "egs", {"samples": 2}, "exact"),
    ("egs-M2-sparse", "egs", {"samples": 2}, "sparse"),
    ("egs-M4-sparse", "egs", {"samples": 4}, "sparse"),
    ("dirichlet", "dirichlet", {}, "exact"),
]

SIZES = {
    "nb201": {
        "full": {"C": 16, "N": 5, "batch": 64, "hw": 32},
        "quick": {"C": 4, "N": 1, "batch": 8, "hw": 16},
    },
    "darts": {
        "full": {"C": 16, "layers": 8, "batch": 32, "hw": 32},
        "quick": {"C": 4, "layers": 3, "batch": 4, "hw": 16},
    },
}


def _naive_forward(
    self: Any, x: Any, weights_row: Any, active: Any, grad_proxy: bool = False, *, proxy: Any = None
) -> Any:
    """Every column runs, ``none`` as ``zeros * w`` (a straightforward DARTS MixedOp)."""
    out = None
    for k in range(self.num_ops):
        op = self.op(k)
        y = self.zeros(x) if op is None else op(x)
        y = weights_row[k] * y
        out = y if out is None else out + y
    return out


def run_one(
    space_name: str,
    name: str,
    estimator: str,
    options: dict[str, Any],
    executor: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from datanas_core.sample import ArchSample
    from datanas_core.search import SearchConfig, Searcher
    from datanas_core.space.base import SPACES
    from datanas_core.space.mixed import MixedOp

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    size = SIZES[space_name]["quick" if args.quick else "full"]
    space = SPACES.build(space_name)
    if space_name == "nb201":
        supernet_kwargs = {"C": size["C"], "N": size["N"], "num_classes": 10}
    else:
        supernet_kwargs = {"C": size["C"], "layers": size["layers"], "num_classes": 10}

    class Task:
        def loss(self, model: Any, batch: Any, arch: Any) -> Any:
            x, y = batch
            return F.cross_entropy(model(x, arch), y)

    cfg = SearchConfig(
        epochs=1,
        estimator=estimator,
        estimator_options=options,
        executor="exact" if executor == "naive" else executor,
        regularizers=({"type": "adc", "weight": 0.1},) if estimator == "egs" else (),
    )
    searcher = Searcher(space, Task(), cfg, supernet_kwargs=supernet_kwargs, device=device)
    if executor == "naive":
        for m in searcher.supernet.modules():
            if isinstance(m, MixedOp):
                m.forward = types.MethodType(_naive_forward, m)  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(0)
    hw = size["hw"]

    def batch() -> tuple[Any, Any]:
        x = torch.randn(size["batch"], 3, hw, hw, generator=g).to(device)
        y = torch.randint(0, 10, (size["batch"],), generator=g).to(device)
        return x, y

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    train, val = batch(), batch()
    for _ in range(args.warmup):
        searcher.step(train, val)
    times = []
    for _ in range(args.steps):
        sync()
        t0 = time.perf_counter()
        searcher.step(train, val)
        sync()
        times.append(time.perf_counter() - t0)

    # floor: the sampled architectures as fixed codes, weights-only forward+backward
    floor = []
    net = searcher.supernet
    params = [p for p in net.parameters() if p.requires_grad]
    for i in range(args.steps):
        with torch.no_grad():
            s = searcher.distribution.sample(generator=torch.Generator().manual_seed(100 + i))
        codes = {}
        for ct, cs in s.items():
            code = cs.code if cs.code is not None else cs.weights
            codes[ct] = (code.detach() > 0).float() if estimator != "softmax" else cs.weights.detach()
        fixed = ArchSample.fixed(codes)
        sync()
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(train[0], fixed), train[1])
        loss.backward(inputs=params)
        sync()
        floor.append(time.perf_counter() - t0)
        net.zero_grad(set_to_none=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step_ms = 1000 * statistics.median(times)
    floor_ms = 1000 * statistics.median(floor)
    return {
        "space": space_name,
        "config": name,
        "estimator": estimator,
        "options": options,
        "executor": executor,
        "size": size,
        "step_ms": round(step_ms, 2),
        "floor_pass_ms": round(floor_ms, 2),
        "ratio_to_floor": round(step_ms / (2 * floor_ms), 3),
        "peak_mb": round(peak, 1),
    }


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Search-step benchmark",
        "",
        f"device `{meta['device']}`, torch threads {meta['threads']}, torch {meta['torch']}, "
        f"{'quick' if meta['quick'] else 'full'} sizes, median of {meta['steps']} steps after {meta['warmup']} warm-up.",
        "",
        "`ratio_to_floor` = step / (2 x floor pass): one search step does two forward+backward passes; the floor pass",
        "trains the sampled discrete architectures (fixed 0/1 code, only kept ops) at the same size.",
        "",
        "| space | config | executor | step ms | floor pass ms | step / 2·floor | vs naive | peak MB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    naive = {r["space"]: r["step_ms"] for r in rows if r["config"] == "naive-darts"}
    for r in rows:
        rel = f"{r['step_ms'] / naive[r['space']]:.2f}" if r["space"] in naive else "-"
        lines.append(
            f"| {r['space']} | {r['config']} | {r['executor']} | {r['step_ms']:.1f} | {r['floor_pass_ms']:.1f} | "
            f"{r['ratio_to_floor']:.2f} | {rel} | {r['peak_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="nb201,darts")
    p.add_argument("--configs", default=",".join(c[0] for c in CONFIGS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default="bench/search", help="output prefix (writes .json and .md)")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    by_name = {c[0]: c for c in CONFIGS}
    if args._child:
        space_name, cname = args._child.split(":")
        _, est, opts, ex = by_name[cname]
        print(json.dumps(run_one(space_name, cname, est, opts, ex, args)))
        return 0
    unknown = [c for c in args.configs.split(",") if c not in by_name]
    if unknown:
        p.error(f"unknown config(s) {unknown}; valid: {', '.join(by_name)}")
    rows = []
    for space_name in args.spaces.split(","):
        for cname in args.configs.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--_child",
                f"{space_name}:{cname}",
                "--threads",
                str(args.threads),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--device",
                args.device,
            ]
            if args.quick:
                cmd.append("--quick")
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if res.returncode != 0:
                print(f"[{space_name}:{cname}] failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                return 1
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{space_name:6s} {cname:14s} step {row['step_ms']:9.1f} ms  floor {row['floor_pass_ms']:8.1f} ms  "
                f"ratio {row['ratio_to_floor']:.2f}  peak {row['peak_mb']:.0f} MB",
                flush=True,
            )
    import torch

    meta = {
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "quick": args.quick,
        "steps": args.steps,
        "warmup": args.warmup,
        "platform": platform.platform(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(_markdown(rows, meta))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
