"""Per-run reports (``report.html``, self-contained, and ``report.md`` with SVG files in ``figures/``).

Contents: run status and reproducibility manifest; a picture (SVG + Graphviz DOT) of every derived cell
type; parameters/FLOPs of the derived network; learning curves; the search/child consistency gap; collapse
indicators; the benchmark accuracy of the derived cell per epoch (benchmark mode); the evolution of the
architecture probabilities (heatmaps); how the derived genotype changed over the epochs; the multi-seed
summary when the directory holds several seeds. Everything is built from the files of the run directory, so
``python -m datanas_core.report RUN_DIR`` works on finished, running or crashed runs.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.runtime._fs import atomic_write
from datanas_core.runtime._jsonutil import is_number, to_jsonable
from datanas_core.runtime.cellplot import cell_to_dot, cell_to_svg
from datanas_core.runtime.charts import line_chart
from datanas_core.runtime.rundir import RunDir
from datanas_core.runtime.svg import heatmap_svg

__all__ = [
    "RunData",
    "append_result",
    "build_multiseed_report",
    "build_report",
    "find_run_dir",
    "load_run",
    "record_retraining",
    "run_warnings",
]

logger = logging.getLogger(__name__)

_BOOKKEEPING = {"epoch", "step", "time", "world_size", "dist_alpha_max_diff", "batch", "kind"}


@dataclass
class RunData:
    """Everything a report reads from a run directory."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    genotype: Genotype | None = None
    epoch_genotypes: dict[int, Genotype] = field(default_factory=dict)

    @property
    def num_inputs(self) -> dict[str, int]:
        return {
            ct: int(c["num_inputs"]) for ct, c in self.space.get("cells", {}).items() if "num_inputs" in c
        }


