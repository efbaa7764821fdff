#!/usr/bin/env python
"""Benchmark one search step per estimator x executor x space against a fixed floor (issue 17).

A *step* is what ``Searcher.step`` does: an architecture step on a validation batch plus a weight step on a
training batch (first order). The **floor** is the derived network of a fixed reference cell at the same size
doing the same amount of work: two forward+backward+SGD passes (NB201: every edge ``nor_conv_3x3``, the
costliest op; DARTS space: the DARTS-V2 cell). ``ratio`` = median step time / median floor time.

Every configuration runs in its own subprocess (so its peak RSS is its own) and the configurations are
**interleaved**: ``--rounds`` rounds, each running every configuration (floor included) for ``--warmup``
warm-up steps and ``--steps`` timed steps, so a change of machine load hits them alike. Reported per
configuration: median / min / max of the wall and CPU (process) time of all timed steps, and the peak RSS
over its subprocesses. One torch thread by default; the load average is recorded at start and end.

Configurations: ``softmax``, ``dirichlet``, ``snas`` (dense, exact executor), ``egs-M2`` / ``egs-M4``
(DATA's EGS, exact executor: zero-weight ops run forward-only), ``egs-M2-plain`` / ``softmax-plain`` (the
same on the plain reference path: every op in the autograd graph, plain products and sums, no shared ReLU;
the fast pools are used by both), ``softmax-ckpt`` (``checkpoint_cells=True``), ``egs-M2-sparse``, ``gdas``
(sparse executor), ``floor``.

Example (the issue's sizes, both spaces, JSON + Markdown into docs/bench/):
    python tools/bench_search.py --out docs/bench/search_floor
    python tools/bench_search.py --quick --out /tmp/bench_quick      # smoke run, tiny sizes
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
from pathlib import Path
from typing import Any

#: name -> (estimator, options, executor, plain reference path)
CONFIGS: dict[str, tuple[str, dict[str, Any], str, bool]] = {
    "floor": ("", {}, "", False),
    "softmax": ("softmax", {}, "exact", False),
    "softmax-plain": ("softmax", {}, "exact", True),
    "softmax-ckpt": ("softmax", {}, "exact", False),
    "dirichlet": ("dirichlet", {}, "exact", False),
    "snas": ("snas", {}, "exact", False),
    "egs-M2": ("egs", {"samples": 2}, "exact", False),
    "egs-M4": ("egs", {"samples": 4}, "exact", False),
    "egs-M2-plain": ("egs", {"samples": 2}, "exact", True),
    "egs-M2-sparse": ("egs", {"samples": 2}, "sparse", False),
    "gdas": ("gdas", {}, "sparse", False),
}
DEFAULT_CONFIGS = "floor,softmax,egs-M2,egs-M4,egs-M2-plain,gdas"

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


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _floor_net(space_name: str, size: dict[str, Any]) -> Any:
    from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
    from datanas_core.published import load_published
    from datanas_core.space.base import SPACES

    space = SPACES.build(space_name)
    if space_name == "nb201":
        edges = tuple(EdgeChoice(s, d, "nor_conv_3x3") for d in range(1, 4) for s in range(d))
        geno = Genotype("nb201", {"cell": CellGenotype(edges, (3,))})
        return space.build_derived(geno, C=size["C"], N=size["N"], num_classes=10)
    return space.build_derived(load_published("DARTS_V2"), C=size["C"], layers=size["layers"], num_classes=10)


def run_child(space_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    size = SIZES[space_name]["quick" if args.quick else "full"]
    g = torch.Generator().manual_seed(0)
    hw, bs = size["hw"], args.batch or size["batch"]

    def batch() -> tuple[Any, Any]:
        x = torch.randn(bs, 3, hw, hw, generator=g).to(device)
        y = torch.randint(0, 10, (bs,), generator=g).to(device)
        return x, y

    train, val = batch(), batch()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    estimator, options, executor, plain = CONFIGS[name]
    if name == "floor":
        net = _floor_net(space_name, size).to(device)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

        def step() -> None:
            for xb, yb in (val, train):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(xb), yb).backward()
                opt.step()

    else:
        from datanas_core.search import SearchConfig, Searcher
        from datanas_core.space.base import SPACES

        space = SPACES.build(space_name)
        if space_name == "nb201":
            supernet_kwargs = {"C": size["C"], "N": size["N"], "num_classes": 10}
        else:
            supernet_kwargs = {"C": size["C"], "layers": size["layers"], "num_classes": 10}
        if name.endswith("-ckpt"):
            supernet_kwargs["checkpoint_cells"] = True

        class Task:
            def loss(self, model: Any, b: Any, arch: Any) -> Any:
                x, y = b
                return F.cross_entropy(model(x, arch.plain_exact() if plain else arch), y)

        cfg = SearchConfig(
            epochs=1,
            estimator=estimator,
            estimator_options=options,
            executor=executor,
            regularizers=({"type": "adc", "weight": 0.1},) if estimator == "egs" else (),
        )
        searcher = Searcher(space, Task(), cfg, supernet_kwargs=supernet_kwargs, device=device)

        def step() -> None:
            searcher.step(train, val)

    for _ in range(args.warmup):
        step()
    wall, cpu = [], []
    for _ in range(args.steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb()
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak}


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(1000 * statistics.median(xs), 1),
        "min_ms": round(1000 * min(xs), 1),
        "max_ms": round(1000 * max(xs), 1),
    }


def _markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# Search step vs the fixed floor",
        "",
        f"`{meta['command']}`",
        "",
        f"device `{meta['device']}`, torch {meta['torch']} with {meta['threads']} thread(s), "
        f"{meta['cpus']} CPUs, {meta['rounds']} interleaved round(s) x {meta['steps']} timed steps "
        f"(+{meta['warmup']} warm-up per round) per configuration; load average at start "
        f"{meta['loadavg_start']}, at end {meta['loadavg_end']} (the machine is shared: compare ratios, "
        "which come from one interleaved run).",
        "",
        "Floor = the derived network of a fixed reference cell at the same size (NB201: all `nor_conv_3x3`; "
        "DARTS space: DARTS-V2), two forward+backward+SGD passes. A step = architecture step + weight "
        "step (first order). Ratios use median wall times; RSS ratio = peak RSS / floor's peak RSS.",
        "",
        "| space | batch | config | wall median ms | min | max | CPU median ms | ratio to floor | CPU ratio | "
        "peak RSS MB | RSS / floor |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['space']} | {r['batch']} | {r['config']} | {r['wall']['median_ms']:.0f} | "
            f"{r['wall']['min_ms']:.0f} | {r['wall']['max_ms']:.0f} | {r['cpu']['median_ms']:.0f} | "
            f"{r['ratio']:.2f} | {r['cpu_ratio']:.2f} | {r['peak_mb']:.0f} | {r['rss_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--spaces", default="nb201,darts")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"any of {', '.join(CONFIGS)}")
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default: the space's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each config once per round)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round")
    p.add_argument("--warmup", type=int, default=1, help="warm-up steps per configuration and round")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default="docs/bench/search_floor", help="output prefix (.json and .md)")
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        space_name, cname = args._child.split(":")
        print(json.dumps(run_child(space_name, cname, args)))
        return 0
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}; valid: {', '.join(CONFIGS)}")
    if "floor" not in configs:
        configs.insert(0, "floor")
    jobs = []
    for space_name in args.spaces.split(","):
        default_bs = SIZES[space_name]["quick" if args.quick else "full"]["batch"]
        for bs in [int(b) for b in args.batches.split(",") if b] or [default_bs]:
            jobs.append((space_name, bs))
    load_start = [round(v, 2) for v in os.getloadavg()]
    collected: dict[tuple[str, int, str], dict[str, Any]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for space_name, bs in jobs:
        for rnd in range(args.rounds):
            for cname in configs:
                cmd = [
                    sys.executable,
                    __file__,
                    f"--_child={space_name}:{cname}",
                    f"--threads={args.threads}",
                    f"--steps={args.steps}",
                    f"--warmup={args.warmup}",
                    f"--device={args.device}",
                    f"--batch={bs}",
                ]
                if args.quick:
                    cmd.append("--quick")
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if res.returncode != 0:
                    print(f"[{space_name}:{cname}] failed:\n{res.stderr[-3000:]}", file=sys.stderr)
                    return 1
                out = json.loads(res.stdout.strip().splitlines()[-1])
                acc = collected.setdefault(
                    (space_name, bs, cname), {"wall_s": [], "cpu_s": [], "peak_mb": 0.0}
                )
                acc["wall_s"] += out["wall_s"]
                acc["cpu_s"] += out["cpu_s"]
                acc["peak_mb"] = max(acc["peak_mb"], out["peak_mb"])
                print(
                    f"round {rnd} {space_name:6s} b{bs:<4d} {cname:14s} median "
                    f"{1000 * statistics.median(out['wall_s']):9.0f} ms  peak {out['peak_mb']:6.0f} MB  "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    rows = []
    for space_name, bs in jobs:
        floor = collected[(space_name, bs, "floor")]
        f_wall, f_cpu = statistics.median(floor["wall_s"]), statistics.median(floor["cpu_s"])
        for cname in configs:
            c = collected[(space_name, bs, cname)]
            est, opts, ex, plain = CONFIGS[cname]
            rows.append(
                {
                    "space": space_name,
                    "batch": bs,
                    "config": cname,
                    "estimator": est or None,
                    "options": opts,
                    "executor": (ex + ("-plain" if plain else "")) or None,
                    "n_steps": len(c["wall_s"]),
                    "wall": _stats(c["wall_s"]),
                    "cpu": _stats(c["cpu_s"]),
                    "ratio": round(statistics.median(c["wall_s"]) / f_wall, 3),
                    "cpu_ratio": round(statistics.median(c["cpu_s"]) / f_cpu, 3),
                    "peak_mb": round(c["peak_mb"], 1),
                    "rss_ratio": round(c["peak_mb"] / floor["peak_mb"], 3),
                    "wall_s": [round(v, 4) for v in c["wall_s"]],
                }
            )
    import torch

    meta = {
        "command": "python tools/bench_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "loadavg_start": load_start,
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "sizes": {s: SIZES[s]["quick" if args.quick else "full"] for s in args.spaces.split(",")},
    }
    result = {"meta": meta, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
