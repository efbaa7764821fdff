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
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.runtime._fs import atomic_write
from datanas_core.runtime._jsonutil import is_number
from datanas_core.runtime.cellplot import cell_to_dot, cell_to_svg
from datanas_core.runtime.rundir import RunDir
from datanas_core.runtime.svg import heatmap_svg, line_chart_svg

__all__ = ["RunData", "build_multiseed_report", "build_report", "load_run"]

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
        groups[k.rsplit("_", 1)[-1]].append(k)
    return dict(groups)


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
    for ct, cell in g.cells.items():
        svg = cell_to_svg(cell, ct, num_inputs=ni.get(ct), title=f"{g.space}: {ct} cell", engine=engine)
        doc.figure(f"cell_{ct}", svg, f"derived {ct} cell ({len(cell.edges)} edges)")
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
            line_chart_svg(series, title=f"{group} per epoch", xlabel="epoch", ylabel=group),
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
            line_chart_svg(series, title="loss per step", xlabel="step", ylabel="loss"),
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
            line_chart_svg(
                series, title="benchmark accuracy of the derived cell", xlabel="epoch", ylabel="acc"
            ),
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
        line_chart_svg(series, title=f"consistency ({metric})", xlabel="epoch", ylabel=metric),
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
        line_chart_svg(series, title="collapse indicators", xlabel="epoch", ylabel="share"),
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
        doc.figure(
            f"alpha_final_{ct}",
            heatmap_svg(
                final, row_labels=edge_names, col_labels=ops, title=f"{ct}: final probabilities", cell=16
            ),
            f"{ct}: probabilities per edge (rows) and op (columns) after the last epoch",
        )
        labels, values = [], []
        for e in range(E):
            for k in range(K):
                labels.append(f"{edge_names[e]} {ops[k]}")
                values.append([float(r["probs"][ct][e][k]) for r in rows if ct in r["probs"]])
        cols = [str(int(r["epoch"]) + 1) for r in rows if ct in r["probs"]]
        top = max((v for row in values for v in row), default=1.0)
        doc.figure(
            f"alpha_evolution_{ct}",
            heatmap_svg(
                values,
                row_labels=labels,
                col_labels=cols,
                title=f"{ct}: probabilities per epoch",
                cell=10,
                vmax=max(top, 1e-6),
            ),
            f"{ct}: evolution of every (edge, op) probability over the epochs",
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


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;
color:#222}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f3f3f3}figure{margin:1em 0;overflow-x:auto}figcaption{font-size:12px;color:#555}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}h1{font-size:1.6em}
h2{border-bottom:1px solid #ddd}
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
    doc.heading("Run")
    _section_overview(doc, run)
    doc.heading("Derived cells")
    _section_cells(doc, run, engine)
    _section_derived(doc, run)
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