def load_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read a run directory.

    Raises:
        ConfigError: ``run_dir`` is not a run directory (no config.json and no metrics.jsonl).
    """
    rd = RunDir(run_dir, enabled=False)
    if not rd.path.is_dir() or not (rd.exists() or rd.metrics_path.is_file()):
        raise ConfigError(f"{str(rd.path)!r} is not a run directory (no config.json or metrics.jsonl)")
    data = RunData(path=rd.path)
    try:
        data.config = rd.read_config()
    except ConfigError:
        data.config = {}
    data.manifest = rd.read_manifest()
    data.summary = rd.read_summary()
    sp = rd.path / "space.json"
    if sp.is_file():
        data.space = json.loads(sp.read_text(encoding="utf-8"))
    recs = rd.read_metrics()
    # keep the last record per epoch / step (a resumed run may repeat some)
    by_epoch: dict[int, dict[str, Any]] = {}
    by_step: dict[int, dict[str, Any]] = {}
    for r in recs:
        if r.get("kind") == "epoch" and is_number(r.get("epoch")):
            by_epoch[int(r["epoch"])] = r
        elif r.get("kind") == "step" and is_number(r.get("step")):
            by_step[int(r["step"])] = r
        elif r.get("kind") == "event":
            data.events.append(r)
    data.epochs = [by_epoch[k] for k in sorted(by_epoch)]
    data.steps = [by_step[k] for k in sorted(by_step)]
    gp = rd.path / RunDir.GENOTYPE
    if gp.is_file():
        data.genotype = Genotype.load(gp)
    data.epoch_genotypes = rd.epoch_genotypes()
    if data.genotype is None and data.epoch_genotypes:
        data.genotype = data.epoch_genotypes[max(data.epoch_genotypes)]
    return data


# ------------------------------------------------------------------------------------------- sections
@dataclass
class _Doc:
    """Builds the HTML and Markdown documents side by side."""

    figures_dir: Path
    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.html.append(f'<h{level} id="{_anchor(text)}">{html.escape(text)}</h{level}>')
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(text + "\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in r) + "</tr>" for r in rows
        )
        self.html.append(f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>")
        self.md.append("| " + " | ".join(str(c) for c in header) + " |")
        self.md.append("|" + "---|" * len(header))
        for r in rows:
            self.md.append("| " + " | ".join(_cell(c).replace("|", "\\|") for c in r) + " |")
        self.md.append("")

    def figure(self, name: str, svg: str, caption: str = "") -> None:
        path = self.figures_dir / f"{name}.svg"
        atomic_write(path, svg.encode("utf-8"))
        self.figures.append(path)
        self.html.append(
            f'<figure class="fig" data-name="{html.escape(name)}">{_strip_xml_decl(svg)}'
            + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "")
            + "</figure>"
        )
        self.md.append(f"![{caption or name}](figures/{name}.svg)\n")

    def code(self, text: str, lang: str = "", summary: str = "") -> None:
        block = f"<pre><code>{html.escape(text)}</code></pre>"
        if summary:
            block = f"<details><summary>{html.escape(summary)}</summary>{block}</details>"
        self.html.append(block)
        if summary:
            self.md.append(f"<details><summary>{summary}</summary>\n")
        self.md.append(f"```{lang}\n{text.rstrip()}\n```\n")
        if summary:
            self.md.append("</details>\n")


def _anchor(text: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")


def _strip_xml_decl(svg: str) -> str:
    s = svg.lstrip()
    if s.startswith("<?xml"):
        s = s[s.index("?>") + 2 :]
    while s.lstrip().startswith("<!DOCTYPE"):
        s = s[s.index(">") + 1 :]
    return s


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4g}"
    return str(v)


def _series(epochs: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["epoch"]) + 1, float(r[key])) for r in epochs if is_number(r.get(key))]


def _metric_groups(epochs: list[dict[str, Any]]) -> dict[str, list[str]]:
    keys: dict[str, None] = {}
    for r in epochs:
        for k, v in r.items():
            if is_number(v) and k not in _BOOKKEEPING and not k.startswith(("consistency_", "collapse_")):
                keys[k] = None
    groups: dict[str, list[str]] = defaultdict(list)
    for k in keys:
        if k == "genotype_stable_epochs":  # the genotype section tells it
            continue
        # the decision monitor's statistics (entropy, margin, weak-edge share: all in [0, 1]) share a chart
        groups["decision" if k.startswith("decision_") else k.rsplit("_", 1)[-1]].append(k)
    return dict(groups)


def _decision_notes(doc: _Doc, run: RunData) -> None:
    """Whether the search decided (DecisionMonitor's verdict) and the approximations the run used."""
    last = run.epochs[-1] if run.epochs else {}
    verdict = last.get("decision_verdict") or (run.summary.get("decision") or {}).get("verdict")
    if verdict:
        doc.para(verdict)
    elif last.get("decided") is False:
        doc.para(
            f"The search has not decided yet (mean normalised entropy {last.get('decision_entropy', 1.0):.3f}): "
            "the derived cell is not supported by the search at this point."
        )
    search_cfg = run.manifest.get("search_config") or {}
    for note in run.summary.get("approximations") or search_cfg.get("approximations") or []:
        doc.para(f"Approximation: {note}")


def _section_overview(doc: _Doc, run: RunData) -> None:
    s, m = run.summary, run.manifest
    rows = [
        ("status", s.get("status", "unknown (no summary.json: running or crashed)")),
        ("epochs done", f"{s.get('epoch', len(run.epochs))}"),
        ("optimisation steps", s.get("global_step", run.steps[-1]["step"] if run.steps else 0)),
        ("space", run.space.get("name") or (run.genotype.space if run.genotype else "?")),
        ("seed", m.get("seed")),
        ("created", m.get("created")),
        ("device", (m.get("device") or {}).get("device")),
        ("world size", m.get("world_size", 1)),
        (
            "git commit",
            ((m.get("git") or {}).get("commit") or "-")
            + (" (dirty)" if (m.get("git") or {}).get("dirty") else ""),
        ),
        ("config hash", m.get("config_hash")),
    ]
    if s.get("nan_guard"):
        rows.append(("NaN guard", s["nan_guard"]))
    if s.get("last_checkpoint"):
        rows.append(("last checkpoint", s["last_checkpoint"]))
    resumes = m.get("resumes") or []
    if resumes:
        rows.append(("resumed", f"{len(resumes)} time(s)"))
    doc.table(["", ""], [(a, "-" if b is None else b) for a, b in rows])
    _decision_notes(doc, run)
    pk = m.get("packages") or {}
    if pk:
        doc.table(["package", "version"], sorted(pk.items()))
    files = m.get("data_files") or []
    if files:
        doc.table(
            ["data file", "bytes", "checksum"],
            [
                (f.get("path"), f.get("bytes"), f.get("sha256") or f.get("md5") or f.get("sha1"))
                for f in files
            ],
        )


def _section_cells(doc: _Doc, run: RunData, engine: str) -> None:
    g = run.genotype
    if g is None:
        doc.para("No genotype has been derived yet.")
        return
    ni = run.num_inputs
    doc.para("The pictures of the derived cells are at the top of the report.")
    for ct, cell in g.cells.items():
        dot = cell_to_dot(cell, ct, num_inputs=ni.get(ct))
        atomic_write(doc.figures_dir / f"cell_{ct}.dot", dot.encode("utf-8"))
        doc.code(dot, "dot", summary=f"Graphviz source of the {ct} cell")
    doc.code(g.to_json(), "json", summary="genotype.json")


def _section_derived(doc: _Doc, run: RunData) -> None:
    d = run.summary.get("derived") or {}
    if not d:
        return
    doc.heading("Derived network")
    rows = [("parameters", f"{d['params']:,} ({d['params_M']:.3f} M)")] if "params" in d else []
    if "params_without_auxiliary" in d:
        rows.append(("parameters without auxiliary head", f"{d['params_without_auxiliary']:,}"))
    if "flops" in d:
        rows.append(
            (
                "multiply-adds (Conv+Linear)",
                f"{d['flops']:,} ({d['flops_M']:.2f} M) for input {d.get('input_shape')}",
            )
        )
    if d.get("derived_kwargs"):
        rows.append(("built with", json.dumps(d["derived_kwargs"], sort_keys=True)))
    doc.table(["", ""], rows)


def _section_curves(doc: _Doc, run: RunData) -> None:
    doc.heading("Learning curves")
    if not run.epochs and not run.steps:
        doc.para("No metrics recorded yet.")
        return
    for group, keys in sorted(_metric_groups(run.epochs).items()):
        series = {k: _series(run.epochs, k) for k in sorted(keys)}
        doc.figure(
            f"curve_{group}",
            line_chart(series, title=f"{group} per epoch", xlabel="epoch", ylabel=group),
            f"{group} per epoch",
        )
    step_keys = [k for k in ("train_loss", "val_loss") if any(is_number(r.get(k)) for r in run.steps)]
    if step_keys and len(run.steps) > 1:
        stride = max(1, len(run.steps) // 600)
        series = {
            k: [(float(r["step"]), float(r[k])) for r in run.steps[::stride] if is_number(r.get(k))]
            for k in step_keys
        }
        doc.figure(
            "curve_steps",
            line_chart(series, title="loss per step", xlabel="step", ylabel="loss"),
            "losses per optimisation step",
        )


def _section_benchmark(doc: _Doc, run: RunData) -> None:
    """Benchmark mode (``datanas_core.benchmarks.BenchmarkCallback``): the derived cell's published accuracy
    per epoch; nothing when the run was not scored."""
    rows = [r for r in run.epochs if isinstance(r.get("benchmark"), Mapping)]
    if not rows:
        return
    doc.heading("Benchmark")
    metrics: dict[str, None] = {}
    for r in rows:
        for k, v in r["benchmark"].items():
            if is_number(v) and not k.endswith(("_rank", "_percentile")):
                metrics[k] = None
    series = {
        m: [
            (float(r["epoch"]) + 1, float(r["benchmark"][m]))
            for r in rows
            if is_number(r["benchmark"].get(m))
        ]
        for m in metrics
    }
    if series:
        doc.figure(
            "benchmark",
            line_chart(series, title="benchmark accuracy of the derived cell", xlabel="epoch", ylabel="acc"),
            "published accuracy of each epoch's derived cell",
        )
    last = rows[-1]["benchmark"]
    if not last.get("in_table", False):
        doc.para(f"The last derived cell is not in the table: {last.get('reason', 'unknown cell')}.")
    header = ["epoch", "cell"]
    for m in metrics:
        header += [m, "rank", "percentile"]
    body = []
    for r in rows:
        b = r["benchmark"]
        line: list[Any] = [int(r["epoch"]) + 1, b.get("arch", "-")]
        for m in metrics:
            line += [b.get(m, "not in table"), b.get(f"{m}_rank", "-"), b.get(f"{m}_percentile", "-")]
        body.append(line)
    doc.table(header, body)


def _section_consistency(doc: _Doc, run: RunData) -> None:
    rows = [r for r in run.epochs if is_number(r.get("consistency_gap"))]
    doc.heading("Search/child consistency")
    if not rows:
        doc.para("No consistency measurements (enable the consistency monitor).")
        return
    metric = rows[-1].get("consistency_metric", "acc")
    doc.para(
        f"Supernet {metric} on validation data with sampled codes (search) and with the derived "
        "architecture's "
        "code and inherited weights, without fine-tuning (child); the gap is |search - child| "
        "(DATA, Table 8 protocol)."
    )
    series = {
        "search": _series(rows, f"search_{metric}"),
        "child": _series(rows, f"child_{metric}"),
        "gap": _series(rows, "consistency_gap"),
    }
    doc.figure(
        "consistency",
        line_chart(series, title=f"consistency ({metric})", xlabel="epoch", ylabel=metric),
        "search vs child",
    )
    doc.table(
        ["epoch", f"search {metric}", f"child {metric}", "gap"],
        [
            (int(r["epoch"]) + 1, r.get(f"search_{metric}"), r.get(f"child_{metric}"), r["consistency_gap"])
            for r in rows[-20:]
        ],
    )


def _section_collapse(doc: _Doc, run: RunData) -> None:
    rows = [r for r in run.epochs if isinstance(r.get("collapse"), Mapping)]
    doc.heading("Collapse monitor")
    if not rows:
        doc.para("No collapse measurements.")
        return
    cts = list(rows[-1]["collapse"])
    series: dict[str, list[tuple[float, float]]] = {}
    for ct in cts:
        series[f"{ct} param-free share"] = [
            (r["epoch"] + 1, r["collapse"][ct]["param_free_share"]) for r in rows if ct in r["collapse"]
        ]
        series[f"{ct} alpha entropy"] = [
            (r["epoch"] + 1, r["collapse"][ct].get("entropy", float("nan")))
            for r in rows
            if ct in r["collapse"]
        ]
    doc.figure(
        "collapse",
        line_chart(series, title="collapse indicators", xlabel="epoch", ylabel="share"),
        "share of parameter-free ops in the derived cells and normalised alpha entropy",
    )
    last = rows[-1]["collapse"]
    doc.table(
        [
            "cell type",
            "kept edges",
            "param-free",
            "skip",
            "dominant op",
            "dominant share",
            "entropy",
            "max prob",
        ],
        [
            (
                ct,
                s.get("edges"),
                s.get("param_free"),
                s.get("skip"),
                s.get("dominant_op"),
                s.get("dominant_share"),
                s.get("entropy", "-"),
                s.get("max_prob", "-"),
            )
            for ct, s in last.items()
        ],
    )
    flagged = [int(r["epoch"]) + 1 for r in rows if r.get("collapse_flag")]
    if flagged:
        doc.para(
            f"Collapse warnings at epochs: {', '.join(map(str, flagged[:40]))}"
            + (" ..." if len(flagged) > 40 else "")
        )


def _uniform_scale(values: Sequence[Sequence[float]], k: int) -> tuple[float, float, float]:
    """``(center, vmin, vmax)`` for probabilities coloured relative to uniform ``1/k``: red saturates at the
    largest probability, blue at the smallest (each at least 1e-4 away from ``1/k``, so a flat run stays
    pale)."""
    center = 1.0 / max(k, 1)
    flat = [float(v) for row in values for v in row]
    hi = max([*flat, center])
    lo = min([*flat, center])
    return center, min(lo, center - 1e-4), max(hi, center + 1e-4)


def _section_alpha(doc: _Doc, run: RunData) -> None:
    rows = [r for r in run.epochs if isinstance(r.get("probs"), Mapping)]
    doc.heading("Architecture probabilities")
    if not rows:
        doc.para("No architecture probabilities recorded.")
        return
    cells = run.space.get("cells", {})
    for ct in rows[-1]["probs"]:
        spec = cells.get(ct, {})
        final = rows[-1]["probs"][ct]
        E, K = len(final), len(final[0]) if final else 0
        ops = spec.get("ops") or [f"op{k}" for k in range(K)]
        edges = spec.get("edges") or [[0, e] for e in range(E)]
        edge_names = [f"{s}->{d}" for s, d in edges]
        center, lo, hi = _uniform_scale(final, K)
        label = f"1/K={center:.3g}"
        doc.figure(
            f"alpha_final_{ct}",
            heatmap_svg(
                final,
                row_labels=edge_names,
                col_labels=ops,
                title=f"{ct}: final probabilities",
                cell=16,
                vmin=lo,
                vmax=hi,
                center=center,
                center_label=label,
            ),
            f"{ct}: probabilities per edge (rows) and op (columns) after the last epoch, coloured relative to "
            f"uniform ({label}, white): red above it (full at {hi:.3g}), blue below (full at {lo:.3g})",
        )
        labels, values = [], []
        for e in range(E):
            for k in range(K):
                labels.append(f"{edge_names[e]} {ops[k]}")
                values.append([float(r["probs"][ct][e][k]) for r in rows if ct in r["probs"]])
        cols = [str(int(r["epoch"]) + 1) for r in rows if ct in r["probs"]]
        center, lo, hi = _uniform_scale(values, K)
        doc.figure(
            f"alpha_evolution_{ct}",
            heatmap_svg(
                values,
                row_labels=labels,
                col_labels=cols,
                title=f"{ct}: probabilities per epoch",
                cell=12,
                vmin=lo,
                vmax=hi,
                center=center,
                center_label=label,
            ),
            f"{ct}: every (edge, op) probability over the epochs, relative to uniform ({label}, white): red "
            f"above it (full at {hi:.3g}), blue below (full at {lo:.3g})",
        )


def _section_genotype_evolution(doc: _Doc, run: RunData) -> None:
    gs = run.epoch_genotypes
    if len(gs) < 2:
        return
    doc.heading("Genotype over the epochs")
    rows = []
    prev: Genotype | None = None
    stable_since = None
    for e in sorted(gs):
        g = gs[e]
        if prev is None:
            changed = "-"
        else:
            diff = 0
            for ct in g.cells:
                a = set(g.cells[ct].edges)
                b = set(prev.cells[ct].edges) if ct in prev.cells else set()
                diff += len(a ^ b)
            changed = str(diff)
            if diff:
                stable_since = e
        if prev is None:
            stable_since = e
        rows.append((e + 1, changed))
        prev = g
    doc.para(
        f"The derived genotype has not changed since epoch "
        f"{stable_since + 1 if stable_since is not None else 1}."
    )
    doc.table(["epoch", "edges changed vs previous epoch"], rows[-30:])


def _section_multiseed(doc: _Doc, run: RunData) -> None:
    p = run.path / "multiseed.json"
    if not p.is_file():
        return
    from datanas_core.runtime.multiseed import MultiSeedSummary

    summary = MultiSeedSummary.from_dict(json.loads(p.read_text(encoding="utf-8")))
    doc.heading("Seeds")
    doc.md.append(summary.to_markdown())
    doc.html.append(f"<pre>{html.escape(summary.to_markdown())}</pre>")


# ------------------------------------------------------------------------------------------- headline
#: Search metrics tried, in order, for the headline (the first present in ``summary.final`` is shown).
HEADLINE_METRICS = (
    "val_miou",
    "val_mIoU",
    "val_acc",
    "val_top1",
    "val_ppl",
    "val_nmi",
    "val_loss",
    "train_acc",
    "train_ppl",
    "train_loss",
)

#: A search is called undecided when, averaged over the edges of a cell type, the largest probability is
#: less than this fraction of the way from uniform ``1/K`` to 1.
UNDECIDED_THRESHOLD = 0.1

_DOMAIN_RE = re.compile(r"datanas[_-](\w+?)(?:[/.](\w+?))?(?:\.py)?$")


def _task(run: RunData) -> str:
    c, m = run.config, run.manifest
    if isinstance(c.get("task"), str) and c["task"]:
        return str(c["task"])
    parts = []
    argv = [c["command"]] if isinstance(c.get("command"), str) else (m.get("argv") or [])
    if argv:
        prog = str(argv[0]).replace("\\", "/")
        prog = prog.rsplit("/src/", 1)[-1] if "/src/" in prog else prog
        hit = _DOMAIN_RE.search(prog.replace("/__main__", "").replace("-m ", ""))
        if hit:
            parts.append(hit.group(1) + (f" {hit.group(2)}" if hit.group(2) else ""))
    dataset = c.get("dataset")
    data = c.get("data") or (dataset.get("name") if isinstance(dataset, Mapping) else None)
    if data:
        parts.append(f"on {data}")
    space = run.space.get("name") or (run.genotype.space if run.genotype else None)
    if space:
        parts.append(f"(space {space})")
    return " ".join(parts) or "-"


def _method(run: RunData) -> str:
    c = run.config
    sc = c.get("search_config") or run.manifest.get("search_config") or {}
    named = c.get("method") or c.get("preset")  # lm: --method is the recipe, --preset the model size
    bits = []
    if isinstance(sc, Mapping) and sc.get("estimator"):
        est = str(sc["estimator"])
        opts = sc.get("estimator_options") or {}
        if isinstance(opts, Mapping) and opts:
            est += " (" + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) + ")"
        bits.append(est)
        regs = sc.get("regularizers") or []
        if regs:
            bits.append(
                "reg "
                + ", ".join(
                    f"{r.get('type')}:{r.get('weight')}" if isinstance(r, Mapping) else str(r) for r in regs
                )
            )
        if sc.get("rule"):
            bits.append(f"rule {sc['rule']}")
        if sc.get("epochs") is not None:
            bits.append(f"{sc['epochs']} epochs")
    text = ", ".join(bits)
    if named:
        return f"{named} ({text})" if text else str(named)
    return text or "-"


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool) or not is_number(v):
        return str(v)
    f = float(v)
    if f != f:
        return "NaN"
    if f.is_integer() and abs(f) < 1e9:
        return str(int(f))
    return f"{f:.4g}"


