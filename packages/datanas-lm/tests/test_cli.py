"""CLI smoke tests on a tiny generated corpus (textdir) with tiny sizes; errors and the public API."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

import datanas_lm
from datanas_core.genotype import CellGenotype, Genotype
from datanas_lm import compare, search, train
from datanas_lm.space import RNNSpace

TINY = ["--emsize", "6", "--nhid", "6", "--batch-size", "4", "--eval-batch-size", "2", "--bptt", "6"]


def test_search_cli_writes_a_valid_genotype_and_a_report(patterned_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    argv = ["--data", "textdir", "--data-dir", str(patterned_corpus_dir), *TINY, "--epochs", "1"]
    argv += ["--train-tokens", "96", "--eval-tokens", "48", "--out", str(out), "--no-progress"]
    assert search.main(argv) == 0
    g = Genotype.load(out / "genotype.json")
    RNNSpace().validate(g)
    assert g.space == "lm.darts_rnn"
    assert (out / "report.html").is_file()
    svg = (out / "figures" / "cell_recurrent.svg").read_text(encoding="utf-8")
    assert svg.count('class="edge"') >= len(g.cells["recurrent"].edges)
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert cfg["search_config"]["estimator"] == "egs" and cfg["search_config"]["rule"] == "data"
    # train_loss/val_loss are cross-entropies and the perplexities next to them are their exponentials;
    # the regularised training loss is train_objective
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    epoch = [r for r in records if r.get("kind") == "epoch"][-1]
    for split in ("train", "val"):
        assert epoch[f"{split}_ppl"] == pytest.approx(math.exp(epoch[f"{split}_loss"]))
    assert "train_objective" in epoch and "train_ce" not in epoch

    # the derived cell retrains through the train CLI
    tout = tmp_path / "train"
    targv = [
        "--genotype",
        str(out / "genotype.json"),
        "--data",
        "textdir",
        "--data-dir",
        str(patterned_corpus_dir),
    ]
    targv += [*TINY, "--epochs", "1", "--train-tokens", "96", "--eval-tokens", "48", "--out", str(tout)]
    assert train.main(targv) == 0
    summary = json.loads((tout / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "completed" and summary["final"]["test_ppl"] > 1
    assert (tout / "report.html").is_file() and (tout / "figures" / "cell_recurrent.svg").is_file()
    # the search run's summary and report show the retraining result
    appended = json.loads((out / "summary.json").read_text(encoding="utf-8"))["results"]["retrain (textdir)"]
    assert appended["metrics"]["test_ppl"] == summary["final"]["test_ppl"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| retrain (textdir) | test_ppl " in report[: report.index("## Run")]


def test_search_cli_darts_method_derives_one_predecessor_per_node(
    patterned_corpus_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "darts"
    argv = [
        "--data",
        "textdir",
        "--data-dir",
        str(patterned_corpus_dir),
        *TINY,
        "--epochs",
        "1",
        "--preset",
        "darts",
    ]
    argv += ["--train-tokens", "48", "--eval-tokens", "24", "--out", str(out), "--no-progress", "--no-report"]
    assert search.main(argv) == 0
    cell = Genotype.load(out / "genotype.json").cells["recurrent"]
    assert [len(cell.inputs_of(j)) for j in range(1, 9)] == [1] * 8


def test_train_cli_lstm_and_resume(patterned_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lstm"
    argv = ["--model", "lstm", "--data", "textdir", "--data-dir", str(patterned_corpus_dir), *TINY]
    argv += ["--train-tokens", "48", "--eval-tokens", "24", "--no-report"]
    assert train.main([*argv, "--epochs", "1", "--out", str(out)]) == 0
    assert train.main([*argv, "--epochs", "1", "--out", str(out)]) == 2  # the directory holds a run
    assert train.main([*argv, "--epochs", "1", "--resume", str(out)]) == 0  # nothing left to do
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["epoch"] == 1


def _compare_argv(genotype: str, corpus_dir: Path, out: Path) -> list[str]:
    """A tiny comparison of ``genotype`` with two random cells and the LSTM."""
    argv = [
        "--genotype",
        genotype,
        "--random",
        "2",
        "--data",
        "textdir",
        "--data-dir",
        str(corpus_dir),
        *TINY,
    ]
    return argv + ["--epochs", "1", "--train-tokens", "48", "--eval-tokens", "24", "--out", str(out)]


def test_compare_cli_table(patterned_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    run = tmp_path / "search"  # a search run directory holding the compared genotype
    run.mkdir()
    datanas_lm.load_genotype("darts_v2").save(run / "genotype.json")
    (run / "config.json").write_text("{}", encoding="utf-8")
    assert compare.main(_compare_argv(str(run / "genotype.json"), patterned_corpus_dir, out)) == 0
    doc = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in doc["rows"]] == ["searched", "random_1", "random_2", "lstm"]
    vals = sorted(r["val_ppl"] for r in doc["rows"][1:3])
    assert doc["median_random"]["val_ppl"] == pytest.approx(sum(vals) / 2)
    assert "median of random cells" in (out / "comparison.md").read_text(encoding="utf-8")
    # the comparison is recorded in the search run
    results = json.loads((run / "summary.json").read_text(encoding="utf-8"))["results"]
    metrics = results["compare (textdir, 2 random cells)"]["metrics"]
    assert metrics["searched_val_ppl"] == doc["rows"][0]["val_ppl"]
    assert metrics["random_median_val_ppl"] == doc["median_random"]["val_ppl"]
    assert (run / "report.html").is_file()


def test_cli_errors_are_one_clear_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    rc = search.main(
        ["--data", "ptb", "--data-dir", str(tmp_path / "nope"), "--no-download", "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    assert "ptb.train.txt" in caplog.text and "--data-dir" in caplog.text
    assert search.main(["--data", "textdir", "--out", str(tmp_path / "o2")]) == 2
    assert "--data textdir needs --data-dir" in caplog.text
    assert train.main(["--data", "textdir", "--data-dir", str(tmp_path)]) == 2
    assert "--genotype is required" in caplog.text
    with pytest.raises(SystemExit):
        search.main(["--data", "wikitext"])  # argparse choices


def test_public_api_is_pinned() -> None:
    assert sorted(datanas_lm.__all__) == sorted(
        [
            "ACTIVATIONS",
            "BUNDLED_GENOTYPES",
            "DATASETS",
            "RNN_OPS",
            "BPTTLoader",
            "Corpus",
            "DerivedRecurrentCell",
            "LMBatch",
            "LMSearchTask",
            "LMTrainer",
            "LSTMLanguageModel",
            "ParameterAverager",
            "RNNModel",
            "RNNSpace",
            "RNNSupernet",
            "RecurrentLanguageModel",
            "SearchRecurrentCell",
            "TrainConfig",
            "Vocabulary",
            "batchify",
            "detach_hidden",
            "evaluate_lm",
            "load_corpus",
            "load_genotype",
            "load_ptb",
            "load_text_corpus",
        ]
    )
    for name in datanas_lm.__all__:
        assert getattr(datanas_lm, name) is not None


@pytest.mark.slow
def test_compare_cli_worker_processes_match_the_sequential_run(
    patterned_corpus_dir: Path, tmp_path: Path
) -> None:
    argv = ["--genotype", "darts_v1", "--random", "1", "--no-lstm", "--data", "textdir"]
    argv += ["--data-dir", str(patterned_corpus_dir), *TINY, "--epochs", "1", "--train-tokens", "48"]
    assert compare.main([*argv, "--out", str(tmp_path / "seq")]) == 0
    assert compare.main([*argv, "--out", str(tmp_path / "par"), "--jobs", "2"]) == 0
    seq = json.loads((tmp_path / "seq" / "comparison.json").read_text(encoding="utf-8"))
    par = json.loads((tmp_path / "par" / "comparison.json").read_text(encoding="utf-8"))
    assert [r["val_ppl"] for r in seq["rows"]] == pytest.approx([r["val_ppl"] for r in par["rows"]], rel=1e-4)


def test_compare_keeps_going_when_a_model_diverges(patterned_corpus_dir: Path, tmp_path: Path) -> None:
    # a learning rate that makes every model's loss overflow: each diverged model is a row of the table,
    # not the end of the comparison
    out = tmp_path / "cmp"
    argv = _compare_argv("darts_v2", patterned_corpus_dir, out) + ["--lr", "1e30", "--clip", "1e30"]
    assert compare.main(argv) == 0
    doc = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in doc["rows"]] == ["searched", "random_1", "random_2", "lstm"]
    for row in doc["rows"]:
        assert row["val_ppl"] is None and row["test_ppl"] is None
        assert "became" in row["diverged"] and row["params"] > 0
    assert doc["median_random"] == {"val_ppl": None, "test_ppl": None}
    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert md.count("diverged") == 10  # valid and test of the four rows and of the median row


def test_compare_median_counts_a_diverged_random_cell_as_the_worst() -> None:
    rows = [
        {"name": "random_1", "val_ppl": None, "test_ppl": None},
        {"name": "random_2", "val_ppl": 300.0, "test_ppl": 290.0},
        {"name": "random_3", "val_ppl": 200.0, "test_ppl": 310.0},
    ]
    assert compare._median_random(rows) == {"val_ppl": 300.0, "test_ppl": 310.0}
    assert compare._median_random(rows[:2]) == {"val_ppl": None, "test_ppl": None}  # median of 300 and inf
    assert compare._median_random([]) is None
    searched = {"name": "searched", "val_ppl": None, "test_ppl": None, "diverged": "loss became inf"}
    assert compare._summary_metrics(searched, {"val_ppl": 300.0, "test_ppl": None}) == {
        "searched_diverged": True,
        "random_median_val_ppl": 300.0,
    }


def test_train_runs_started_before_node_merge_resume_with_their_sum(
    patterned_corpus_dir: Path, tmp_path: Path
) -> None:
    # a multi-pair cell trained before --node-merge existed summed its pairs: resumed, it keeps summing (and the
    # missing setting is not a configuration difference); new runs average
    from datanas_core.runtime.checkpoint import CheckpointManager

    cell = Genotype(
        "lm.darts_rnn",
        {
            "recurrent": CellGenotype(
                ((0, 1, "tanh"), (0, 1, "relu"), *((j - 1, j, "tanh") for j in range(2, 9))),
                tuple(range(1, 9)),
            )
        },
    )
    cell.save(tmp_path / "cell.json")
    run = tmp_path / "train"
    argv = [
        "--genotype",
        str(tmp_path / "cell.json"),
        "--data",
        "textdir",
        "--data-dir",
        str(patterned_corpus_dir),
    ]
    argv += [
        *TINY,
        "--epochs",
        "1",
        "--train-tokens",
        "96",
        "--eval-tokens",
        "48",
        "--no-report",
        "--out",
        str(run),
    ]
    assert train.main(argv) == 0
    assert json.loads((run / "config.json").read_text(encoding="utf-8"))["settings"]["node_merge"] == "mean"
    # make it a run of the old code: no node_merge in its config, checkpoint config and manifest
    ckpts = CheckpointManager(run / "checkpoints")
    info, state = ckpts.load_latest()
    del state["config"]["settings"]["node_merge"]
    info.path.unlink()
    ckpts.save(state, step=info.step, epoch=info.epoch, batch=info.batch)
    doc = json.loads((run / "config.json").read_text(encoding="utf-8"))
    del doc["settings"]["node_merge"]
    (run / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    assert train.main(["--resume", str(run)]) == 0
    resumed = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert resumed["settings"]["node_merge"] == "sum"
    # the missing setting was the only difference: a real one is still refused
    assert train.main(["--resume", str(run), "--node-merge", "mean"]) == 2
