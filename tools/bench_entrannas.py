#!/usr/bin/env python
"""Benchmark EnTranNAS against the plain DARTS supernet at the same size: search-step time and memory.

The paper claims that engine/transit cells and feature sharing make the search faster and lighter than a
DARTS supernet. Configurations (DARTS space; NB201 with ``--spaces nb201``):

============== ===========================================================================================
darts          core DARTS supernet (``darts``), softmax relaxation, every op of every edge (the baseline)
shared-all     EnTranNAS supernet with every cell an engine cell: feature sharing alone
entrannas      EnTranNAS (softmax engine cells, DARTS' top-2 rule in transit cells, feature sharing)
entrannas-ns   as ``entrannas`` without feature sharing: transit cells alone
dst-init       EnTranNAS-DST at initialisation (near-uniform alpha: every pair survives the thresholds)
dst-trained    EnTranNAS-DST with alpha ~ N(0, 1.5^2) (a separated distribution, as after some search)
============== ===========================================================================================

Each configuration runs in its own subprocess (torch threads 1 by default) so that its peak resident memory
is its own. Reported per configuration:

- ``step_ms``: median wall time of one ``Searcher.step`` (architecture step on a validation batch + weight
  step on a training batch), after warm-up steps;
- ``saved_mb``: bytes of the tensors autograd saves for backward in one forward pass of the supernet on a
  batch (activation memory, measured with ``torch.autograd.graph.saved_tensors_hooks``; deterministic);
- ``peak_rss_mb`` / ``step_rss_mb``: the subprocess' peak RSS, and its growth over the RSS measured after
  building the searcher, before any forward pass (the memory that training passes need);
- ``pairs``: (input, op) pairs computed per transit cell (mean over transit cells; ``-`` without any);
- ratios to the ``darts`` row of the same space.

Output: ``<out>.json`` and ``<out>.md``. Example (small CPU sizes, as on the shared 2-core box)::

    python tools/bench_entrannas.py --out bench/entrannas
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# name -> (space suffix, estimator, estimator options, executor, space options, alpha std or None)
CONFIGS: dict[str, tuple[str, str, dict[str, Any], str, dict[str, Any], float | None]] = {
    "darts": ("plain", "softmax", {}, "exact", {}, None),
    "shared-all": ("entrannas", "softmax", {}, "exact", {"engine_cells": "all"}, None),
    "entrannas": ("entrannas", "softmax", {}, "exact", {}, None),
    "entrannas-ns": ("entrannas", "softmax", {}, "exact", {"feature_sharing": False}, None),
    "dst-init": ("entrannas", "dst", {}, "sparse", {}, None),
    "dst-trained": ("entrannas", "dst", {}, "sparse", {}, 1.5),
}

SIZES = {
    "darts": {"C": 8, "layers": 5, "batch": 16, "hw": 16},
    "nb201": {"C": 8, "N": 2, "batch": 16, "hw": 16},
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(space: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    import datanas_core.entrannas  # noqa: F401  (registers the EnTranNAS spaces and the dst estimator)
    from datanas_core import SearchConfig, Searcher, get_space

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kind, estimator, est_opts, executor, space_opts, alpha_std = CONFIGS[name]
    size = dict(SIZES[space])
    if args.C:
        size["C"] = args.C
    if args.batch:
        size["batch"] = args.batch
    if args.hw:
        size["hw"] = args.hw
    space_name = space if kind == "plain" else f"entrannas_{space}"
    sp = get_space(space_name, **space_opts)
    if space == "darts":
        kwargs = {"C": size["C"], "layers": size["layers"], "num_classes": 10}
    else:
        kwargs = {"C": size["C"], "N": size["N"], "num_classes": 10}

    class Task:
        def loss(self, model: Any, batch: Any, arch: Any) -> Any:
            x, y = batch
            return F.cross_entropy(model(x, arch), y)

    cfg = SearchConfig(
        epochs=1, estimator=estimator, estimator_options=est_opts, executor=executor, regularizers=()
    )
    searcher = Searcher(sp, Task(), cfg, supernet_kwargs=kwargs)
    if alpha_std is not None:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in searcher.distribution.logits.values():
                p.copy_(alpha_std * torch.randn(p.shape, generator=g))
    g = torch.Generator().manual_seed(0)
    hw = size["hw"]

    def batch() -> tuple[Any, Any]:
        return torch.randn(size["batch"], 3, hw, hw, generator=g), torch.randint(
            0, 10, (size["batch"],), generator=g
        )

    train, val = batch(), batch()
    net = searcher.supernet
    rss_before = _rss_mb()
    # activation memory of one forward pass (what autograd keeps for backward)
    saved = [0]

    def pack(t: Any) -> Any:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.no_grad():
        arch0 = searcher.distribution.sample(generator=torch.Generator().manual_seed(3))
    pairs = "-"
    plan_fn = getattr(net, "transit_genotype", None)
    roles = getattr(net, "roles", ())
    if callable(plan_fn) and "transit" in roles:
        genes = plan_fn(arch0)
        cells = [c for c in net.cells if getattr(c, "role", None) == "transit"]
        pairs = round(statistics.mean(len(genes[c.cell_type].edges) for c in cells), 1)
    net.train()
    arch = searcher.distribution.sample(generator=torch.Generator().manual_seed(3))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(train[0], arch), train[1])
    loss.backward()
    net.zero_grad(set_to_none=True)
    searcher.distribution.zero_grad(set_to_none=True)
    del loss, arch
    for _ in range(args.warmup):
        searcher.step(train, val)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        searcher.step(train, val)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "space": space,
        "config": name,
        "estimator": estimator,
        "executor": executor,
        "space_options": space_opts,
        "alpha_std": alpha_std,
        "size": size,
        "params": sum(p.numel() for p in net.parameters()),
        "pairs": pairs,
        "step_ms": round(1000 * statistics.median(times), 1),
        "saved_mb": round(saved[0] / 2**20, 2),
        "peak_rss_mb": round(peak, 1),
        "step_rss_mb": round(max(peak - rss_before, 0.0), 1),
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# EnTranNAS vs DARTS supernet: search-step time and memory",
        "",
        f"CPU, torch threads {meta['threads']}, torch {meta['torch']}, median of {meta['steps']} steps after "
        f"{meta['warmup']} warm-up, one subprocess per row. Sizes: {json.dumps(meta['sizes'])}.",
        "Ratios are to the `darts` row of the same space (< 1: cheaper). `saved MB`: tensors autograd keeps",
        "for backward in one forward (activation memory); `step RSS MB`: growth of the process RSS during",
        "the steps.",
        "",
        "| space | config | params | transit pairs | step ms | time ratio | saved MB | saved ratio | "
        "peak RSS MB | step RSS MB | step RSS ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r["space"]: r for r in rows if r["config"] == "darts"}
    for r in rows:
        b = base.get(r["space"])
        lines.append(
            f"| {r['space']} | {r['config']} | {r['params']} | {r['pairs']} | {r['step_ms']:.1f} | "
            f"{_ratio(r['step_ms'], b['step_ms']) if b else '-'} | {r['saved_mb']:.2f} | "
            f"{_ratio(r['saved_mb'], b['saved_mb']) if b else '-'} | {r['peak_rss_mb']:.0f} | "
            f"{r['step_rss_mb']:.1f} | {_ratio(r['step_rss_mb'], b['step_rss_mb']) if b else '-'} |"
        )
    lines += [
        "",
        "Configurations:",
        "",
        "- `darts`: core DARTS supernet (softmax, every op of every edge);",
        "- `shared-all`: every cell an engine cell, feature sharing (sharing alone);",
        "- `entrannas`: first normal + first reduction cell engine, the rest transit (top-2), sharing;",
        "- `entrannas-ns`: as `entrannas` without feature sharing (transit cells alone);",
        "- `dst-init` / `dst-trained`: EnTranNAS-DST at initialisation (every pair survives the thresholds)",
        "  and with separated alpha (N(0, 1.5^2)), sparse executor.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="darts", help="comma-separated: darts, nb201")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated: {', '.join(CONFIGS)}")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--C", type=int, default=None, help="override the width")
    p.add_argument("--batch", type=int, default=None, help="override the batch size")
    p.add_argument("--hw", type=int, default=None, help="override the input size")
    p.add_argument("--out", default="bench/entrannas", help="output prefix (writes .json and .md)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        space, name = args.child.split(":")
        print(json.dumps(run_one(space, name, args)))
        return 0
    configs = [c for c in args.configs.split(",") if c]
    spaces = [s for s in args.spaces.split(",") if s]
    bad = [c for c in configs if c not in CONFIGS] + [s for s in spaces if s not in SIZES]
    if bad:
        p.error(
            f"unknown config(s)/space(s) {bad}; configs: {', '.join(CONFIGS)}; spaces: {', '.join(SIZES)}"
        )
    rows = []
    for space in spaces:
        for name in configs:
            cmd = [sys.executable, __file__, "--child", f"{space}:{name}", "--threads", str(args.threads)]
            cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            for flag in ("C", "batch", "hw"):
                if getattr(args, flag):
                    cmd += [f"--{flag}", str(getattr(args, flag))]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if res.returncode != 0:
                print(f"[{space}:{name}] failed:\n{res.stderr[-3000:]}", file=sys.stderr)
                return 1
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{space:6s} {name:13s} step {row['step_ms']:8.1f} ms  saved {row['saved_mb']:7.2f} MB  "
                f"peak {row['peak_rss_mb']:6.0f} MB  step-rss {row['step_rss_mb']:6.1f} MB  "
                f"pairs {row['pairs']}",
                flush=True,
            )
    import torch

    meta = {
        "threads": args.threads,
        "torch": torch.__version__,
        "steps": args.steps,
        "warmup": args.warmup,
        "sizes": {
            s: {**SIZES[s], **{k: getattr(args, k) for k in ("C", "batch", "hw") if getattr(args, k)}}
            for s in spaces
        },
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
