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

GPU options: ``--device cuda``, ``--precision fp32,bf16`` (bf16: ``SearchConfig.precision``, autocast around the
forward and loss) and ``--compile off,reduce-overhead`` (``SearchConfig.compile``); each comma list is crossed
into *variants*, and the floor runs under the same precision and compile mode as the search it is compared
with. Each record names its device, precision, compile mode and the compile mode that actually ran
(``compile_used``; eager for executor/estimator pairs the searcher does not compile, with the reason). On CUDA
one subprocess runs every variant of a configuration (peak memory is measured per variant), sparing a CUDA
start-up per variant. ``--keep-going`` records a failing or timed-out configuration (``error``) and goes on;
``--child-timeout`` and ``--deadline`` bound a configuration's subprocess and the whole run (what is left
after the deadline is recorded as skipped). ``tools/device_bench_gpu.sh`` is the prepared GPU run.

Example (the issue's sizes, both spaces, JSON + Markdown into docs/bench/):
    python tools/bench_search.py --out docs/bench/search_floor
    python tools/bench_search.py --quick --out /tmp/bench_quick      # smoke run, tiny sizes
    python tools/bench_search.py --device cuda --precision fp32,bf16 --compile off,reduce-overhead --keep-going
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
    # the same floor network and batches in channels-last layout (what the NB201 and DARTS supernets use on
    # CPU): a stricter reference than ``floor``; ratios are still reported against ``floor``
    "floor-cl": ("", {}, "", False),
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
PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")

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


def _variants(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(precision, compile) pairs: the cross product of ``--precision`` and ``--compile``."""
    return [(p, c) for p in args.precision.split(",") for c in args.compile.split(",")]


def run_child_variants(space_name: str, name: str, args: argparse.Namespace) -> None:
    """Run every variant of ``--_variants`` and print one JSON line per variant as it finishes (a parent that
    times the child out still gets the finished ones); a failing variant prints its error and the next runs."""
    for variant in args._variants.split(","):
        precision, compile_mode = variant.split(":")
        try:
            out = run_child(space_name, name, args, precision=precision, compile_mode=compile_mode)
        except Exception as exc:  # noqa: BLE001 - recorded by the parent (--keep-going)
            out = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        print(json.dumps({"variant": variant, **out}), flush=True)


def run_child(
    space_name: str,
    name: str,
    args: argparse.Namespace,
    *,
    precision: str = "fp32",
    compile_mode: str = "off",
) -> dict[str, Any]:
    import contextlib

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    compile_used, fallback = compile_mode, None
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
    if name in ("floor", "floor-cl"):
        net = _floor_net(space_name, size).to(device)
        if name == "floor-cl":
            net = net.to(memory_format=torch.channels_last)
            train, val = ((x.contiguous(memory_format=torch.channels_last), y) for x, y in (train, val))
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        fwd = net if compile_mode == "off" else torch.compile(net, mode=compile_mode)

        def autocast() -> Any:
            if precision == "bf16":
                return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def step() -> None:
            for xb, yb in (val, train):
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = F.cross_entropy(fwd(xb), yb)
                loss.backward()
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
            precision=precision,
            compile=compile_mode,
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
    if not name.startswith("floor"):
        compile_used, fallback = searcher.execution["compile_used"], searcher.execution["compile_fallback"]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb()
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak, "compile_used": compile_used, "fallback": fallback}


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(1000 * statistics.median(xs), 1),
        "min_ms": round(1000 * min(xs), 1),
        "max_ms": round(1000 * max(xs), 1),
    }


def _markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    variants = len(meta.get("variants", [])) > 1 or meta.get("variants", [["fp32", "off"]])[0] != [
        "fp32",
        "off",
    ]
    lines = [
        "# Search step vs the fixed floor",
        "",
        f"`{meta['command']}`",
        "",
        f"device `{meta['device']}`"
        + (f" ({meta['device_name']})" if meta.get("device_name") else "")
        + f", torch {meta['torch']} with {meta['threads']} thread(s), "
        f"{meta['cpus']} CPUs, {meta['rounds']} interleaved round(s) x {meta['steps']} timed steps "
        f"(+{meta['warmup']} warm-up per round) per configuration; load average at start "
        f"{meta['loadavg_start']}, at end {meta['loadavg_end']} (the machine is shared: compare ratios, "
        "which come from one interleaved run).",
        "",
        "Floor = the derived network of a fixed reference cell at the same size (NB201: all `nor_conv_3x3`; "
        "DARTS space: DARTS-V2), two forward+backward+SGD passes. A step = architecture step + weight "
        "step (first order). Ratios use median wall times; RSS ratio = peak RSS / floor's peak RSS.",
    ]
    if variants:
        lines += [
            "",
            "Precision / compile: the search's `SearchConfig.precision` and `.compile` (the floor runs under the "
            "same autocast and `torch.compile` mode); `compile used` is what ran (`off`: eager, with the "
            "searcher's reason below the table). Peak memory on CUDA is `torch.cuda.max_memory_allocated` "
            "(the RSS columns then compare GPU memory).",
        ]
    lines += [
        "",
        "| space | batch | config | "
        + ("precision | compile | compile used | " if variants else "")
        + "wall median ms | min | max | CPU median ms | ratio to floor | CPU ratio | peak RSS MB | RSS / floor |",
        "|---|---:|---|" + ("---|---|---|" if variants else "") + "---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: dict[str, str] = {}

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in result["rows"]:
        cells = [r["space"], str(r["batch"]), r["config"]]
        if variants:
            cells += [r.get("precision", "fp32"), r.get("compile", "off"), str(r.get("compile_used") or "-")]
        if r.get("error"):
            cells += [f"error: {r['error'][:120]}"] + ["-"] * 7
        else:
            cells += [
                _ms(r["wall"]["median_ms"]),
                _ms(r["wall"]["min_ms"]),
                _ms(r["wall"]["max_ms"]),
                _ms(r["cpu"]["median_ms"]),
                num(r["ratio"], ".2f"),
                num(r["cpu_ratio"], ".2f"),
                f"{r['peak_mb']:.0f}",
                num(r["rss_ratio"], ".2f"),
            ]
        if r.get("compile_fallback"):
            notes[r["config"]] = r["compile_fallback"]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Compile fallbacks (these ran eagerly):", ""]
        lines += [f"- `{c}`: {why}" for c, why in notes.items()]
    return "\n".join(lines) + "\n"


def _ms(v: float) -> str:
    """Milliseconds as the CPU tables print them (whole numbers), with a decimal below 10 ms (GPU steps)."""
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _run_child(
    cmd: list[str], env: dict[str, str], timeout: float | None
) -> tuple[list[dict[str, Any]], str]:
    """Run one child; its JSON lines (one per finished variant) and, on failure or timeout, the reason."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=timeout)
        stdout, err = (
            res.stdout,
            "" if res.returncode == 0 else f"exit {res.returncode}: {res.stderr[-3000:]}",
        )
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        stdout = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        err = f"timed out after {timeout:.0f} s"
    lines = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines, err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--spaces", default="nb201,darts")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"any of {', '.join(CONFIGS)}")
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default: the space's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each config once per round)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round")
    p.add_argument("--warmup", type=int, default=1, help="warm-up steps per configuration and round")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument(
        "--precision",
        default="fp32",
        help=f"comma-separated precisions of the search ({', '.join(PRECISIONS)})",
    )
    p.add_argument(
        "--compile",
        default="off",
        help=f"comma-separated torch.compile modes of the supernet forward ({', '.join(COMPILE_MODES)})",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="record a failing configuration's error and go on (default: stop at the first failure)",
    )
    p.add_argument("--child-timeout", type=float, default=0, help="seconds per subprocess (0: none)")
    p.add_argument("--deadline", type=float, default=0, help="seconds for the whole run; the rest is skipped")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default="docs/bench/search_floor", help="output prefix (.json and .md)")
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_variants", default="fp32:off", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        space_name, cname = args._child.split(":")
        run_child_variants(space_name, cname, args)
        return 0
    t_start = time.perf_counter()
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}; valid: {', '.join(CONFIGS)}")
    bad = [v for v in args.precision.split(",") if v not in PRECISIONS] + [
        v for v in args.compile.split(",") if v not in COMPILE_MODES
    ]
    if bad:
        p.error(f"unknown precision/compile value(s) {bad}; valid: {PRECISIONS} and {COMPILE_MODES}")
    if "floor" not in configs:
        configs.insert(0, "floor")
    variants = _variants(args)
    # on CUDA one child runs every variant (a CUDA start-up per child); on the CPU one child per variant, so
    # each peak RSS is its own
    groups = [variants] if args.device.startswith("cuda") else [[v] for v in variants]
    jobs = []
    for space_name in args.spaces.split(","):
        default_bs = SIZES[space_name]["quick" if args.quick else "full"]["batch"]
        for bs in [int(b) for b in args.batches.split(",") if b] or [default_bs]:
            jobs.append((space_name, bs))
    load_start = [round(v, 2) for v in os.getloadavg()]
    collected: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for space_name, bs in jobs:
        for rnd in range(args.rounds):
            for cname in configs:
                for group in groups:
                    keys = [f"{prec}:{comp}" for prec, comp in group]
                    if args.deadline and time.perf_counter() - t_start > args.deadline:
                        for key in keys:
                            acc = collected.setdefault(
                                (space_name, bs, cname, key), {"wall_s": [], "cpu_s": []}
                            )
                            acc.setdefault(
                                "error", f"skipped: the --deadline of {args.deadline:.0f} s had passed"
                            )
                        continue
                    cmd = [
                        sys.executable,
                        __file__,
                        f"--_child={space_name}:{cname}",
                        f"--_variants={','.join(keys)}",
                        f"--threads={args.threads}",
                        f"--steps={args.steps}",
                        f"--warmup={args.warmup}",
                        f"--device={args.device}",
                        f"--batch={bs}",
                    ]
                    if args.quick:
                        cmd.append("--quick")
                    timeout = args.child_timeout or None
                    if args.deadline:
                        left = max(1.0, args.deadline - (time.perf_counter() - t_start))
                        timeout = min(timeout or left, left)
                    outs, err = _run_child(cmd, env, timeout)
                    by_key = {o.get("variant"): o for o in outs}
                    for key in keys:
                        out = by_key.get(key) or {"error": err or "no result"}
                        acc = collected.setdefault(
                            (space_name, bs, cname, key), {"wall_s": [], "cpu_s": [], "peak_mb": 0.0}
                        )
                        if "error" in out:
                            print(f"[{space_name}:{cname} {key}] failed: {out['error']}", file=sys.stderr)
                            if not args.keep_going:
                                return 1
                            acc.setdefault("error", out["error"])
                            continue
                        acc["wall_s"] += out["wall_s"]
                        acc["cpu_s"] += out["cpu_s"]
                        acc["peak_mb"] = max(acc.get("peak_mb", 0.0), out["peak_mb"])
                        acc["compile_used"], acc["compile_fallback"] = (
                            out.get("compile_used"),
                            out.get("fallback"),
                        )
                        print(
                            f"round {rnd} {space_name:6s} b{bs:<4d} {cname:14s} {key:20s} median "
                            f"{1000 * statistics.median(out['wall_s']):9.1f} ms  peak {out['peak_mb']:6.0f} MB  "
                            f"load {os.getloadavg()[0]:.2f}  t={time.perf_counter() - t_start:.0f}s",
                            flush=True,
                        )
    rows = []
    for space_name, bs in jobs:
        for prec, comp in variants:
            key = f"{prec}:{comp}"
            floor = collected.get((space_name, bs, "floor", key), {})
            ok_floor = bool(floor.get("wall_s")) and not floor.get("error")
            f_wall = statistics.median(floor["wall_s"]) if ok_floor else None
            f_cpu = statistics.median(floor["cpu_s"]) if ok_floor else None
            for cname in configs:
                c = collected.get((space_name, bs, cname, key), {"error": "not run"})
                est, opts, ex, plain = CONFIGS[cname]
                row: dict[str, Any] = {
                    "space": space_name,
                    "batch": bs,
                    "config": cname,
                    "estimator": est or None,
                    "options": opts,
                    "executor": (ex + ("-plain" if plain else "")) or None,
                    "device": args.device,
                    "precision": prec,
                    "compile": comp,
                }
                if c.get("error") or not c.get("wall_s"):
                    row["error"] = c.get("error") or "no timed steps"
                    rows.append(row)
                    continue
                wall_med, cpu_med = statistics.median(c["wall_s"]), statistics.median(c["cpu_s"])
                row.update(
                    {
                        "compile_used": c.get("compile_used"),
                        "compile_fallback": c.get("compile_fallback"),
                        "n_steps": len(c["wall_s"]),
                        "wall": _stats(c["wall_s"]),
                        "cpu": _stats(c["cpu_s"]),
                        "ratio": round(wall_med / f_wall, 3) if f_wall else None,
                        "cpu_ratio": round(cpu_med / f_cpu, 3) if f_cpu else None,
                        "peak_mb": round(c["peak_mb"], 1),
                        "rss_ratio": round(c["peak_mb"] / floor["peak_mb"], 3)
                        if ok_floor and floor["peak_mb"]
                        else None,
                        "wall_s": [round(v, 4) for v in c["wall_s"]],
                    }
                )
                rows.append(row)
    import torch

    device_name = None
    if args.device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(args.device))
    meta = {
        "command": "python tools/bench_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device,
        "device_name": device_name,
        "variants": [list(v) for v in variants],
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
        "elapsed_s": round(time.perf_counter() - t_start, 1),
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
