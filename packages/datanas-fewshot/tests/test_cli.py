from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def test_cluster_cli_rejects_missing_data_dir(caplog):
    from datanas_fewshot.cluster.__main__ import main

    assert main(["--data", "mnist", "--out", "unused-never-created"]) == 2
    assert "needs a data directory" in caplog.text


def test_cluster_cli_parser_choices():
    from datanas_fewshot.cluster.__main__ import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--data", "cifar"])
    args = build_parser().parse_args(["--data", "digits", "--objective", "scan", "--no-pixel-baseline"])
    assert args.objective == "scan" and args.pixel_baseline is False


def test_train_cli_rejects_bad_genotype_spec(tmp_path, caplog):
    pytest.importorskip("learn2learn")
    omniglot = DATA / "omniglot"
    if not (omniglot / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot archives not found under {omniglot}")
    from datanas_fewshot.train import main

    rc = main(["--genotype", "random:x", "--data-dir", str(omniglot), "--out", str(tmp_path)])
    assert rc == 2 and "random:N[@i,j]" in caplog.text


@pytest.mark.slow
def test_cluster_cli_end_to_end_on_digits(tmp_path, capsys):
    from datanas_fewshot.cluster.__main__ import main

    out = tmp_path / "run"
    argv = ["--data", "digits", "--image-size", "8", "--C", "4", "--steps", "2", "--epochs", "1",
            "--steps-per-epoch", "2", "--search-batch-size", "16", "--train-epochs", "1",
            "--train-batches", "2", "--batch-size", "16", "--kmeans-n-init", "1", "--out", str(out),
            "--no-progress", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((out / "clustering" / "results.json").read_text())
    assert {"kmeans", "head"} <= set(res["searched"]) and "pixels_kmeans" in res
    for name in ("report.html", "confusion_kmeans.svg", "confusion_head.svg", "projection.svg", "model.pt"):
        assert (out / "clustering" / name).is_file(), name
    assert (out / "genotype.json").is_file()
    block = json.loads((out / "summary.json").read_text())["cli"]  # the summary block every CLI prints
    assert block["extra"]["seed"] == 0 and block["run_dir"] == str(out)
    nmi = block["metrics"]["kmeans_nmi"]  # rounded to 4 decimals
    assert nmi == round(res["searched"]["kmeans"]["nmi"], 4)
    printed = capsys.readouterr().out
    assert "== cluster ==" in printed and f"kmeans_nmi={nmi:.4g}" in printed


@pytest.mark.slow
@pytest.mark.l2l
@pytest.mark.data
def test_fewshot_search_and_train_clis_end_to_end(tmp_path):
    pytest.importorskip("learn2learn")
    omniglot = DATA / "omniglot"
    if not (omniglot / "all_runs.zip").is_file():
        pytest.skip(f"Omniglot archives not found under {omniglot}")
    from datanas_fewshot.search import main as search
    from datanas_fewshot.train import main as train

    common = ["--data", "omniglot", "--data-dir", str(omniglot), "--image-size", "16", "--queries", "2",
              "--C", "4", "--steps", "2"]  # fmt: skip
    run = tmp_path / "search"
    assert search([*common, "--epochs", "1", "--episodes", "2", "--out", str(run), "--no-progress"]) == 0
    genotype = run / "genotype.json"
    assert genotype.is_file()
    out = tmp_path / "train"
    assert train([*common, "--genotype", str(genotype), "--train-episodes", "2", "--test-episodes", "3",
                  "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())["results"][0]
    assert res["meta_test"]["n"] == 3 and len(res["official_runs"]) == 20
