#!/usr/bin/env bash
# Issue 17 item 3: the search step time per batch on a GPU, beside the CPU figures of docs/bench/.
#
# Run from the repository root on the GPU machine (one call of the device tool, e.g.
#   run(command="bash tools/device_bench_gpu.sh", timeout_s=560)):
# no internet and no virtual environment are needed there: datanas_core needs only torch, which the machine's
# python3 has, and is imported from packages/datanas-core/src.
#
# Measures tools/bench_search.py's step (architecture step + weight step, first order) and its floor for
#   NB201 (C=16, N=5) at batch 64 and 96, the DARTS space (8 cells, C=16) at batch 32;
#   softmax, exact EGS M=2 / M=4, GDAS (sparse);
#   each in fp32 eager, bf16 eager, fp32 + torch.compile reduce-overhead, bf16 + reduce-overhead.
# The searcher runs EGS and GDAS eagerly under compile (data-dependent control flow; the records say so in
# compile_used / compile_fallback); their floors are compiled.
# Order: every eager measurement first (cheap, always finishes), then the compiled ones (NB201 b64, DARTS b32,
# NB201 b96) while the time budget lasts; a configuration that fails or times out is recorded with its error
# and the script goes on; what the budget does not reach is recorded as skipped.
#
# Writes under $OUT (default /tmp/gpu_bench): gpu_bench.json (every record, with device, precision, compile mode
# and the mode that ran), gpu_bench.md (a step-ms-per-batch summary, then each part's full table) and
# gpu_bench.log (everything printed). Three files: the device tool returns at most eight.
#
# Environment: BUDGET (seconds for everything, default 450: under 8 minutes with start-up), DEVICE (default
# cuda), COMPILE_MODE (default reduce-overhead), STEPS / WARMUP (default 10 / 3), PY (default: .venv/bin/python
# if it imports torch, else python3), QUICK=1 (tiny sizes: a dry run of this script's path, e.g. on the CPU:
#   QUICK=1 DEVICE=cpu COMPILE_MODE=default BUDGET=150 OUT=/tmp/gpu_dry bash tools/device_bench_gpu.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_bench}
mkdir -p "$OUT"
LOG="$OUT/gpu_bench.log"
: >"$LOG"
PARTS=$(mktemp -d)
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/packages/datanas-core/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-450}
COMPILE_MODE=${COMPILE_MODE:-reduce-overhead}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
CONFIGS=floor,softmax,egs-M2,egs-M4,gdas
START=$(date +%s)
if [ "${QUICK:-0}" = 1 ]; then
    SIZE=(--quick)
    NB_BATCHES=(8 12)
    DARTS_BATCH=4
else
    SIZE=()
    NB_BATCHES=(64 96)
    DARTS_BATCH=32
fi

log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }

log "python: $PY; device: $DEVICE; budget ${BUDGET}s; compile mode $COMPILE_MODE; steps $STEPS (+$WARMUP warm-up)"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true; } | tee -a "$LOG"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

# bench NAME SPACE BATCHES COMPILE SECONDS: one bench_search.py run into $PARTS/NAME.{json,md}
bench() {
    local name=$1 space=$2 batches=$3 compile=$4 secs=$5
    if [ "$secs" -lt 20 ]; then
        log "skip $name: ${secs}s left"
        return 0
    fi
    log "start $name ($space, batch $batches, compile $compile, deadline ${secs}s)"
    timeout -k 10 $((secs + 30)) "$PY" tools/bench_search.py --device "$DEVICE" --spaces "$space" \
        --batches "$batches" --configs "$CONFIGS" --precision fp32,bf16 --compile "$compile" \
        --rounds 1 --steps "$STEPS" --warmup "$WARMUP" --keep-going --child-timeout 180 --deadline "$secs" \
        "${SIZE[@]}" --out "$PARTS/$name" 2>&1 | tee -a "$LOG"
    log "end $name (exit ${PIPESTATUS[0]})"
}

NB_ALL=$(IFS=,; echo "${NB_BATCHES[*]}")
# eager: about a third of the budget, NB201 first
bench eager_nb201 nb201 "$NB_ALL" off $(($(left) * 2 / 9))
bench eager_darts darts "$DARTS_BATCH" off $(($(left) / 6))
# compiled: NB201 b64, then DARTS, then NB201 b96, each with a share of what is left
bench compile_nb201_b${NB_BATCHES[0]} nb201 "${NB_BATCHES[0]}" "$COMPILE_MODE" $(($(left) * 2 / 5 - 10))
bench compile_darts darts "$DARTS_BATCH" "$COMPILE_MODE" $(($(left) * 2 / 3 - 10))
bench compile_nb201_b${NB_BATCHES[1]} nb201 "${NB_BATCHES[1]}" "$COMPILE_MODE" $(($(left) - 15))

log "merging into $OUT/gpu_bench.json and $OUT/gpu_bench.md"
"$PY" - "$PARTS" "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json
import sys
from pathlib import Path

parts, out = Path(sys.argv[1]), Path(sys.argv[2])
order = ["eager_nb201", "eager_darts", "compile_nb201", "compile_darts"]
files = sorted(parts.glob("*.json"), key=lambda p: (next((i for i, o in enumerate(order) if p.stem.startswith(o)), 9), p.stem))
merged = {"parts": {}, "rows": []}
for f in files:
    doc = json.loads(f.read_text())
    merged["parts"][f.stem] = doc["meta"]
    merged["rows"] += [{"part": f.stem, **r} for r in doc["rows"]]
(out / "gpu_bench.json").write_text(json.dumps(merged, indent=2) + "\n")
variants = [("fp32", "off"), ("bf16", "off")]
variants += sorted({(r["precision"], r["compile"]) for r in merged["rows"] if r["compile"] != "off"}, key=lambda v: v[0] != "fp32")
cells = {}
keys = []
for r in merged["rows"]:
    k = (r["space"], r["batch"], r["config"])
    if k not in keys:
        keys.append(k)
    if r.get("error"):
        v = "error" if not str(r["error"]).startswith("skipped") else "skipped"
    else:
        v = f"{r['wall']['median_ms']:.1f}"
        if r["compile"] != "off" and r.get("compile_used") != r["compile"]:
            v += " (eager)"
    cells[(k, (r["precision"], r["compile"]))] = v
meta = next(iter(merged["parts"].values()), {})
lines = [
    "# Search step time per batch on the GPU",
    "",
    f"device `{meta.get('device')}` ({meta.get('device_name')}), torch {meta.get('torch')}; median wall ms of one "
    "search step (architecture step + weight step, first order; floor: the fixed reference network, two passes) "
    "per batch; `(eager)`: the searcher did not compile this pair (see compile_fallback in gpu_bench.json).",
    "",
    "| space | batch | config | " + " | ".join(f"{p} {'eager' if c == 'off' else c}" for p, c in variants) + " |",
    "|---|---:|---|" + "---:|" * len(variants),
]
for k in keys:
    lines.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(cells.get((k, v), "-") for v in variants) + " |")
for f in files:
    lines += ["", f"## {f.stem}", "", f.with_suffix(".md").read_text().split("\n", 1)[1].strip()]
(out / "gpu_bench.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[: 6 + len(keys)]))
EOF
rm -rf "$PARTS"
log "done"
