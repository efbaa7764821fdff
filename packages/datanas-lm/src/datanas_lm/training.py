"""Re-training a language model from scratch: SGD with a non-monotone switch to averaged SGD (NT-ASGD).

This is the protocol of AWD-LSTM and DARTS ``rnn/train.py``: plain SGD (learning rate scaled by
``seq_len / bptt`` for every variable-length window), gradient-norm clipping, AR/TAR; after every epoch the
validation loss is computed and, when it is worse than the best loss from more than ``nonmono`` epochs
ago, training switches to averaged SGD: from then on the iterate average is what gets evaluated and kept.
The best model (by validation loss) is restored at the end and scored on the validation and test sets.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, NumericalError
from datanas_lm.data.text import BPTTLoader, Corpus, batchify, perplexity
from datanas_lm.model import cross_entropy, detach_hidden
from datanas_lm.regularization import activation_regularization, temporal_activation_regularization

__all__ = ["LMTrainer", "ParameterAverager", "TrainConfig", "evaluate_lm"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of LM re-training (defaults: DARTS ``rnn/train.py`` on PTB).

    Attributes:
        epochs: training epochs (DARTS: up to 8000; the NT-ASGD switch happens long before).
        batch_size, eval_batch_size, test_batch_size: columns of the batchified streams.
        bptt: nominal window length; windows vary around it (AWD-LSTM).
        lr, weight_decay, clip: SGD learning rate, weight decay, gradient-norm clip.
        alpha, beta: AR and TAR weights.
        nonmono: the NT-ASGD non-monotone interval; ``asgd=False`` never switches.
        max_seq_len_delta: windows are at most ``bptt + max_seq_len_delta`` long.
        train_tokens_per_epoch: train on a contiguous subset of about this many tokens per epoch (CPU
            budgets; ``None``: the whole training set).
        eval_tokens: validate on the first this-many validation tokens each epoch (``None``: all); the final
            scores always use the full validation and test sets.
        seed: seeds window lengths and subsets.
    """

    epochs: int = 8000
    batch_size: int = 64
    eval_batch_size: int = 10
    test_batch_size: int = 1
    bptt: int = 35
    lr: float = 20.0
    weight_decay: float = 8e-7
    clip: float = 0.25
    alpha: float = 0.0
    beta: float = 1e-3
    nonmono: int = 5
    asgd: bool = True
    max_seq_len_delta: int = 20
    train_tokens_per_epoch: int | None = None
    eval_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "test_batch_size", "bptt", "nonmono"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        for name in ("weight_decay", "alpha", "beta", "max_seq_len_delta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.clip > 0:
            raise ConfigError(f"clip must be > 0, got {self.clip!r}")
        for name in ("train_tokens_per_epoch", "eval_tokens"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and v > 0):
                raise ConfigError(f"{name} must be a positive integer or None, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig field(s) {unknown}; valid fields: {', '.join(sorted(names))}"
            )
        return cls(**dict(d))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


class ParameterAverager:
    """Running (uniform) average of a model's parameters since the switch to averaged SGD.

    Example:
        >>> avg = ParameterAverager(model)      # doctest: +SKIP
        >>> avg.update(model)                   # after every optimiser step
        >>> with avg.applied(model): ...        # evaluate with the averaged weights
    """

    def __init__(self, model: nn.Module) -> None:
        self.avg = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.count = 1

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.count += 1
        for n, p in model.named_parameters():
            a = self.avg[n]
            a.add_(p.detach() - a, alpha=1.0 / self.count)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Temporarily load the averaged parameters into ``model``."""
        backup = {n: p.detach().clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(self.avg[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(backup[n])

    def state_dict(self) -> dict[str, Any]:
        return {"avg": {n: t.clone() for n, t in self.avg.items()}, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.avg = {n: t.clone() for n, t in state["avg"].items()}
        self.count = int(state["count"])


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    data: Tensor,
    bptt: int,
    *,
    max_tokens: int | None = None,
) -> float:
    """Mean per-token cross-entropy of ``model`` over a batchified stream ``data [T, B]`` (eval mode).

    The hidden state is carried across fixed-length windows from the start of the stream.
    """
    was_training = model.training
    model.eval()
    loader = BPTTLoader(
        data, bptt, stream="eval", variable_length=False, max_tokens=max_tokens, random_offset=False
    )
    hidden = model.init_hidden(data.size(1))
    total, count = 0.0, 0
    for batch in loader:
        logits, hidden = model(batch.inputs, hidden)
        n = batch.num_tokens
        total += float(cross_entropy(logits, batch.targets)) * n
        count += n
        hidden = detach_hidden(hidden)
    model.train(was_training)
    return total / max(count, 1)


class LMTrainer:
    """Train a recurrent language model (any model with the recurrent contract) with NT-ASGD.

    Args:
        model: e.g. :class:`~datanas_lm.model.RNNModel` or :class:`~datanas_lm.model.LSTMLanguageModel`;
            the data follow its device.
        corpus: train/valid/test token streams.
        config: hyper-parameters.
        callbacks: objects with ``on_step_end(trainer, logs)`` and/or ``on_epoch_end(trainer, record)``.
        generator: for the dropout masks (the global generator otherwise).

    Example:
        >>> trainer = LMTrainer(model, corpus, TrainConfig(epochs=3))   # doctest: +SKIP
        >>> result = trainer.fit()                                      # {"val_ppl": ..., "test_ppl": ...}
    """

    def __init__(
        self,
        model: nn.Module,
        corpus: Corpus,
        config: TrainConfig | None = None,
        *,
        callbacks: Sequence[Any] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        self.model = model
        self.config = cfg = config or TrainConfig()
        self.corpus = corpus
        dev = next(iter(model.parameters())).device
        self.train_data = batchify(corpus.train, cfg.batch_size).to(dev)
        self.val_data = batchify(corpus.valid, cfg.eval_batch_size).to(dev)
        self.test_data = batchify(corpus.test, cfg.test_batch_size).to(dev)
        self.train_loader = BPTTLoader(
            self.train_data,
            cfg.bptt,
            stream="train",
            seed=cfg.seed,
            max_tokens=cfg.train_tokens_per_epoch,
            max_seq_len_delta=cfg.max_seq_len_delta,
        )
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.averager: ParameterAverager | None = None
        self.callbacks = list(callbacks)
        self.generator = generator
        self.epoch = 0
        self.global_step = 0
        self.best_val_loss = math.inf
        self.best_state: dict[str, Tensor] | None = None
        self.val_history: list[float] = []
        self.history: list[dict[str, Any]] = []
        self.stop_requested = False

    # ------------------------------------------------------------------ epochs
    def train_epoch(self) -> dict[str, float]:
        """One pass over the (subset of the) training stream; returns the mean training cross-entropy
        (``train_loss``), its perplexity (``train_ppl``) and the mean optimised loss with AR/TAR
        (``train_objective``)."""
        cfg = self.config
        model = self.model
        model.train()
        self.train_loader.set_epoch(self.epoch)
        hidden: Any = None
        total, objective, count = 0.0, 0.0, 0
        group = self.optimizer.param_groups[0]
        for batch in self.train_loader:
            if hidden is None or batch.reset:
                hidden = model.init_hidden(batch.inputs.size(1))
            hidden = detach_hidden(hidden)
            seq_len = batch.inputs.size(0)
            logits, hidden, raw, dropped = model(
                batch.inputs, hidden, return_states=True, generator=self.generator
            )
            ce = cross_entropy(logits, batch.targets)
            loss = (
                ce
                + activation_regularization(dropped, cfg.alpha)
                + temporal_activation_regularization(raw, cfg.beta)
            )
            if not torch.isfinite(loss.detach()):
                raise NumericalError(
                    f"training loss became {float(loss.detach())} at epoch {self.epoch} step {self.global_step}; "
                    "lower the learning rate (--lr) or the gradient-norm clip (--clip)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.params, cfg.clip)
            base_lr = group["lr"]
            group["lr"] = base_lr * seq_len / cfg.bptt
            self.optimizer.step()
            group["lr"] = base_lr
            if self.averager is not None:
                self.averager.update(model)
            n = batch.num_tokens
            c, o = float(ce.detach()), float(loss.detach())
            total += c * n
            objective += o * n
            count += n
            self.global_step += 1
            logs = {"train_loss": c, "train_objective": o, "lr": base_lr}
            for cb in self.callbacks:
                hook = getattr(cb, "on_step_end", None)
                if hook is not None:
                    hook(self, logs)
        mean = total / max(count, 1)
        # train_loss/train_ppl: cross-entropy and its perplexity; train_objective: with AR/TAR (optimised)
        return {
            "train_loss": mean,
            "train_ppl": perplexity(mean),
            "train_objective": objective / max(count, 1),
        }

    def evaluate(
        self, split: str = "valid", *, max_tokens: int | None = None, averaged: bool = True
    ) -> float:
        """Mean cross-entropy on ``"valid"`` or ``"test"`` (with the averaged weights when ASGD is on)."""
        data = {"valid": self.val_data, "test": self.test_data}
        if split not in data:
            raise ConfigError(f"unknown split {split!r}; valid splits: valid, test")
        if averaged and self.averager is not None:
            with self.averager.applied(self.model):
                return evaluate_lm(self.model, data[split], self.config.bptt, max_tokens=max_tokens)
        return evaluate_lm(self.model, data[split], self.config.bptt, max_tokens=max_tokens)

    def _current_state(self) -> dict[str, Tensor]:
        if self.averager is not None:
            with self.averager.applied(self.model):
                return copy.deepcopy(self.model.state_dict())
        return copy.deepcopy(self.model.state_dict())

    def fit(self) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs (from ``self.epoch``), then score the best model.

        Returns:
            ``best_val_loss``, ``val_loss``, ``val_ppl``, ``test_loss``, ``test_ppl``, ``epochs``,
            ``asgd_epoch`` and ``time_s``
            (validation/test on the full sets with the best weights).
        """
        cfg = self.config
        t_start = time.time()
        while self.epoch < cfg.epochs and not self.stop_requested:
            t0 = time.time()
            logs = self.train_epoch()
            val_loss = self.evaluate("valid", max_tokens=cfg.eval_tokens)
            record: dict[str, Any] = {
                "epoch": self.epoch,
                **logs,
                "val_loss": val_loss,
                "val_ppl": perplexity(val_loss),
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "asgd": self.averager is not None,
                "epoch_time_s": time.time() - t0,
            }
            if val_loss < self.best_val_loss:
                self.best_val_loss = val_loss
                self.best_state = self._current_state()
                record["best"] = True
            if (
                cfg.asgd
                and self.averager is None
                and len(self.val_history) > cfg.nonmono
                and val_loss > min(self.val_history[: -cfg.nonmono])
            ):
                logger.info(
                    "epoch %d: validation loss stopped improving; switching to averaged SGD", self.epoch
                )
                self.averager = ParameterAverager(self.model)
                record["asgd_switch"] = True
            self.val_history.append(val_loss)
            self.history.append(record)
            self.epoch += 1
            for cb in self.callbacks:
                hook = getattr(cb, "on_epoch_end", None)
                if hook is not None:
                    hook(self, record)
        return self.final_scores(time.time() - t_start)

    def final_scores(self, elapsed: float = 0.0) -> dict[str, Any]:
        """Restore the best weights and score them on the full validation and test sets."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.averager = None
        val = self.evaluate("valid")
        test = self.evaluate("test")
        switch = next((r["epoch"] for r in self.history if r.get("asgd_switch")), None)
        return {
            "best_val_loss": self.best_val_loss,
            "val_loss": val,
            "val_ppl": perplexity(val),
            "test_loss": test,
            "test_ppl": perplexity(test),
            "epochs": self.epoch,
            "asgd_epoch": switch,
            "time_s": elapsed,
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "averager": None if self.averager is None else self.averager.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_val_loss": self.best_val_loss,
            "best_state": self.best_state,
            "val_history": list(self.val_history),
            "history": list(self.history),
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("averager") is not None:
            self.averager = ParameterAverager(self.model)
            self.averager.load_state_dict(state["averager"])
        else:
            self.averager = None
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_val_loss = float(state["best_val_loss"])
        self.best_state = state.get("best_state")
        self.val_history = list(state.get("val_history", []))
        self.history = list(state.get("history", []))
