#!/usr/bin/env python
"""Benchmark the per-step cost of DrNAS' progressive stages against the full supernet.

For each space (``drnas_darts``, ``drnas_nb201``) three supernets are timed in one process:

- ``full``: partial-channel ratio K=1 with every op (a plain DrNAS/DARTS supernet);
- ``stage1``: the first stage of the official schedule (DARTS: K=6, 7 ops; NB201: K=4, 5 ops);
- ``stage2``: the second stage (DARTS: K=4, 4 ops; NB201: K=2, 3 ops), reached through a real transition of a
  :class:`~datanas_core.drnas.ProgressiveSearcher` (pruning by α, Net2Net widening, optimiser rebuild).

Two costs per supernet: ``step_ms``, one full ``Searcher.step`` (α step on a validation batch + w step on a
training batch, Dirichlet samples), and ``w_step_ms``, the weight step alone (what runs while α is frozen in
the first epochs of each stage). Measurements are interleaved (round robin over the configurations, the
median per round, then the median over rounds), so that load changes on a shared machine affect every
configuration alike; ratios are to ``full`` of the same space and run.

The default size is small enough for a 2-core CPU: DARTS space 5 cells, C=24 (K=6 needs widths divisible by
6: 24, 48, 96; C=16 is not), NB201 C=16 N=1, batch 16 on 32x32, one torch thread.

Example:
    python tools/bench_drnas.py --out bench/drnas            # writes bench/drnas.json and bench/drnas.md
    python tools/bench_drnas.py --quick --out /tmp/drnas     # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SPACES = {
    "darts": {
        "space": "drnas_darts",
        "stages": "1:6:7,1:4:4",
        "full": {"C": 24, "layers": 5},
        "quick": {"C": 12, "layers": 3},
        "rule": "topk_edges",
    },
    "nb201": {
        "space": "drnas_nb201",
        "stages": "1:4:5,1:2:3",
        "full": {"C": 16, "N": 1},
        "quick": {"C": 8, "N": 1},
        "rule": "argmax_edge",
    },
}


def _build(space_key: str, args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``[(name, searcher)]``: full, stage1, stage2 (after a real transition) for one space."""
    import torch

    import datanas_core as dc
    import datanas_core.drnas as drnas

    spec = SPACES[space_key]
    sizes = dict(spec["quick" if args.quick else "full"])
    if args.C is not None:
        sizes["C"] = args.C
    space = dc.get_space(spec["space"])

    class Task:
        def loss(self, model: Any, batch: Any, arch: Any) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(model(x, arch), y)

    cfg = dc.SearchConfig.preset("drnas", epochs=2, arch_warmup_epochs=0, rule=spec["rule"])
    stages = drnas.parse_stages(spec["stages"])
    full = drnas.ProgressiveSearcher(
        space, Task(), cfg, stages=[drnas.Stage(2, 1, None)], supernet_kwargs=sizes
    )
    prog = drnas.ProgressiveSearcher(space, Task(), cfg, stages=stages, supernet_kwargs=sizes)
    stage1 = drnas.ProgressiveSearcher(space, Task(), cfg, stages=stages, supernet_kwargs=sizes)
    with torch.no_grad():  # a non-uniform α, so that the pruning is by rank and not by tie-break
        g = torch.Generator().manual_seed(0)
        for p in prog.distribution.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    prog.epoch = 1
    prog.sync_stage()
    return [("full", full), ("stage1", stage1), ("stage2", prog)]


def _params(searcher: Any) -> int:
    return sum(p.numel() for p in searcher.supernet.parameters())


def _macs(searcher: Any, x: Any) -> int:
    """Multiply-adds of one supernet forward pass with every kept op running (Dirichlet mean weights)."""
    from datanas_core.space.networks import count_macs

    return int(count_macs(searcher.supernet, x, searcher.distribution.mode()))