def _headline_metric(run: RunData) -> str | None:
    final = run.summary.get("final") or (
        {k: v for k, v in run.epochs[-1].items() if k not in ("probs", "genotype", "collapse")}
        if run.epochs
        else {}
    )
    for key in HEADLINE_METRICS:
        if key in final and is_number(final[key]):
            extra = [
                f"{k} {_fmt_value(final[k])}"
                for k in ("val_loss", "train_loss")
                if k != key and k in final and is_number(final[k])
            ][:1]
            epoch = final.get("epoch")
            where = f"supernet, epoch {int(epoch) + 1}" if is_number(epoch) else "supernet, last epoch"
            return f"{key} {_fmt_value(final[key])}" + (f", {extra[0]}" if extra else "") + f" ({where})"
    return None


def _benchmark_line(run: RunData) -> str | None:
    final = run.summary.get("final") or (run.epochs[-1] if run.epochs else {})
    parts = []
    b = final.get("benchmark")
    if isinstance(b, Mapping):
        if b.get("in_table") is False:
            parts.append(f"derived cell not in the table ({b.get('reason', 'unknown cell')})")
        for k, v in b.items():
            if is_number(v) and not isinstance(v, bool) and not k.endswith(("_rank", "_percentile")):
                extra = []
                if is_number(b.get(f"{k}_rank")):
                    extra.append(f"rank {_fmt_value(b[f'{k}_rank'])}")
                if is_number(b.get(f"{k}_percentile")):
                    extra.append(f"percentile {_fmt_value(b[f'{k}_percentile'])}")
                parts.append(f"{k} {_fmt_value(v)}" + (f" ({', '.join(extra)})" if extra else ""))
    for k, v in final.items():
        if k.startswith("benchmark/") and is_number(v):
            parts.append(f"{k.split('/', 1)[1]} {_fmt_value(v)}")
    return "; ".join(parts) or None


