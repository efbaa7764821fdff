"""Cell pictures: the SVG and DOT of a known genotype have exactly the right nodes and edges."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from datanas_core.errors import ConfigError, GenotypeError
from datanas_core.genotype import CellGenotype, Genotype
from datanas_core.runtime.cellplot import cell_graph, cell_to_dot, cell_to_svg, genotype_to_svgs
from datanas_core.runtime.svg import heatmap_svg, line_chart_svg, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"

# DARTS V2 (Liu et al. 2019), in the classic (op, input) pair form
DARTS_V2 = Genotype.from_pairs(
    "darts",
    {
        "normal": (
            [
                ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1),
                ("skip_connect", 0),
                ("skip_connect", 0),
                ("dil_conv_3x3", 2),
            ],
            [2, 3, 4, 5],
        ),
        "reduce": (
            [
                ("max_pool_3x3", 0),
                ("max_pool_3x3", 1),
                ("skip_connect", 2),
                ("max_pool_3x3", 1),
                ("max_pool_3x3", 0),
                ("skip_connect", 2),
                ("skip_connect", 2),
                ("max_pool_3x3", 1),
            ],
            [2, 3, 4, 5],
        ),
    },
)

RNN = Genotype(
    "darts_rnn",
    {
        "recurrent": CellGenotype(
            [
                (0, 1, "sigmoid"),
                (1, 2, "relu"),
                (1, 3, "relu"),
                (1, 4, "identity"),
                (2, 5, "tanh"),
                (3, 6, "sigmoid"),
                (4, 7, "tanh"),
                (5, 8, "sigmoid"),
            ],
            tuple(range(1, 9)),
        )
    },
)

# DATA-style: several ops on one edge, variable in-degree
MULTI = CellGenotype(
    [(0, 2, "sep_conv_3x3"), (0, 2, "skip_connect"), (1, 2, "max_pool_3x3"), (2, 3, "dil_conv_3x3")], (2, 3)
)


def _parse_svg(svg: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    root = ET.fromstring(svg)
    nodes = {g.get("data-node") for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    edges = [
        (g.get("data-src"), g.get("data-dst"), g.get("data-op"))
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "edge"
    ]
    return nodes, edges  # type: ignore[return-value]


def _expected(cell: CellGenotype, num_inputs: int) -> tuple[set[str], list[tuple[str, str, str]]]:
    nodes = {str(i) for i in range(num_inputs)} | {str(e.dst) for e in cell.edges} | {"out"}
    edges = [(str(e.src), str(e.dst), e.op) for e in cell.edges] + [(str(c), "out", "") for c in cell.concat]
    return nodes, edges


@pytest.mark.parametrize(
    ("genotype", "cell_type", "num_inputs"),
    [(DARTS_V2, "normal", 2), (DARTS_V2, "reduce", 2), (RNN, "recurrent", 1)],
)
def test_svg_has_exactly_the_genotype_nodes_and_edges(
    genotype: Genotype, cell_type: str, num_inputs: int
) -> None:
    cell = genotype.cells[cell_type]
    svg = cell_to_svg(cell, cell_type)
    nodes, edges = _parse_svg(svg)
    exp_nodes, exp_edges = _expected(cell, num_inputs)
    assert nodes == exp_nodes
    assert sorted(edges) == sorted(exp_edges)
    # every edge label is drawn as text
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    for e in cell.edges:
        assert e.op in texts


def test_parallel_ops_on_one_edge_are_separate_arrows() -> None:
    nodes, edges = _parse_svg(cell_to_svg(MULTI, "normal", num_inputs=2))
    assert nodes == {"0", "1", "2", "3", "out"}
    assert sorted(e for e in edges if e[2]) == sorted(
        [
            ("0", "2", "sep_conv_3x3"),
            ("0", "2", "skip_connect"),
            ("1", "2", "max_pool_3x3"),
            ("2", "3", "dil_conv_3x3"),
        ]
    )


def test_dot_has_exactly_the_genotype_edges() -> None:
    cell = DARTS_V2.cells["normal"]
    dot = cell_to_dot(cell, "normal")
    found = re.findall(r"^\s*(n\d+|out) -> (n\d+|out)(?: \[label=\"([^\"]+)\")?", dot, flags=re.M)
    ops = sorted((a, b, op) for a, b, op in found if op)
    assert ops == sorted((f"n{e.src}", f"n{e.dst}", e.op) for e in cell.edges)
    to_out = sorted(a for a, b, op in found if b == "out")
    assert to_out == sorted(f"n{c}" for c in cell.concat)
    declared = set(re.findall(r"^\s*(n\d+|out) \[label=", dot, flags=re.M))
    assert declared == {"n0", "n1", "n2", "n3", "n4", "n5", "out"}
    assert 'label="c_{k-2}"' in dot and 'label="c_{k}"' in dot


def test_node_labels_and_inferred_inputs() -> None:
    g = cell_graph(RNN.cells["recurrent"], "recurrent")
    assert g.inputs == [0] and g.labels[0] == "x_t, h_{t-1}" and g.labels["out"] == "h_t"
    g2 = cell_graph(DARTS_V2.cells["normal"], "normal")
    assert g2.inputs == [0, 1] and g2.intermediates == [2, 3, 4, 5]


def test_node_without_inputs_needs_num_inputs() -> None:
    cell = CellGenotype([(0, 3, "conv")], (2, 3))  # node 2 kept no input (DATA may derive that)
    g = cell_graph(cell, "normal", num_inputs=2)
    assert 2 in g.intermediates and g.inputs == [0, 1]
    nodes, _ = _parse_svg(cell_to_svg(cell, "normal", num_inputs=2))
    assert nodes == {"0", "1", "2", "3", "out"}


def test_bad_input() -> None:
    with pytest.raises(GenotypeError, match="input node"):
        cell_graph(CellGenotype([(0, 1, "a")], (1,)), "c", num_inputs=2)
    with pytest.raises(ConfigError, match="engine"):
        cell_to_svg(MULTI, "normal", engine="neato")


def test_all_cell_types_drawn() -> None:
    svgs = genotype_to_svgs(DARTS_V2)
    assert set(svgs) == {"normal", "reduce"}
    for svg in svgs.values():
        ET.fromstring(svg)


def test_show_cli(tmp_path: Path) -> None:
    gpath = DARTS_V2.save(tmp_path / "g.json")
    from datanas_core.show import main

    assert main([str(gpath), "--out", str(tmp_path / "cell.svg")]) == 0
    for ct in ("normal", "reduce"):
        nodes, edges = _parse_svg((tmp_path / f"cell_{ct}.svg").read_text())
        assert len([e for e in edges if e[2]]) == 8
    assert main([str(gpath), "--cell", "reduce", "--out", str(tmp_path / "r.dot")]) == 0
    assert "max_pool_3x3" in (tmp_path / "r.dot").read_text()
    assert main([str(gpath), "--cell", "nope"]) == 2


@pytest.mark.slow
def test_show_module_entry_point(tmp_path: Path) -> None:
    gpath = RNN.save(tmp_path / "rnn.json")
    res = subprocess.run(
        [sys.executable, "-m", "datanas_core.show", str(gpath), "--format", "dot"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("->") == 8 + 8


def test_charts_are_valid_svg() -> None:
    ET.fromstring(line_chart_svg({"a": [(0, 1.0), (1, 0.5), (2, float("nan"))], "b": []}, title="t"))
    ET.fromstring(line_chart_svg({}, title="empty"))
    root = ET.fromstring(
        heatmap_svg([[0.1, 0.9], [0.5, 0.5]], row_labels=["r0", "r1"], col_labels=["a", "b"])
    )
    cells = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]
    assert [c.get("data-value") for c in cells] == ["0.1", "0.9", "0.5", "0.5"]
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
