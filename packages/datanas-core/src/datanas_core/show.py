"""``python -m datanas_core.show GENOTYPE.json [--out cell.svg]``: draw the cells of a genotype.

Writes one SVG (or Graphviz DOT) picture per cell type. With ``--out FILE`` and several cell types, the
cell type is appended to the file name (``cell_normal.svg``, ``cell_reduce.svg``); without ``--out`` the
pictures go next to the genotype file. ``--format dot`` without ``--out`` prints the DOT source.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from datanas_core.entry import cli_entry, one_line_errors

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datanas_core.show", description=__doc__.splitlines()[0])
    p.add_argument("genotype", type=Path, help="genotype JSON file")
    p.add_argument("--out", type=Path, default=None, help="output file (.svg or .dot)")
    p.add_argument("--cell", action="append", default=None, help="only this cell type (repeatable)")
    p.add_argument("--format", choices=("svg", "dot"), default=None, help="default: from --out, else svg")
    p.add_argument(
        "--engine",
        choices=("builtin", "dot", "auto"),
        default="builtin",
        help="SVG drawing: built-in layout, Graphviz 'dot', or dot when installed",
    )
    p.add_argument(
        "--num-inputs",
        type=int,
        default=None,
        help="number of cell input nodes (default: inferred from the genotype)",
    )
    return one_line_errors(p)  # a bad flag: one line, exit status 2


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from datanas_core.errors import DataNASError
    from datanas_core.genotype import Genotype
    from datanas_core.runtime.cellplot import cell_to_dot, cell_to_svg

    fmt = args.format or (
        args.out.suffix.lstrip(".") if args.out and args.out.suffix in (".svg", ".dot") else "svg"
    )
    try:
        g = Genotype.load(args.genotype)
        cells = dict(g.cells)
        if args.cell:
            unknown = [c for c in args.cell if c not in cells]
            if unknown:
                print(f"error: unknown cell type(s) {unknown}; valid: {', '.join(cells)}", file=sys.stderr)
                return 2
            cells = {c: cells[c] for c in args.cell}
        outputs = []
        for ct, cell in cells.items():
            if fmt == "dot":
                text = cell_to_dot(cell, ct, num_inputs=args.num_inputs)
            else:
                text = cell_to_svg(
                    cell, ct, num_inputs=args.num_inputs, title=f"{g.space}: {ct}", engine=args.engine
                )
            if args.out is None and fmt == "dot":
                sys.stdout.write(text)
                continue
            if args.out is None:
                path = args.genotype.with_name(f"{args.genotype.stem}_{ct}.{fmt}")
            elif len(cells) == 1:
                path = args.out
            else:
                path = args.out.with_name(f"{args.out.stem}_{ct}{args.out.suffix or '.' + fmt}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            outputs.append(path)
    except DataNASError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in outputs:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
