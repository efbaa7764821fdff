"""The search CLI reaches every method of the core: E2NAS, DrNAS progressive stages, EnTranNAS-DST."""

from __future__ import annotations

import pytest

from datanas_core import Genotype, get_space
from datanas_vision import search as search_cli

TINY = ["--data", "digits", "--max-per-class", "4", "--epochs", "2", "--batch-size", "16", "--C", "4",
        "--threads", "1", "--no-progress", "--consistency-batches", "1"]  # fmt: skip

CASES = [
    ("e2nas", ["--space", "nb201", "--layers", "1", "--estimator", "e2nas", "--reg", "none"], "nb201"),
    (
        "drnas",
        [
            "--space",
            "drnas_nb201",
            "--layers",
            "1",
            "--estimator",
            "dirichlet",
            "--reg",
            "none",
            "--rule",
            "argmax_edge",
            "--stages",
            "1:4:5,1:2:3",
            "--arch-warmup-epochs",
            "0",
        ],  # fmt: skip
        "nb201",
    ),
    (
        "entrannas",
        ["--space", "entrannas_nb201", "--layers", "1", "--estimator", "dst", "--reg", "none"],
        "nb201",
    ),
]


@pytest.mark.parametrize(("name", "flags", "space"), CASES, ids=[c[0] for c in CASES])
def test_method_search_through_the_cli(tmp_path, name: str, flags: list[str], space: str) -> None:
    run = tmp_path / name
    assert search_cli.main([*TINY, *flags, "--out", str(run)]) == 0
    genotype = Genotype.load(run / "genotype.json")
    get_space(space).validate(genotype)
    assert (run / "report.html").is_file()
    assert (run / "nb201.txt").read_text().startswith("|")


def test_search_flags_reach_the_search_config() -> None:
    args = search_cli.build_parser().parse_args(
        ["--weight-sampling", "uniform", "--w-optimizer", "adamw", "--samples", "4", "--a-lr", "0.01"]
    )
    cfg = search_cli.search_config(args, seed=3)
    assert (cfg.weight_sampling, cfg.w_optimizer, cfg.a_lr, cfg.seed) == ("uniform", "adamw", 0.01, 3)
    assert cfg.estimator_options["samples"] == 4
    default = search_cli.search_config(search_cli.build_parser().parse_args([]), seed=0)
    assert (default.weight_sampling, default.w_optimizer) == ("distribution", "sgd")
