"""Re-training: parameter averaging, the NT-ASGD switch, evaluation and trainer state."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_lm import LMTrainer, ParameterAverager, RNNSpace, TrainConfig, evaluate_lm, load_genotype
from datanas_lm.data import batchify, load_text_corpus

V = 32


def _model(ntoken: int, h: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    return RNNSpace().build_derived(load_genotype("darts_v2"), ntoken=ntoken, ninp=h, nhid=h, dropout=0.1)


def _cfg(**kw: object) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 4, "eval_batch_size": 2, "test_batch_size": 2, "bptt": 6, "lr": 5.0}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_train_config_validates_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="clip"):
        TrainConfig(clip=0)
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epoch": 3})
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_parameter_averager_is_the_running_mean() -> None:
    lin = torch.nn.Linear(2, 1, bias=False)
    seen = []
    avg = None
    for k in range(4):
        with torch.no_grad():
            lin.weight.fill_(float(k))
        seen.append(lin.weight.detach().clone())
        if avg is None:
            avg = ParameterAverager(lin)
        else:
            avg.update(lin)
    assert avg is not None
    with avg.applied(lin):
        assert torch.allclose(lin.weight, torch.stack(seen).mean(0))
    assert torch.equal(lin.weight, seen[-1])  # restored afterwards


def test_nt_asgd_switches_when_validation_stops_improving(
    tiny_corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = load_text_corpus(tiny_corpus_dir)
    trainer = LMTrainer(
        _model(len(corpus.vocab)), corpus, _cfg(epochs=7, nonmono=2, train_tokens_per_epoch=40)
    )
    # epoch 4: 3.6 > min(5, 4)? no.  epoch 5: 3.7 > min(5, 4, 3) = 3: switch (DARTS/AWD-LSTM rule)
    losses = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0])
    monkeypatch.setattr(trainer, "evaluate", lambda split="valid", **kw: next(losses))
    trainer.fit()
    switch = [r["epoch"] for r in trainer.history if r.get("asgd_switch")]
    assert switch == [5]
    assert [r["asgd"] for r in trainer.history] == [False] * 6 + [True]
    assert [r.get("best", False) for r in trainer.history] == [True, True, True] + [False] * 4


def test_trainer_learns_scores_and_round_trips(patterned_corpus_dir: Path) -> None:
    corpus = load_text_corpus(patterned_corpus_dir)
    model = _model(len(corpus.vocab))
    before = evaluate_lm(model, batchify(corpus.valid, 2), 6)
    trainer = LMTrainer(model, corpus, _cfg(epochs=2))
    scores = trainer.fit()
    assert math.isfinite(scores["val_ppl"]) and math.isfinite(scores["test_ppl"])
    assert scores["val_loss"] < before  # training helps on held-out text
    assert scores["val_ppl"] == pytest.approx(math.exp(scores["val_loss"]))
    other = LMTrainer(_model(len(corpus.vocab)), corpus, _cfg(epochs=2))
    other.load_state_dict(trainer.state_dict())
    assert other.epoch == 2 and other.history == trainer.history
    assert other.evaluate("valid") == pytest.approx(trainer.evaluate("valid"))
    with pytest.raises(ConfigError, match="valid, test"):
        trainer.evaluate("train")


def test_evaluation_carries_the_state_over_windows(tiny_corpus_dir: Path) -> None:
    corpus = load_text_corpus(tiny_corpus_dir)
    model = _model(len(corpus.vocab)).eval()
    data = batchify(corpus.valid, 2)
    n = (data.size(0) - 1) // 6 * 6
    short = evaluate_lm(model, data[: n + 1], 6)
    with torch.no_grad():
        logits, _ = model(data[:n], model.init_hidden(2))
    whole = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), data[1 : n + 1].reshape(-1)
    )
    assert short == pytest.approx(float(whole), rel=1e-5)