def _warning_text(w: Any) -> str:
    if isinstance(w, Mapping):
        return str(w.get("message") or w.get("text") or json.dumps(w, sort_keys=True))
    return str(w)


def run_warnings(run: RunData) -> list[str]:
    """The warnings a report's headline shows: run status, NaN guard, NaN metrics, collapse, an undecided
    search, plus every entry of ``summary.json``'s ``warnings`` list and every ``warning`` event of
    metrics.jsonl (strings, or mappings with a ``message``).

    An undecided search is the last epoch's ``decision_verdict`` when its ``decided`` is false (the
    decision monitor); without a ``decided`` field, it is estimated from the last probabilities (the
    largest probability per edge, on average less than :data:`UNDECIDED_THRESHOLD` of the way from
    ``1/K`` to 1)."""
    s = run.summary
    out: list[str] = []
    status = s.get("status")
    if status is None:
        out.append("no summary.json: the run is still running or crashed")
    elif status not in ("completed", "stopped_early"):
        out.append(f"run status: {status}")
    if s.get("nan_guard"):
        out.append(f"NaN guard tripped: {s['nan_guard']}")
    final = s.get("final") or {}
    nans = sorted(k for k, v in final.items() if isinstance(v, float) and v != v)
    if nans:
        out.append(f"NaN in the final metrics: {', '.join(nans)}")
    for w in s.get("warnings") or []:
        out.append(_warning_text(w))
    for e in run.events:
        if e.get("event") == "warning":
            out.append(_warning_text(e))
    last = run.epochs[-1] if run.epochs else {}
    collapse = last.get("collapse")
    if last.get("collapse_flag") or final.get("collapse_flag"):
        detail = ""
        if isinstance(collapse, Mapping):
            detail = "; ".join(
                f"{ct}: {c.get('param_free')}/{c.get('edges')} kept edges parameter-free"
                + (f", dominant op {c.get('dominant_op')}" if c.get("dominant_op") else "")
                for ct, c in collapse.items()
                if isinstance(c, Mapping)
            )
        out.append("possible collapse in the last epoch" + (f" ({detail})" if detail else ""))
    decision = s.get("decision") if isinstance(s.get("decision"), Mapping) else {}
    decided = last.get("decided", final.get("decided", decision.get("decided")))
    verdict = last.get("decision_verdict") or final.get("decision_verdict") or decision.get("verdict")
    if decided is False and verdict and not any("undecided" in w.lower() for w in out):
        out.append(str(verdict))
    probs = last.get("probs")
    if decided is None and isinstance(probs, Mapping) and not any("undecided" in w.lower() for w in out):
        for ct, rows in probs.items():
            k = len(rows[0]) if rows else 0
            if k < 2:
                continue
            u = 1.0 / k
            decided = sum((max(map(float, r)) - u) / (1 - u) for r in rows) / len(rows)
            if decided < UNDECIDED_THRESHOLD:
                top = max(max(map(float, r)) for r in rows)
                out.append(
                    f"undecided search ({ct}): the architecture probabilities stayed near uniform "
                    f"(largest {top:.4g} vs 1/K = {u:.3g}); the derived cell is close to arbitrary: "
                    "search longer or with a higher architecture learning rate"
                )
    return list(dict.fromkeys(out))


