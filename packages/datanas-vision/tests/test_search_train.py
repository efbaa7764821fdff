from __future__ import annotations

import json

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.search import SearchConfig, Searcher
from datanas_core.space.darts import DartsSpace
from datanas_core.space.nb201 import NB201Space
from datanas_vision import ClassificationTask, load_dataset, make_search_loaders
from datanas_vision import search as search_cli
from datanas_vision import train as train_cli
from datanas_vision._cli import parse_kv, parse_reg
from datanas_vision.compare import main as compare_main
from datanas_vision.compare import random_genotype, summarize
from datanas_vision.retrain import RetrainConfig, auxiliary_fits, resolve_cutout, retrain

TINY_SEARCH = ["--epochs", "1", "--max-per-class", "2", "--batch-size", "10", "--C", "4", "--layers", "3",
               "--threads", "1", "--no-progress", "--no-report", "--consistency-batches", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_digits():
    return load_dataset("digits", max_per_class=2, test_max_per_class=2)


def test_classification_task_loss_and_metrics():
    task = ClassificationTask()
    space = NB201Space()
    net = space.build_supernet(C=4, N=1, num_classes=3, in_channels=1)
    from datanas_core.search import arch_from_genotype

    arch = arch_from_genotype(
        space.from_string("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"), space
    )
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    loss, logs = task.loss(net, (x, y), arch)
    logits = net(x, arch)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, y))
    assert float(logs["acc"]) == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    m = task.metrics(net, (x, y), arch)
    assert m["top5"] == 1.0 and set(m) == {"loss", "acc", "top5"}
    assert task.batch_size((x, y)) == 5