def _time(fn: Callable[[], Any], reps: int) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    hw = 16 if args.quick else args.hw
    batch = 4 if args.quick else args.batch
    g = torch.Generator().manual_seed(0)

    def make(num_classes: int = 10) -> tuple[Any, Any]:
        return torch.randn(batch, 3, hw, hw, generator=g), torch.randint(
            0, num_classes, (batch,), generator=g
        )

    train, val = make(), make()
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    started = time.time()
    for key in args.spaces:
        built = _build(key, args)
        for _, s in built:  # warm-up (allocator, first-call overheads)
            for _ in range(args.warmup):
                s.step(train, val)
        samples: dict[str, dict[str, list[float]]] = {n: {"step": [], "w_step": []} for n, _ in built}
        for _ in range(args.rounds):
            for name, s in built:
                samples[name]["step"].append(_time(lambda s=s: s.step(train, val), args.steps))
                samples[name]["w_step"].append(_time(lambda s=s: s._weight_step(train), args.steps))
        base: dict[str, float] = {}
        for name, s in built:
            step = statistics.median(samples[name]["step"])
            w_step = statistics.median(samples[name]["w_step"])
            macs = _macs(s, train[0])
            if name == "full":
                base = {"step": step, "w_step": w_step, "macs": macs}
            kept = {
                ct: int(m.sum(-1).max())
                for ct, m in (s.transitions[-1]["masks"].items() if s.transitions else [])
            }
            rows.append(
                {
                    "space": SPACES[key]["space"],
                    "config": name,
                    "K": s.partial_channels,
                    "ops_per_edge": max(kept.values())
                    if kept
                    else len(next(iter(s.space.cells().values())).ops),
                    "supernet_params": _params(s),
                    "forward_macs": macs,
                    "macs_ratio_to_full": macs / base["macs"],
                    "step_ms": 1e3 * step,
                    "w_step_ms": 1e3 * w_step,
                    "step_ratio_to_full": step / base["step"],
                    "w_step_ratio_to_full": w_step / base["w_step"],
                    "step_ms_rounds": [round(1e3 * v, 2) for v in samples[name]["step"]],
                }
            )
        del built
    meta = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "batch": batch,
        "input": [3, hw, hw],
        "sizes": {
            k: SPACES[k]["quick" if args.quick else "full"] | ({"C": args.C} if args.C else {})
            for k in args.spaces
        },
        "stages": {k: SPACES[k]["stages"] for k in args.spaces},
        "warmup": args.warmup,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "wall_s": time.time() - started,
    }
    return {"meta": meta, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    meta, rows = result["meta"], result["rows"]
    lines = [
        "# DrNAS progressive stages: per-step cost",
        "",
        f"torch {meta['torch']}, {meta['threads']} thread(s), batch {meta['batch']}, input "
        f"{'x'.join(map(str, meta['input']))}, {meta['rounds']} rounds x {meta['steps_per_round']} steps "
        f"(median of round medians); load average {meta['loadavg_before'][0]:.1f} -> "
        f"{meta['loadavg_after'][0]:.1f} on {meta['cpu_count']} CPUs.",
        "",
        "| space | config | K | ops/edge | supernet params | forward MMACs | MACs / full | step (ms) "
        "| w step (ms) | step / full | w step / full |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['space']} | {r['config']} | {r['K']} | {r['ops_per_edge']} | {r['supernet_params']:,} | "
            f"{r['forward_macs'] / 1e6:.1f} | {r['macs_ratio_to_full']:.2f} | {r['step_ms']:.1f} | "
            f"{r['w_step_ms']:.1f} | {r['step_ratio_to_full']:.2f} | "
            f"{r['w_step_ratio_to_full']:.2f} |"
        )
    lines += [
        "",
        "step = α step (validation batch) + w step (training batch); w step = the weight step alone "
        "(α frozen in the first epochs of each stage); forward MACs: one supernet forward pass of the "
        "batch with every kept op running (load-independent). Sizes: "
        + "; ".join(f"{k}: {v}, stages {meta['stages'][k]}" for k, v in meta["sizes"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", nargs="+", choices=sorted(SPACES), default=["darts", "nb201"])
    p.add_argument("--C", type=int, default=None, help="override the supernet width")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hw", type=int, default=32, help="input height and width")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed steps per configuration and round")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False, help="tiny smoke run")
    p.add_argument("--out", type=Path, default=Path("bench/drnas"), help="output prefix (.json and .md)")
    args = p.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