_MAIN_RESULT_WORDS = ("top1", "acc", "miou", "ppl", "nmi", "ari")


def _result_rank(kv: tuple[str, Any]) -> int:
    """Headline order of a result: accuracy-like metrics, then other test/val metrics, then the rest."""
    low = kv[0].lower()
    if any(w in low for w in _MAIN_RESULT_WORDS):
        return 0
    return 1 if low.startswith(("test", "val")) else 2


def _results_rows(run: RunData) -> list[tuple[str, str]]:
    rows = []
    for section, entry in (run.summary.get("results") or {}).items():
        metrics = entry.get("metrics", entry) if isinstance(entry, Mapping) else {}
        nums = [(k, v) for k, v in metrics.items() if is_number(v) and not isinstance(v, bool)]
        nums.sort(key=_result_rank)
        rows.append((section, ", ".join(f"{k} {_fmt_value(v)}" for k, v in nums[:6]) or "-"))
    return rows


def _section_headline(doc: _Doc, run: RunData, engine: str) -> None:
    doc.heading("Result")
    rows: list[tuple[str, str]] = [("task", _task(run)), ("method", _method(run))]
    rows.append(("status", str(run.summary.get("status", "unknown (running or crashed)"))))
    metric = _headline_metric(run)
    if metric:
        rows.append(("search metric", metric))
    bench = _benchmark_line(run)
    if bench:
        rows.append(("benchmark", bench))
    for section, text in _results_rows(run):
        rows.append((section, text))
    d = run.summary.get("derived") or {}
    if "params" in d:
        size = f"{d['params']:,} parameters"
        if "flops" in d:
            size += f", {d['flops']:,} multiply-adds"
        rows.append(("derived network", size))
    g = run.genotype
    if g is not None:
        rows.append(("derived cell", "; ".join(f"{ct}: {_cell_text(c)}" for ct, c in g.cells.items())))
    warnings = run_warnings(run)
    doc.html.append('<div class="headline">')
    doc.table(["", ""], rows)
    if warnings:
        doc.html.append(
            '<ul class="warnings">'
            + "".join(f"<li>&#9888; {html.escape(w)}</li>" for w in warnings)
            + "</ul>"
        )
        doc.md.append("**Warnings**\n")
        doc.md.extend(f"- {w}" for w in warnings)
        doc.md.append("")
    else:
        doc.html.append('<p class="ok">No warnings.</p>')
        doc.md.append("No warnings.\n")
    if g is None:
        doc.para("No genotype has been derived yet.")
    elif g.space == "model":  # a searched model (datanas_core.search): its choices, no cell pictures
        doc.table(["choice", "chosen"], [(ct, ", ".join(e.op for e in c.edges)) for ct, c in g.cells.items()])
    else:
        ni = run.num_inputs
        for ct, cell in g.cells.items():
            name = "cell" if ct == "cell" else f"{ct} cell"
            svg = cell_to_svg(cell, ct, num_inputs=ni.get(ct), title=f"{g.space}: {name}", engine=engine)
            doc.figure(f"cell_{ct}", svg, f"derived {name} ({len(cell.edges)} edges)")
    doc.html.append("</div>")


