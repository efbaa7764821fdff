"""Progress reporting: a tqdm bar on a terminal, plain log lines otherwise (a search callback)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ProgressCallback", "format_duration"]

logger = logging.getLogger(__name__)

_SHOW = ("train_loss", "val_loss", "train_acc", "val_acc", "train_ppl", "val_ppl", "tau")
_SHORT = {
    "train_loss": "loss",
    "val_loss": "vloss",
    "train_acc": "acc",
    "val_acc": "vacc",
    "train_ppl": "ppl",
    "val_ppl": "vppl",
    "tau": "tau",
}


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1:02:05"``."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return "?"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressCallback:
    """Shows loss, accuracy, temperature and ETA while searching.

    Args:
        steps_per_epoch: batches per epoch (``len(train_loader)``), for the bar length and the ETA.
        use_tqdm: ``None`` (default): a tqdm bar when tqdm is installed and stderr is a terminal; ``False``:
            log lines every ``log_every`` steps and at the end of every epoch.
        log_every: steps between log lines (without a bar).
        enabled: ``False`` disables all output (non-zero ranks).
    """

    def __init__(
        self,
        steps_per_epoch: int | None = None,
        *,
        use_tqdm: bool | None = None,
        log_every: int = 50,
        enabled: bool = True,
    ) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.log_every = max(1, int(log_every))
        self.enabled = enabled
        if use_tqdm is None:
            use_tqdm = _stderr_is_tty()
        self._tqdm: Any = None
        if use_tqdm and enabled:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm
            except ImportError:
                self._tqdm = None
        self._bar: Any = None
        self._t0 = 0.0
        self._step0 = 0
        self._bar_epoch = -1

    @property
    def uses_bar(self) -> bool:
        return self._tqdm is not None

    def _total_steps(self, searcher: Any) -> int | None:
        if self.steps_per_epoch is None:
            return None
        return int(searcher.config.epochs) * int(self.steps_per_epoch)

    def _eta(self, searcher: Any) -> float:
        total = self._total_steps(searcher)
        done = searcher.global_step - self._step0
        if total is None or done <= 0:
            return float("nan")
        rate = (time.perf_counter() - self._t0) / done
        return rate * max(0, total - searcher.global_step)

    def on_search_start(self, searcher: Any) -> None:
        self._t0 = time.perf_counter()
        self._step0 = searcher.global_step
        if self.enabled:
            logger.info(
                "search: %d epochs%s, starting at epoch %d step %d",
                searcher.config.epochs,
                f" x {self.steps_per_epoch} steps" if self.steps_per_epoch else "",
                searcher.epoch,
                searcher.global_step,
            )

    def _postfix(self, logs: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for k in _SHOW:
            v = logs.get(k)
            if isinstance(v, (int, float)):
                out[_SHORT[k]] = f"{v:.4g}"
        return out

    def on_step_end(self, searcher: Any, logs: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            if self._bar is None or self._bar_epoch != searcher.epoch:
                if self._bar is not None:
                    self._bar.close()
                start = getattr(searcher, "batch_in_epoch", 0)
                self._bar = self._tqdm(
                    total=self.steps_per_epoch,
                    initial=start,
                    desc=f"epoch {searcher.epoch + 1}/{searcher.config.epochs}",
                    leave=False,
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
                self._bar_epoch = searcher.epoch
            post = self._postfix(logs)
            post["ETA"] = format_duration(self._eta(searcher))
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
            return
        if searcher.global_step % self.log_every == 0:
            parts = " ".join(f"{k}={v}" for k, v in self._postfix(logs).items())
            pos = f"{getattr(searcher, 'batch_in_epoch', 0) + 1}"
            if self.steps_per_epoch:
                pos += f"/{self.steps_per_epoch}"
            logger.info(
                "epoch %d/%d batch %s step %d %s ETA %s",
                searcher.epoch + 1,
                searcher.config.epochs,
                pos,
                searcher.global_step,
                parts,
                format_duration(self._eta(searcher)),
            )

    def on_epoch_end(self, searcher: Any, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.refresh()  # show the epoch's final numbers before the bar goes away
            self._bar.close()
            self._bar = None
        parts = []
        for k in (*_SHOW, "search_acc", "child_acc", "consistency_gap", "collapse_param_free_share"):
            v = record.get(k)
            if isinstance(v, (int, float)):
                parts.append(f"{k}={v:.4g}")
        logger.info(
            "epoch %d/%d done: %s | elapsed %s ETA %s",
            int(record.get("epoch", searcher.epoch - 1)) + 1,
            searcher.config.epochs,
            " ".join(parts),
            format_duration(time.perf_counter() - self._t0),
            format_duration(self._eta(searcher)),
        )

    def on_search_end(self, searcher: Any, result: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