@pytest.mark.parametrize("estimator", ["egs", "softmax", "gdas", "snas", "dirichlet"])
def test_every_estimator_steps_on_images(estimator, tiny_digits):
    tr, va = make_search_loaders(tiny_digits, batch_size=8, seed=0)
    cfg = SearchConfig(epochs=1, estimator=estimator, estimator_options={}, regularizers=())
    s = Searcher(
        NB201Space(), ClassificationTask(), cfg, supernet_kwargs=dict(C=4, N=1, num_classes=10, in_channels=1)
    )
    before = [p.detach().clone() for p in s.distribution.parameters()]
    logs = s.step(next(iter(tr)), next(iter(va)))
    assert {"train_loss", "train_acc"} <= set(logs)
    after = list(s.distribution.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # the architecture moved
    NB201Space().validate(s.derive())


def _args(argv):
    return search_cli.build_parser().parse_args(argv)


def test_search_config_from_flags():
    cfg = search_cli.search_config(_args(["--estimator", "gdas", "--executor", "sparse", "--reg", "none",
                                          "--rule", "topk_pairs", "--epochs", "3"]), seed=4)  # fmt: skip
    assert (cfg.estimator, cfg.executor, cfg.regularizers, cfg.rule, cfg.epochs, cfg.seed) == (
        "gdas",
        "sparse",
        (),
        "topk_pairs",
        3,
        4,
    )
    assert cfg.estimator_options == {}
    default = search_cli.search_config(_args([]), seed=0)
    assert default.estimator == "egs" and default.estimator_options == {"samples": 4}  # DEFAULT_METHOD
    assert default.regularizers == ({"type": "adc", "weight": 0.1},)
    m4 = search_cli.search_config(_args(["--samples", "4", "--reg", "adc:0.3", "--reg", "l2",
                                         "--estimator-option", "tau=linear:3:1"]), seed=0)  # fmt: skip
    assert m4.estimator_options == {"samples": 4, "tau": "linear:3:1"}
    assert m4.regularizers == ({"type": "adc", "weight": 0.3}, {"type": "l2", "weight": 0.001})
    gdas = search_cli.search_config(_args(["--preset", "gdas", "--epochs", "2"]), seed=0)
    assert gdas.step_order == "weight_first" and gdas.epochs == 2


def test_reg_and_kv_parsing_errors_name_valid_choices():
    valid = ["adc", "l2"]
    assert parse_reg("none", valid) is None
    assert parse_reg("adc:0.5:distance=l2,normalize=true", valid) == {
        "type": "adc", "weight": 0.5, "distance": "l2", "normalize": True
    }  # fmt: skip
    with pytest.raises(ConfigError, match="valid: adc, l2, none"):
        parse_reg("adx", valid)
    with pytest.raises(ConfigError, match="not a number"):
        parse_reg("adc:heavy", valid)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_kv(["tau"], "--estimator-option")


def test_search_cli_smoke_writes_genotype_and_train_cli_retrains_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert search_cli.main([*TINY_SEARCH, "--out", str(run)]) == 0
    genotype = Genotype.load(run / "genotype.json")
    DartsSpace().validate(genotype)
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == "digits" and config["search_config"]["estimator"] == "egs"
    out = capsys.readouterr().out
    assert "genotype: darts;" in out and f"run directory: {run}" in out
    # a second search into the same directory is refused (exit status 2) instead of overwriting it
    assert search_cli.main([*TINY_SEARCH, "--out", str(run)]) == 2

    argv = ["--genotype", str(run), "--epochs", "1", "--max-per-class", "3", "--test-max-per-class", "2",
            "--C", "4", "--layers", "3", "--batch-size", "16", "--threads", "1", "--no-progress"]  # fmt: skip
    assert train_cli.main(argv) == 0
    results = json.loads((run / "train-digits" / "results.json").read_text())
    assert 0.0 <= results["test"]["top1"] <= 1.0 and results["test"]["num_images"] == 20
    assert results["genotype"] == genotype.to_dict() and len(results["history"]) == 1
    # the search run's summary and report show the retraining result
    appended = json.loads((run / "summary.json").read_text())["results"]["retrain (digits)"]
    assert appended["metrics"]["test_top1"] == results["test"]["top1"]
    assert appended["source"] == str(run / "train-digits")
    report = (run / "report.md").read_text()
    assert "| retrain (digits) | test_top1 " in report[: report.index("## Run")], report[:1500]
    import timm

    args = dict(results["model_args"])
    model = timm.create_model(args.pop("model_name"), genotype=genotype, **args)
    model.load_state_dict(torch.load(run / "train-digits" / "model.pth"))
    assert train_cli.main(argv) == 2  # results exist: refused without --overwrite


def test_search_cli_nb201_saves_benchmark_string(tmp_path, capsys):
    run = tmp_path / "nb"
    argv = [*TINY_SEARCH, "--space", "nb201", "--layers", "1", "--estimator", "gdas", "--reg", "none",
            "--out", str(run)]  # fmt: skip
    assert search_cli.main(argv) == 0
    text = (run / "nb201.txt").read_text().strip()
    space = NB201Space()
    assert space.from_string(text) == Genotype.load(run / "genotype.json")
    assert f"NB201 string: {text}" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["cli"]["genotype"]["space"] == "nb201"


def test_search_cli_reports_bad_input(tmp_path):
    assert search_cli.main([*TINY_SEARCH, "--data", "imagefolder", "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(SystemExit):
        search_cli.main(["--estimator", "nope"])


def test_retrain_auxiliary_head_on_32px(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"a": 4, "b": 4}, "test": {"a": 1, "b": 1}}, size=(32, 32))
    data = load_dataset("imagefolder", tmp_path)
    assert auxiliary_fits(data.image_size) and resolve_cutout(None, data.image_size) == 16
    assert not auxiliary_fits((8, 8)) and resolve_cutout(None, (8, 8)) == 2
    cfg = RetrainConfig(epochs=2, batch_size=4, C=4, layers=3, seed=1)
    res = retrain("darts_v2", data, cfg)
    assert res["config"]["auxiliary"] is True
    assert [h["drop_path"] for h in res["history"]] == [0.0, 0.1]  # linear ramp 0.2 * epoch / epochs
    assert res["history"][0]["lr"] == pytest.approx(0.025) and res["history"][1]["lr"] < 0.025
    with pytest.raises(ConfigError, match="no-auxiliary"):
        retrain(
            "darts_v2", load_dataset("digits", max_per_class=1), RetrainConfig(C=4, layers=3, auxiliary=True)
        )


def test_retrain_is_reproducible(tiny_digits):
    cfg = RetrainConfig(epochs=1, batch_size=8, C=4, layers=3, seed=3)
    a = retrain("gdas", tiny_digits, cfg)
    b = retrain("gdas", tiny_digits, cfg)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["test"] == b["test"]


@pytest.mark.parametrize("space", [DartsSpace(), DartsSpace(extended=True), NB201Space()])
def test_random_genotypes_are_valid_seeded_and_varied(space):
    g1 = [random_genotype(space, torch.Generator().manual_seed(0)) for _ in range(2)]
    assert g1[0] == g1[1]
    many = {random_genotype(space, torch.Generator().manual_seed(s)) for s in range(8)}
    assert len(many) > 4
    if space.name != "nb201":
        for g in many:
            for ct, spec in space.cells().items():
                for node in spec.nodes:
                    srcs = [e.src for e in g.cells[ct].inputs_of(node)]
                    assert len(srcs) == 2 and len(set(srcs)) == 2


def test_summarize_median_and_rank():
    rows = [{"kind": "searched", "top1": 0.8}] + [
        {"kind": "random", "top1": a} for a in (0.6, 0.7, 0.9, 0.75)
    ]
    s = summarize(rows)
    assert s["random_median"] == pytest.approx(0.725) and s["beats_random_median"] is True
    assert s["searched_rank"] == 2 and s["random_better_than_searched"] == 1
    assert s["searched_minus_median"] == pytest.approx(0.075)
    tie = summarize(
        [{"kind": "searched", "top1": 0.36000000596}]
        + [{"kind": "random", "top1": a} for a in (0.3, 0.36, 0.42)]
    )
    assert tie["beats_random_median"] is False and tie["searched_rank"] == 2


def test_compare_cli_with_given_genotype_and_reuse(tmp_path):
    argv = ["--out", str(tmp_path), "--genotype", "darts_v2", "--random", "2", "--max-per-class", "2",
            "--test-max-per-class", "1", "--train-epochs", "1", "--C", "4", "--layers", "3",
            "--batch-size", "10", "--threads", "1"]  # fmt: skip
    assert compare_main(argv) == 0
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert [r["kind"] for r in doc["rows"]] == ["searched", "random", "random"]
    assert doc["summary"]["num_random"] == 2
    stamp = (tmp_path / "cells" / "random_01.json").stat().st_mtime_ns
    assert compare_main(argv) == 0  # finished cells are reused, not retrained
    assert (tmp_path / "cells" / "random_01.json").stat().st_mtime_ns == stamp
    assert "| searched | searched |" in (tmp_path / "compare.md").read_text()


@pytest.mark.slow
def test_compare_jobs_gives_the_sequential_table(tmp_path):
    """--jobs 3: search and retrainings in child processes; the same rows as one process doing it all."""
    common = ["--random", "2", "--max-per-class", "3", "--test-max-per-class", "2", "--train-epochs", "1",
              "--C", "4", "--layers", "2", "--batch-size", "10", "--threads", "1", "--device", "cpu",
              "--space", "nb201", "--search-epochs", "1", "--search-C", "4", "--search-layers", "1",
              "--search-batch-size", "8"]  # fmt: skip
    assert compare_main([*common, "--out", str(tmp_path / "seq")]) == 0
    assert compare_main([*common, "--out", str(tmp_path / "par"), "--jobs", "3"]) == 0
    seq = json.loads((tmp_path / "seq" / "compare.json").read_text())
    par = json.loads((tmp_path / "par" / "compare.json").read_text())
    key = [(r["name"], r["genotype"], r["top1"], r["params"]) for r in seq["rows"]]
    assert key == [(r["name"], r["genotype"], r["top1"], r["params"]) for r in par["rows"]]
    assert sorted(p.name for p in (tmp_path / "par" / "logs").iterdir()) == [
        "random_00.log", "random_01.log", "search.log", "searched.log"
    ]  # fmt: skip
    assert par["search_seconds"] is not None
    # the comparison is recorded in its search run's summary and report
    appended = json.loads((tmp_path / "seq" / "search" / "summary.json").read_text())["results"]
    assert (
        appended["compare (digits, 2 random cells)"]["metrics"]["searched_top1"]
        == seq["summary"]["searched_top1"]
    )


def test_compare_forwards_the_shared_search_options(tmp_path, monkeypatch):
    """--progressive-decisions, --precision and --compile given to compare reach the search it runs (its saved
    config); not given, none of them is in the search's argv (the preset's / SearchConfig's value applies)."""
    from datanas_vision import compare

    base = ["--space", "nb201", "--search-epochs", "1", "--search-C", "4", "--search-layers", "1",
            "--search-batch-size", "8", "--max-per-class", "3", "--test-max-per-class", "1", "--threads", "1",
            "--device", "cpu", "--random", "0"]  # fmt: skip
    shared = ["--progressive-decisions", "0.1", "0.7", "--precision", "fp32", "--compile", "off"]
    assert compare_main([*base, *shared, "--out", str(tmp_path / "run"), "--only", "search"]) == 0
    saved = json.loads((tmp_path / "run" / "search" / "config.json").read_text())["search_config"]
    assert saved["progressive_decisions"] == [0.1, 0.7]
    assert (saved["precision"], saved["compile"]) == ("fp32", "off")

    # the search's argv, without running it: the flags only when given
    genotype = (tmp_path / "run" / "search" / "genotype.json").read_text()
    seen: list[list[str]] = []

    def fake_search(argv):
        seen.append(list(argv))
        (tmp_path / "fake" / "search").mkdir(parents=True, exist_ok=True)
        (tmp_path / "fake" / "search" / "genotype.json").write_text(genotype)
        return 0

    monkeypatch.setattr(search_cli, "main", fake_search)
    for extra in ([], ["--progressive-decisions", "0", "1", "--compile", "default"]):
        (tmp_path / "fake" / "search" / "genotype.json").unlink(missing_ok=True)
        args = compare.build_parser().parse_args([*base, *extra, "--out", str(tmp_path / "fake")])
        compare._search(args, None, tmp_path / "fake", torch.device("cpu"))
    plain, given = seen
    assert not {"--progressive-decisions", "--precision", "--compile"} & set(plain)
    i = given.index("--progressive-decisions")
    assert given[i : i + 3] == ["--progressive-decisions", "0.0", "1.0"]
    assert given[given.index("--compile") + 1] == "default" and "--precision" not in given


def test_compare_rejects_bad_jobs_and_only(tmp_path, caplog):
    base = ["--out", str(tmp_path), "--genotype", "darts_v2", "--random", "1", "--max-per-class", "2",
            "--test-max-per-class", "1"]  # fmt: skip
    assert compare_main([*base, "--jobs", "0"]) == 2
    assert "--jobs must be a positive integer, got 0" in caplog.text
    assert compare_main([*base, "--only", "random_07"]) == 2
    assert "valid: search, searched, random_00" in caplog.text


def test_search_cli_resume_reproduces_the_uninterrupted_run(tmp_path):
    argv = [
        *TINY_SEARCH[:1],
        "2",
        *TINY_SEARCH[2:],
        "--checkpoint-every",
        "1",
        "--space",
        "nb201",
        "--layers",
        "1",
    ]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert search_cli.main([*argv, "--out", str(full)]) == 0
    assert search_cli.main([*argv, "--out", str(cut)]) == 0
    ckpts = sorted((cut / "checkpoints").iterdir())
    ckpts[-1].unlink()  # as if the run had died before its last checkpoint
    assert search_cli.main([*argv, "--resume", str(cut)]) == 0

    def epochs(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["epoch"], r["train_loss"], r["val_loss"]) for r in rows if r["kind"] == "epoch"]

    assert epochs(cut) == epochs(full)
    assert Genotype.load(cut / "genotype.json") == Genotype.load(full / "genotype.json")
