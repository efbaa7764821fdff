"""The few-shot and clustering CLIs' domain options come from the dataclasses of
:mod:`datanas_fewshot.cli_config` (issue 19): one flag per field with its type, default and docstring help, old
flag names kept, and the parsed options rebuild the library configurations."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from datanas_core.cli_options import dataclass_from_args, dataclass_help
from datanas_core.errors import ConfigError
from datanas_core.runtime.cli_args import RuntimeArgs
from datanas_fewshot import search, train
from datanas_fewshot.cli_config import (
    CellNetOptions,
    ClusterDataOptions,
    ClusterEvalOptions,
    ClusterModelOptions,
    ClusterSearchOptions,
    ClusterTrainOptions,
    FewShotDataOptions,
    FewShotSearchOptions,
    FewShotTaskOptions,
    FewShotTrainOptions,
    MetaLearnerOptions,
)

cluster_cli = importlib.import_module("datanas_fewshot.cluster.__main__")

COMMON = (FewShotDataOptions, FewShotTaskOptions, MetaLearnerOptions, CellNetOptions)
CLIS = {
    "search": (search.build_parser, (*COMMON, FewShotSearchOptions)),
    "train": (train.build_parser, (*COMMON, FewShotTrainOptions)),
    "cluster": (
        cluster_cli.build_parser,
        (
            ClusterDataOptions,
            ClusterModelOptions,
            CellNetOptions,
            ClusterSearchOptions,
            ClusterTrainOptions,
            ClusterEvalOptions,
        ),
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(CLIS))
def test_every_field_is_a_flag_with_its_default_and_docstring_help(name: str) -> None:
    build, classes = CLIS[name]
    parser = build()
    actions = {a.dest: a for a in parser._actions}
    for cls in classes:
        docs = dataclass_help(cls)
        for f in dataclasses.fields(cls):
            action = actions.get(f.name)
            assert action is not None, f"{name}: {cls.__name__}.{f.name} has no flag"
            assert action.default == f.default, f"{name}: {f.name}"
            assert action.help.startswith(docs[f.name].rstrip(".")), f"{name}: {f.name}"


def test_old_flag_names_still_work() -> None:
    args = search.build_parser().parse_args(["--episodes", "7", "--arch-warmup", "0"])
    assert dataclass_from_args(FewShotSearchOptions, args).episodes == 7 and args.arch_warmup == 0
    args = search.build_parser().parse_args(["--steps-per-epoch", "9"])
    assert args.episodes == 9
    args = cluster_cli.build_parser().parse_args(["--search-batches", "5", "--search-epochs", "2"])
    assert dataclass_from_args(ClusterSearchOptions, args).search_batches == 5 and args.search_epochs == 2


def test_fewshot_config_is_built_from_the_options() -> None:
    argv = ["--ways", "3", "--shots", "2", "--meta-learner", "maml", "--inner-steps", "2", "--ops", "a, b"]
    args = search.build_parser().parse_args([*argv, "--C", "4", "--distance-scale", "dim"])
    config = search.fewshot_config(args, 5)
    assert (config.ways, config.shots, config.queries, config.C, config.seed) == (3, 2, 15, 4, 5)
    assert config.learner == "maml" and config.maml["inner_steps"] == 2 and config.ops == ("a", "b")
    assert dataclass_from_args(FewShotSearchOptions, args).scale() == "dim"
    protonet = search.fewshot_config(search.build_parser().parse_args([]), 0)
    assert protonet.maml == {} and protonet.ops == "small"


def test_cluster_config_is_built_from_the_options() -> None:
    args = cluster_cli.build_parser().parse_args(
        ["--objective", "scan", "--entropy-weight", "2", "--train-batches", "0", "--search-batches", "0",
         "--image-size", "0", "--C", "6", "--search-seed", "3"]
    )  # fmt: skip
    config = cluster_cli.config_from_args(args, n_clusters=4, seed=1)
    assert config.objective == "scan" and config.objective_options == {"entropy_weight": 2.0}
    assert config.train.max_batches is None and config.search_max_batches is None
    assert config.image_size is None and config.C == 6 and config.search_seed == 3 and config.seed == 1
    assert config.search.epochs == 6 and config.train.epochs == ClusterTrainOptions().train_epochs


def test_the_option_dataclasses_refuse_bad_values() -> None:
    with pytest.raises(ConfigError, match="--entropy-weight applies to iic and scan"):
        ClusterModelOptions(objective="dec", entropy_weight=1.0)
    with pytest.raises(ConfigError, match="--distance-scale"):
        FewShotSearchOptions(distance_scale="wide")
    with pytest.raises(ConfigError, match="--ways must be a positive integer"):
        FewShotTaskOptions(ways=0)
    with pytest.raises(ConfigError, match="--kmeans-n-init"):
        ClusterEvalOptions(kmeans_n_init=0)
    assert FewShotDataOptions(data_dir=Path("d")).image_size == 28


def test_one_search_config_for_the_few_shot_and_clustering_searches() -> None:
    cfg = search.search_config(search.build_parser().parse_args([]), 0, epochs=3)
    assert cfg.estimator == "egs" and cfg.estimator_options == {"samples": 2} and cfg.epochs == 3
    assert cfg.w_lr_min == pytest.approx(cfg.w_lr / 10) and cfg.w_weight_decay == 0.0
    args = cluster_cli.build_parser().parse_args(["--arch-warmup-epochs", "1"])
    config = cluster_cli.config_from_args(args, n_clusters=3, seed=2)
    assert config.search.estimator_options["samples"] == 4 and config.search.arch_warmup_epochs == 1
    assert config.search.seed == 2
    cfg = search.search_config(search.build_parser().parse_args(["--preset", "darts"]), 0, epochs=1)
    assert cfg.estimator == "softmax" and "samples" not in cfg.estimator_options
    cfg = search.search_config(
        search.build_parser().parse_args(["--estimator", "gumbel", "--samples", "3"]), 0, epochs=1
    )
    assert cfg.estimator_options == {"samples": 3}
    cfg = search.search_config(
        search.build_parser().parse_args(["--rule", "argmax_edge", "--reg", "none"]), 0, epochs=1
    )
    assert cfg.rule == "argmax_edge" and list(cfg.regularizers) == []


def test_progressive_decisions_precision_and_compile_reach_both_searches() -> None:
    """The shared --progressive-decisions / --precision / --compile (issues 16/17) reach the SearchConfig of the
    few-shot and the clustering search; not given: no decisions, fp32, eager; a bad window exits 2."""
    argv = ["--progressive-decisions", "0.1", "0.7", "--precision", "bf16", "--compile", "default"]
    cfg = search.search_config(search.build_parser().parse_args(argv), 0, epochs=3)
    assert (cfg.progressive_decisions, cfg.precision, cfg.compile) == ((0.1, 0.7), "bf16", "default")
    config = cluster_cli.config_from_args(cluster_cli.build_parser().parse_args(argv), n_clusters=3, seed=0)
    assert (config.search.progressive_decisions, config.search.precision) == ((0.1, 0.7), "bf16")
    assert config.to_dict()["search"]["progressive_decisions"] == [0.1, 0.7]  # what config.json records
    for build in (search.build_parser, cluster_cli.build_parser):
        cfg = search.search_config(build().parse_args([]), 0, epochs=1)
        assert (cfg.progressive_decisions, cfg.precision, cfg.compile) == (None, "fp32", "off")
        cfg = search.search_config(build().parse_args(["--preset", "darts", *argv[:3]]), 0, epochs=1)
        assert cfg.progressive_decisions == (0.1, 0.7) and cfg.estimator == "softmax"
        with pytest.raises(SystemExit) as exc:
            build().parse_args(["--progressive-decisions", "0.7", "0.1"])
        assert exc.value.code == 2


@pytest.mark.slow
def test_cluster_ctrl_c_prints_the_package_resume_command_and_resume_alone_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from datanas_core.search import Searcher

    def interrupted(self: object, *a: object, **k: object) -> None:
        raise KeyboardInterrupt

    run = tmp_path / "run"
    argv = ["--data", "digits", "--image-size", "8", "--C", "5", "--steps", "2", "--epochs", "1",
            "--steps-per-epoch", "2", "--search-batch-size", "16", "--train-epochs", "1", "--train-batches", "2",
            "--batch-size", "16", "--kmeans-n-init", "1", "--no-pixel-baseline", "--no-progress", "--no-report"]  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(Searcher, "fit", interrupted)
        assert cluster_cli.main([*argv, "--out", str(run)]) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"interrupted: resume with: python -m datanas_fewshot.cluster --resume {run}"
    assert cluster_cli.main(["--resume", str(run)]) == 0
    results = json.loads((run / "clustering" / "results.json").read_text())
    assert results["n_clusters"] == 10 and "pixels_kmeans" not in results  # the run's own options
    assert json.loads((run / "config.json").read_text())["C"] == 5


def test_train_runtime_flags_come_from_runtime_args() -> None:
    """train's ``--seed``, ``--out`` and ``--verbose`` are core's RuntimeArgs flags (issue 19)."""
    args = train.build_parser().parse_args(["--genotype", "conv4"])
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs()
    args = train.build_parser().parse_args(["--genotype", "conv4", "--out", "o", "--seed", "4", "-v"])
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs(out=Path("o"), seed=4, verbose=1)