def _cell_text(cell: Any) -> str:
    edges = ", ".join(f"{e.src}->{e.dst} {e.op}" for e in cell.edges)
    return edges + (f" (concat {list(cell.concat)})" if getattr(cell, "concat", None) else "")


def _section_results(doc: _Doc, run: RunData) -> None:
    results = run.summary.get("results") or {}
    if not results:
        return
    doc.heading("Retraining")
    for section, entry in results.items():
        if not isinstance(entry, Mapping):
            continue
        metrics = entry.get("metrics", {})
        doc.heading(section, level=3)
        if entry.get("source") or entry.get("time"):
            doc.para(
                " ".join(
                    x
                    for x in (
                        f"Results from {entry['source']}" if entry.get("source") else "",
                        f"({entry['time']})" if entry.get("time") else "",
                    )
                    if x
                )
            )
        doc.table(
            ["metric", "value"],
            [
                (k, v if is_number(v) or isinstance(v, str) else json.dumps(v, sort_keys=True))
                for k, v in metrics.items()
            ],
        )


# ----------------------------------------------------------------------------------- retraining hand-in
def find_run_dir(ref: str | os.PathLike[str] | None) -> Path | None:
    """The search run directory a genotype reference points into, or ``None``.

    ``ref`` is a run directory (holding ``genotype.json`` and ``config.json`` or ``summary.json``) or the
    ``genotype.json`` inside one; anything else (a bundled name, a free-standing JSON file, a NB201
    string) gives ``None``.
    """
    if ref is None:
        return None
    try:
        p = Path(ref).expanduser()
        if p.is_file() and p.name == RunDir.GENOTYPE:
            p = p.parent
        elif not p.is_dir():
            return None
        marked = (p / RunDir.CONFIG).is_file() or (p / RunDir.SUMMARY).is_file()
        return p.resolve() if marked and (p / RunDir.GENOTYPE).is_file() else None
    except (OSError, ValueError):
        return None


def append_result(
    run_dir: str | os.PathLike[str],
    section: str,
    metrics: Mapping[str, Any],
    *,
    source: str | os.PathLike[str] | None = None,
    report: bool = True,
) -> Path:
    """Record results obtained from a run's genotype (retraining, comparison) in the run.

    ``summary.json`` gets ``results[section] = {"metrics": ..., "source": ..., "time": ...}`` (a later call
    with the same section replaces it) and, with ``report``, the report is rebuilt: the results appear in
    its headline and in a "Retraining" section.

    Args:
        run_dir: the search run directory (see :func:`find_run_dir`).
        section: a short name, e.g. ``"retrain"`` or ``"compare"``.
        metrics: JSON-able results (numbers are shown in the headline, test/val metrics first).
        source: where the full results live (e.g. the retraining's output directory).
        report: rebuild ``report.html``/``report.md``.

    Returns:
        The path of ``summary.json``.

    Raises:
        ConfigError: ``run_dir`` is not a run directory.
    """
    rd = RunDir(run_dir)
    if not rd.path.is_dir() or not (rd.exists() or (rd.path / RunDir.SUMMARY).is_file()):
        raise ConfigError(f"{str(rd.path)!r} is not a run directory (no config.json or summary.json)")
    entry = {
        "metrics": to_jsonable(dict(metrics)),
        "source": os.fspath(source) if source is not None else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }

    def add(summary: dict[str, Any]) -> dict[str, Any]:
        results = summary.get("results")
        summary["results"] = {**(dict(results) if isinstance(results, Mapping) else {}), str(section): entry}
        return summary

    rd.update_summary(add)  # under the summary lock: a search's own summary write keeps the results
    if report:
        build_report(rd.path)
    return rd.path / RunDir.SUMMARY


def record_retraining(
    genotype_ref: str | os.PathLike[str] | None,
    section: str,
    metrics: Mapping[str, Any],
    *,
    source: str | os.PathLike[str] | None = None,
) -> Path | None:
    """For training CLIs: when ``genotype_ref`` (their ``--genotype`` argument) points into a search run
    directory, :func:`append_result` the metrics there and return the run directory; otherwise ``None``.

    A failure to update the search run (unwritable directory, report error) is logged as a warning and
    gives ``None``: the training itself has succeeded. Results written by a training into the run directory
    itself (``source`` is the run directory) are not appended.
    """
    run_dir = find_run_dir(genotype_ref)
    if run_dir is None or (source is not None and Path(source).resolve() == run_dir):
        return None
    try:
        append_result(run_dir, section, metrics, source=source)
    except Exception as exc:  # noqa: BLE001 - the training succeeded; the search run is only annotated
        logger.warning("could not add the %s results to the search run %s: %s", section, run_dir, exc)
        return None
    logger.info("%s results added to the search run's report: %s", section, run_dir / "report.html")
    return run_dir


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;
color:#222}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f3f3f3}figure{margin:1em 0;overflow-x:auto}figcaption{font-size:12px;color:#555}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}h1{font-size:1.6em}
h2{border-bottom:1px solid #ddd}
.headline{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.4em 1em;margin:.6em 0}
.headline table td:first-child{font-weight:600;white-space:nowrap}.headline td,.headline th{border:none}
.headline thead{display:none}
ul.warnings{margin:.4em 0;padding-left:1.2em;color:#8a4b00}ul.warnings li{margin:.2em 0}
p.ok{color:#1a7f37}
"""


def build_report(
    run_dir: str | os.PathLike[str], *, engine: str = "builtin", title: str | None = None
) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/`` into ``run_dir``.

    Args:
        run_dir: the run directory.
        engine: cell drawing engine (``"builtin"``, ``"dot"``, ``"auto"``; see
            :func:`~datanas_core.runtime.cellplot.cell_to_svg`).
        title: document title (default: the directory name).

    Returns:
        ``{"html": path, "md": path, "figures": directory}``.

    Raises:
        ConfigError: not a run directory.
    """
    run = load_run(run_dir)
    figures = run.path / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    doc = _Doc(figures)
    title = title or f"datanas search report: {run.path.name}"
    doc.html.append(f"<h1>{html.escape(title)}</h1>")
    doc.md.append(f"# {title}\n")
    _section_headline(doc, run, engine)
    doc.heading("Run")
    _section_overview(doc, run)
    doc.heading("Derived cells")
    _section_cells(doc, run, engine)
    _section_derived(doc, run)
    _section_results(doc, run)
    _section_curves(doc, run)
    _section_benchmark(doc, run)
    _section_consistency(doc, run)
    _section_collapse(doc, run)
    _section_alpha(doc, run)
    _section_genotype_evolution(doc, run)
    _section_multiseed(doc, run)
    if run.config:
        doc.heading("Configuration")
        doc.code(json.dumps(run.config, indent=2, sort_keys=True), "json", summary="config.json")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(doc.html)
        + "\n</body></html>\n"
    )
    html_path = atomic_write(run.path / "report.html", page.encode("utf-8"))
    md_path = atomic_write(run.path / "report.md", ("\n".join(doc.md).strip() + "\n").encode("utf-8"))
    return {"html": html_path, "md": md_path, "figures": figures}


def build_multiseed_report(
    out_dir: str | os.PathLike[str], *, engine: str = "builtin", title: str | None = None
) -> dict[str, Path]:
    """Report for a multi-seed directory: the summary table, each seed's cells, links to per-seed reports.

    Per-seed reports are (re)built first.

    Raises:
        ConfigError: ``out_dir`` has no ``multiseed.json``.
    """
    from datanas_core.runtime.multiseed import load_summary

    d = Path(out_dir)
    if not (d / "multiseed.json").is_file():
        raise ConfigError(f"{str(d)!r} is not a multi-seed directory (no multiseed.json)")
    summary = load_summary(d)
    figures = d / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    doc = _Doc(figures)
    title = title or f"datanas multi-seed report: {d.name}"
    doc.html.append(f"<h1>{html.escape(title)}</h1>")
    doc.md.append(f"# {title}\n")
    doc.heading("Summary")
    doc.md.append(summary.to_markdown())
    doc.html.append(f"<pre>{html.escape(summary.to_markdown())}</pre>")
    for row in summary.rows:
        seed, rdir = row["seed"], Path(row["run_dir"])
        doc.heading(f"Seed {seed}")
        try:
            build_report(rdir, engine=engine)
            rel = os.path.relpath(rdir / "report.html", d)
            doc.html.append(f'<p><a href="{html.escape(rel)}">full report</a></p>')
            doc.md.append(f"[full report]({os.path.relpath(rdir / 'report.md', d)})\n")
        except ConfigError as exc:
            doc.para(f"no report: {exc}")
            continue
        run = load_run(rdir)
        if run.genotype is not None:
            for ct, cell in run.genotype.cells.items():
                svg = cell_to_svg(
                    cell, ct, num_inputs=run.num_inputs.get(ct), title=f"seed {seed}: {ct}", engine=engine
                )
                doc.figure(f"seed{seed}_cell_{ct}", svg, f"seed {seed}: {ct} cell")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(doc.html)
        + "\n</body></html>\n"
    )
    html_path = atomic_write(d / "report.html", page.encode("utf-8"))
    md_path = atomic_write(d / "report.md", ("\n".join(doc.md).strip() + "\n").encode("utf-8"))
    return {"html": html_path, "md": md_path, "figures": figures}
