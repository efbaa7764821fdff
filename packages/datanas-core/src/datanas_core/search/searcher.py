"""The bilevel search loop shared by every method and domain.

One :class:`Searcher` owns a supernet (the weights ``w``), an
:class:`~datanas_core.distribution.ArchitectureDistribution` (the architecture parameters, never inside the
network), both optimisers and the weight LR schedule. Each :meth:`Searcher.step` performs

- first order (DARTS-1, DATA, GDAS, DrNAS): an architecture step on a validation batch
  ``∇_α [L_val(w, α) + Σ λ_r R_r(α)]`` and a weight step on a training batch, each with a fresh sample
  (order configurable);
- second order (DARTS-2): the unrolled hypergradient
  ``∇_α L_val(w', α) − ξ [∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)] / 2ε`` with
  ``w' = w − ξ (μ m + ∇_w L_train + λ w)`` and ``w^± = w ± ε ∇_{w'} L_val(w', α)``; stochastic
  estimators reuse
  one sample (the same noise) for every term by replaying the generator state;
- single level (SNAS): one training loss updates both ``w`` and ``α``.

The domain supplies data, loss and metrics through a :class:`~datanas_core.search.task.SearchTask`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from datanas_core.errors import NumericalError
from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample
from datanas_core.search.config import SearchConfig
from datanas_core.search.task import SearchTask, split_loss
from datanas_core.space.base import SearchSpace

__all__ = ["SearchResult", "Searcher", "arch_from_genotype"]

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """Outcome of :meth:`Searcher.fit`."""

    genotype: Genotype
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def arch_from_genotype(
    genotype: Genotype, space: SearchSpace, device: torch.device | None = None, *, weighting: str = "one"
) -> ArchSample:
    """The fixed code of a genotype as an ArchSample (the derived child inside the supernet).

    Every kept ``(src, dst, op)`` gets weight 1 (``weighting="one"``: the derived network's sum) or
    ``1/n`` where ``n`` is the number of ops kept on its edge (``weighting="mean"``: DATA's
    ``genotype2weight``, the Table 8 child, the same normalisation as the search's EGS codes); every other
    entry weight 0 (not executed). Both give the derived architecture with inherited weights; they differ
    only on edges with several ops.
    """
    if weighting not in ("one", "mean"):
        raise ValueError(f"weighting must be 'one' or 'mean', got {weighting!r}")
    space.validate(genotype)
    codes = {}
    for ct, spec in space.cells().items():
        m = torch.zeros(spec.num_edges, spec.num_ops, device=device)
        for e in genotype.cells[ct].edges:
            m[spec.edge_index[(e.src, e.dst)], spec.ops.index(e.op)] = 1.0
        if weighting == "mean":
            m = m / m.sum(-1, keepdim=True).clamp_min(1.0)
        codes[ct] = m
    return ArchSample.fixed(codes)


class _Bound:
    """A module called with substituted parameters (``torch.func.functional_call``) that otherwise behaves
    like the module (attribute access forwards), so a task's ``loss(model, batch, arch)`` works unchanged."""

    def __init__(self, module: nn.Module, params: Mapping[str, Tensor]) -> None:
        self._module = module
        self._params = params

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self._module, self._params, args, kwargs, strict=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _f32(loss: Tensor) -> Tensor:
    """A bfloat16 loss (autocast) as float32, so regularisers and architecture gradients add in float32."""
    return loss.float() if loss.dtype == torch.bfloat16 else loss


def _weight_optimizer(params: list[Tensor], cfg: SearchConfig, lr: float) -> torch.optim.Optimizer:
    """The supernet weights' optimiser named by ``cfg.w_optimizer``."""
    if cfg.w_optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.w_weight_decay)
    if cfg.w_optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.w_weight_decay)
    # foreach: one fused update over all tensors instead of a Python loop over hundreds of supernet tensors
    # (bitwise the same values; PyTorch uses it by default on CUDA only)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=cfg.w_momentum,
        weight_decay=cfg.w_weight_decay,
        nesterov=cfg.w_nesterov and cfg.w_momentum > 0,
        foreach=True,
    )


class Searcher:
    """Bilevel (or single-level) differentiable architecture search.

    Args:
        space: the search space.
        task: the domain's loss/metrics (see :class:`~datanas_core.search.task.SearchTask`).
        config: hyper-parameters (see :class:`~datanas_core.search.config.SearchConfig`).
        supernet: a prebuilt supernet; built with ``space.build_supernet(**supernet_kwargs)`` otherwise
            (under ``config.seed``, so weight init is reproducible).
        distribution: a prebuilt architecture distribution; built from ``config`` otherwise.
        supernet_kwargs: options for ``space.build_supernet``.
        weight_loss: optional replacement of the weight-step loss,
            ``weight_loss(searcher, batch) -> (loss, logs)`` (E2NAS' complementation mixes several
            architectures here); default: the task loss under a fresh sample.
        callbacks: objects with any of ``on_search_start(searcher)``, ``on_step_end(searcher, logs)``,
            ``on_epoch_end(searcher, record)``, ``on_search_end(searcher, result)``.
        device: where to put the supernet and distribution (default: where the supernet already is).

    Example:
        >>> searcher = Searcher(space, task, SearchConfig(epochs=1))   # doctest: +SKIP
        >>> result = searcher.fit(train_loader, val_loader)             # doctest: +SKIP
        >>> result.genotype.save("genotype.json")                       # doctest: +SKIP
    """

    def __init__(
        self,
        space: SearchSpace,
        task: SearchTask,
        config: SearchConfig | None = None,
        *,
        supernet: nn.Module | None = None,
        distribution: nn.Module | None = None,
        supernet_kwargs: Mapping[str, Any] | None = None,
        callbacks: Sequence[Any] = (),
        device: torch.device | str | None = None,
        weight_loss: Callable[[Searcher, Any], tuple[Tensor, Mapping[str, float]]] | None = None,
    ) -> None:
        from datanas_core.distribution import ArchitectureDistribution
        from datanas_core.regularizers import REGULARIZERS

        self.space = space
        self.task = task
        self.config = config = config or SearchConfig()
        if supernet is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                supernet = space.build_supernet(**dict(supernet_kwargs or {}))
        if device is not None:
            supernet = supernet.to(device)
        self.supernet = supernet
        dev = self.device
        if distribution is None:
            init_gen = torch.Generator().manual_seed(config.seed + 1)
            estimator: Any = {"type": config.estimator, **config.estimator_options}
            distribution = ArchitectureDistribution(
                space, estimator=estimator, executor=config.executor, generator=init_gen
            )
        self.distribution = distribution.to(dev)
        #: Built regularisers; each carries its own ``weight`` (the spec's, or the regulariser's default,
        #: e.g. 0.1 for ADC as in DATA's code).
        self.regularizers: list[Any] = [
            REGULARIZERS.build(dict(spec), space=space) for spec in config.regularizers
        ]
        self.generator = torch.Generator().manual_seed(config.seed + 2)
        self.w_params = [p for p in self.supernet.parameters() if p.requires_grad]
        self.w_optimizer = _weight_optimizer(self.w_params, config, config.w_lr)
        self.a_optimizer = torch.optim.Adam(
            list(self.distribution.parameters()),
            lr=config.a_lr,
            betas=tuple(config.a_betas),  # type: ignore[arg-type]
            weight_decay=config.a_weight_decay,
        )
        self.w_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optimizer, T_max=config.epochs, eta_min=config.w_lr_min
        )
        self.callbacks = list(callbacks)
        self.weight_loss = weight_loss
        #: Optional factor on the validation loss of the architecture step, ``fn(searcher) -> float``
        #: (E2NAS weights it by ``1 - eta_e`` while its novelty term explores).
        self.val_loss_weight: Callable[[Searcher], float] | None = None
        self.epoch = 0
        self.global_step = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.stop_requested = False
        #: Hooks called after gradients are computed and before the optimiser step (distributed all-reduce).
        #: Steps per epoch, read from the training loader by :meth:`fit` (needed by per-step schedules).
        self.steps_per_epoch: int | None = None
        #: Held-out batches of a measured ``SearchConfig.decision_criterion`` (:mod:`~datanas_core.search.decisions`):
        #: filled by :meth:`fit` from the validation loader; set them yourself when calling :meth:`step` directly.
        self.decision_batches: list[Any] | None = None
        self.arch_grad_hooks: list[Callable[[Sequence[nn.Parameter]], None]] = []
        self.weight_grad_hooks: list[Callable[[Sequence[nn.Parameter]], None]] = []
        # config.compile: the compiled supernet (built at the first step), the step kinds it has run for, and
        # the reason it fell back to eager (logged once)
        self._compiled: nn.Module | None = None
        self._compiled_ok: set[str] = set()
        self.compile_fallback: str | None = None
        self.distribution.set_epoch(0, config.epochs)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        for p in self.supernet.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def arch_params(self) -> list[nn.Parameter]:
        return [p for p in self.distribution.parameters() if p.requires_grad]

    @property
    def execution(self) -> dict[str, Any]:
        """How the steps run (JSON-able, for the run summary and manifest): device, precision (``autocast``:
        the autocast dtype or ``None``), the requested ``compile`` mode and ``compile_used``: the mode that
        ran, ``"off"`` (eager, requested or after a fallback, see ``compile_fallback``) or ``"pending"``
        (no step has run the compiled supernet yet)."""
        cfg = self.config
        if cfg.compile == "off" or self.compile_fallback is not None:
            used = "off"
        else:
            used = cfg.compile if self._compiled_ok else "pending"
        return {
            "device": str(self.device),
            "precision": cfg.precision,
            "autocast": "bfloat16" if cfg.precision == "bf16" else None,
            "compile": cfg.compile,
            "compile_used": used,
            "compile_fallback": self.compile_fallback,
        }

    # ------------------------------------------------------------------ forward
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` to bfloat16 on the supernet's device type (where the task moves its inputs) when
        ``config.precision == "bf16"``; a no-op context otherwise."""
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _fall_back(self, reason: str) -> None:
        self.compile_fallback = reason
        self._compiled = None
        logger.warning("compile=%r: running the supernet eagerly instead: %s", self.config.compile, reason)

    def _forward_net(self) -> nn.Module:
        """The supernet as the steps call it: ``torch.compile(supernet, mode=config.compile)``, built once at
        the first use (it follows the inputs' device), or the eager supernet (``compile="off"``, a pair with
        data-dependent control flow, or after a failure)."""
        cfg = self.config
        if cfg.compile == "off" or self.compile_fallback is not None:
            return self.supernet
        if self._compiled is not None and getattr(self._compiled, "_orig_mod", None) is self.supernet:
            return self._compiled
        blocker = cfg.compile_blocker
        if blocker is not None:
            self._fall_back(blocker)
            return self.supernet
        try:
            self._compiled = torch.compile(self.supernet, mode=cfg.compile)
        except Exception as exc:  # noqa: BLE001 - any failure to compile means eager, logged once
            self._fall_back(f"torch.compile failed: {type(exc).__name__}: {exc}")
            return self.supernet
        self._compiled_ok = set()
        return self._compiled

    def forward_loss(self, batch: Any, arch: ArchSample, *, kind: str = "weight") -> Any:
        """``task.loss(supernet, batch, arch)`` as the search steps compute it: under bf16 autocast when
        ``config.precision == "bf16"`` and with the compiled supernet when ``config.compile`` is on (custom
        ``weight_loss`` functions should call this instead of ``task.loss``). ``kind`` names the step
        (``"arch"``, ``"weight"``, ...): the first compiled call of each kind is checked, and a failure falls
        back to eager for the rest of the run (one warning) after restoring the supernet's buffers, so the
        step computes what an eager step computes."""
        net = self._forward_net()
        if net is self.supernet:
            with self._autocast():
                return self.task.loss(self.supernet, batch, arch)
        snapshot = None
        if kind not in self._compiled_ok:
            snapshot = {n: b.detach().clone() for n, b in self.supernet.named_buffers()}
        try:
            with self._autocast():
                out = self.task.loss(net, batch, arch)
        except Exception as exc:  # noqa: BLE001 - decided below: eager must succeed for a compile failure
            if snapshot is not None:
                with torch.no_grad():
                    for n, b in self.supernet.named_buffers():
                        if n in snapshot:
                            b.copy_(snapshot[n])
            with self._autocast():
                out = self.task.loss(self.supernet, batch, arch)  # an error of the task itself raises here
            self._fall_back(f"the compiled supernet failed: {type(exc).__name__}: {str(exc)[:300]}")
            return out
        self._compiled_ok.add(kind)
        return out

    # ------------------------------------------------------------------ sampling
    def sample(self, generator: torch.Generator | None = None, *, uniform: bool = False) -> ArchSample:
        """One architecture sample (one per cell type) from the current distribution (``uniform``: from the
        same estimator at uniform logits, see ``SearchConfig.weight_sampling``)."""
        gen = self.generator if generator is None else generator
        return self.distribution.sample(generator=gen, uniform=uniform)

    def _regularization(self, arch: ArchSample) -> Tensor:
        total: Tensor | None = None
        for reg in self.regularizers:
            weight = float(getattr(reg, "weight", 1.0))
            if weight == 0:
                continue
            term = weight * reg(self.distribution, arch)
            total = term if total is None else total + term
        if total is None:
            return torch.zeros((), device=self.device)
        return total

    def _val_weight(self) -> float:
        return 1.0 if self.val_loss_weight is None else float(self.val_loss_weight(self))

    def _check(self, value: Tensor, what: str) -> None:
        if not torch.isfinite(value.detach()).all():
            raise NumericalError(
                f"{what} became {value.item()} at epoch {self.epoch} step {self.global_step}; the run was "
                "stopped before the optimiser step so the last checkpoint is still good (lower the learning "
                "rates or the temperature floor)"
            )

    # ------------------------------------------------------------------ steps
    def _arch_first_order(self, val_batch: Any) -> dict[str, float]:
        arch = self.sample()
        loss, logs = split_loss(self.forward_loss(val_batch, arch, kind="arch"))
        reg = self._regularization(arch)
        total = self._val_weight() * _f32(loss) + reg
        self._check(total, "architecture loss")
        params = self.arch_params
        grads = torch.autograd.grad(total, params, allow_unused=True)
        self._apply_arch_grads(params, grads)
        out = {"val_loss": float(loss.detach()), "reg": float(reg.detach())}
        out.update({f"val_{k}": v for k, v in logs.items()})
        return out

    def _apply_arch_grads(self, params: Sequence[nn.Parameter], grads: Iterable[Tensor | None]) -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.zeros_like(p) if g is None else g.detach()
        for hook in self.arch_grad_hooks:
            hook(params)
        if self.config.a_grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.config.a_grad_clip)
        self.a_optimizer.step()

    def _weight_step(self, train_batch: Any) -> dict[str, float]:
        if self.weight_loss is not None:
            loss, logs = self.weight_loss(self, train_batch)
            logs = {k: float(v) for k, v in logs.items()}
        else:
            # detached: the weight step needs no architecture gradient, so zero-weight ops need not run
            arch = self.sample(uniform=self.config.weight_sampling == "uniform").detach()
            loss, logs = split_loss(self.forward_loss(train_batch, arch, kind="weight"))
        self._check(loss, "training loss")
        self.w_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self.w_params)
        for hook in self.weight_grad_hooks:
            hook(self.w_params)
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.w_params, self.config.grad_clip)
        self.w_optimizer.step()
        out = {"train_loss": float(loss.detach())}
        out.update({f"train_{k}": v for k, v in logs.items()})
        return out

    def _single_level_step(self, train_batch: Any) -> dict[str, float]:
        arch = self.sample()
        loss, logs = split_loss(self.forward_loss(train_batch, arch, kind="single_level"))
        reg = self._regularization(arch)
        total = _f32(loss) + reg
        self._check(total, "training loss")
        self.w_optimizer.zero_grad(set_to_none=True)
        self.a_optimizer.zero_grad(set_to_none=True)
        params = self.arch_params
        total.backward(inputs=self.w_params + params)
        for hook in self.weight_grad_hooks:
            hook(self.w_params)
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.w_params, self.config.grad_clip)
        self.w_optimizer.step()
        if self.epoch >= self.config.arch_warmup_epochs:
            grads = [p.grad for p in params]
            self._apply_arch_grads(params, grads)
        out = {"train_loss": float(loss.detach()), "reg": float(reg.detach())}
        out.update({f"train_{k}": v for k, v in logs.items()})
        return out

    def _arch_second_order(self, train_batch: Any, val_batch: Any) -> dict[str, float]:
        """DARTS' unrolled hypergradient with a finite-difference Hessian-vector product."""
        cfg = self.config
        names = [n for n, p in self.supernet.named_parameters() if p.requires_grad]
        params = [p for _, p in self.supernet.named_parameters() if p.requires_grad]
        xi = self.w_optimizer.param_groups[0]["lr"]
        mom = cfg.w_momentum
        wd = cfg.w_weight_decay
        noise_state = self.generator.get_state()

        def replay() -> ArchSample:
            g = torch.Generator()
            g.set_state(noise_state)
            return self.distribution.sample(generator=g)

        # virtual step w' = w - xi (mu m + grad_w L_train(w, a) + wd w)
        arch = replay()
        with self._autocast():  # precision applies; compile does not (functional_call with other weights)
            ltrain, _ = split_loss(self.task.loss(self.supernet, train_batch, arch))
        gw = torch.autograd.grad(ltrain, params, allow_unused=True)
        w_prime = {}
        for n, p, g in zip(names, params, gw, strict=True):
            g = torch.zeros_like(p) if g is None else g
            buf = self.w_optimizer.state.get(p, {}).get("momentum_buffer")
            m = mom * buf if buf is not None else torch.zeros_like(p)
            w_prime[n] = (p.detach() - xi * (m + g + wd * p.detach())).requires_grad_(True)
        # L_val(w', a): gradient to alpha and to w'
        arch = replay()
        with self._autocast():
            lval, logs = split_loss(self.task.loss(_Bound(self.supernet, w_prime), val_batch, arch))  # type: ignore[arg-type]
        reg = self._regularization(arch)
        self._check(lval + reg, "architecture loss")
        a_params = self.arch_params
        wp_list = [w_prime[n] for n in names]
        grads = torch.autograd.grad(self._val_weight() * lval + reg, a_params + wp_list, allow_unused=True)
        d_alpha = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(a_params, grads[: len(a_params)], strict=True)
        ]
        d_w = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(wp_list, grads[len(a_params) :], strict=True)
        ]
        norm = torch.sqrt(sum((g * g).sum() for g in d_w))
        eps = cfg.unrolled_eps / (float(norm) + 1e-12)

        def grad_alpha_at(sign: float) -> list[Tensor]:
            shifted = {n: p.detach() + sign * eps * v for n, p, v in zip(names, params, d_w, strict=True)}
            a = replay()
            with self._autocast():
                lt, _ = split_loss(self.task.loss(_Bound(self.supernet, shifted), train_batch, a))  # type: ignore[arg-type]
            gs = torch.autograd.grad(lt, a_params, allow_unused=True)
            return [torch.zeros_like(p) if g is None else g for p, g in zip(a_params, gs, strict=True)]

        g_plus = grad_alpha_at(1.0)
        g_minus = grad_alpha_at(-1.0)
        hyper = [da - xi * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, g_plus, g_minus, strict=True)]
        self.generator.set_state(noise_state)
        self.sample()  # advance the generator exactly as one draw would, so streams stay aligned
        self._apply_arch_grads(a_params, hyper)
        out = {"val_loss": float(lval.detach()), "reg": float(reg.detach())}
        out.update({f"val_{k}": v for k, v in logs.items()})
        return out

    def step(self, train_batch: Any, val_batch: Any | None = None) -> dict[str, float]:
        """One search step; returns scalar logs (losses, task metrics, temperature, learning rates).

        The supernet is put in training mode when it is not (``supernet.training`` false, e.g. after an
        evaluation); a submodule put in eval mode while the supernet is training stays in eval mode.
        """
        cfg = self.config
        if not self.supernet.training:  # train() walks every module (~5,000, ~16 ms, on a DARTS supernet)
            self.supernet.train()
        logs: dict[str, float] = {}
        if cfg.uses_step_schedules:  # per-step tau / M / architecture lr (SearchConfig.schedule_unit, ...)
            from datanas_core.schedules import apply_step_schedules

            logs.update(apply_step_schedules(self))
        arch_on = self.epoch >= cfg.arch_warmup_epochs
        if cfg.progressive_decisions is not None and arch_on:
            from datanas_core.search.decisions import progressive_decide

            logs.update(progressive_decide(self))
        if cfg.order == "single_level":
            logs.update(self._single_level_step(train_batch))
        else:
            if val_batch is None:
                raise ValueError("a bilevel search step needs a validation batch")
            if cfg.step_order == "weight_first":
                logs.update(self._weight_step(train_batch))
            if arch_on:
                if cfg.order == "second":
                    logs.update(self._arch_second_order(train_batch, val_batch))
                else:
                    logs.update(self._arch_first_order(val_batch))
            if cfg.step_order == "arch_first":
                logs.update(self._weight_step(train_batch))
        logs["lr"] = float(self.w_optimizer.param_groups[0]["lr"])
        tau = getattr(self.distribution, "temperature", None)
        if isinstance(tau, (int, float)):
            logs["tau"] = float(tau)
        self.global_step += 1
        for cb in self.callbacks:
            hook = getattr(cb, "on_step_end", None)
            if hook is not None:
                hook(self, logs)
        return logs

    # ------------------------------------------------------------------ epochs
    @staticmethod
    def _iterate(loader: Iterable[Any], start: int) -> Iterator[Any]:
        iter_from = getattr(loader, "iter_from", None)
        if start and callable(iter_from):
            return iter(iter_from(start))
        return itertools.islice(iter(loader), start, None)

    def train_epoch(
        self, train_loader: Iterable[Any], val_loader: Iterable[Any] | None = None, *, start_batch: int = 0
    ) -> dict[str, float]:
        """Run the steps of one epoch (from batch ``start_batch`` when resuming); returns averaged logs.

        The validation loader is cycled: one validation batch per training batch, continuing where the
        previous batch left off (restarted when exhausted), so no batch is used twice in a row.
        """
        sums: dict[str, float] = {}
        count = 0
        val_iter: Iterator[Any] | None = None
        n_val = len(val_loader) if val_loader is not None and hasattr(val_loader, "__len__") else None  # type: ignore[arg-type]
        if val_loader is not None:
            val_iter = self._iterate(val_loader, start_batch % n_val if n_val else 0)
        self.batch_in_epoch = start_batch
        for train_batch in self._iterate(train_loader, start_batch):
            val_batch = None
            if val_iter is not None and val_loader is not None:
                try:
                    val_batch = next(val_iter)
                except StopIteration:
                    val_iter = iter(val_loader)
                    val_batch = next(val_iter)
            logs = self.step(train_batch, val_batch)
            self.batch_in_epoch += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if self.stop_requested:
                break
        return {k: v / count for k, v in sums.items()} if count else {}

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Any], arch: str | ArchSample = "sample") -> dict[str, float]:
        """Average task metrics of the supernet over ``loader`` (eval mode, no gradients).

        Args:
            arch: ``"sample"`` (a fresh sampled code per batch, DATA's "search" column), ``"derived"`` (the
                currently derived genotype's code with inherited weights, ``1/n`` on an edge with ``n``
                ops as in DATA's code: the "child" column), ``"mode"``
                (the deterministic relaxation) or an explicit ArchSample.
        """
        self.supernet.eval()
        fixed: ArchSample | None = None
        if isinstance(arch, ArchSample):
            fixed = arch
        elif arch == "derived":
            fixed = arch_from_genotype(self.derive(), self.space, self.device, weighting="mean")
        elif arch == "mode":
            fixed = self.distribution.mode()
        elif arch != "sample":
            raise ValueError(f"arch must be 'sample', 'derived', 'mode' or an ArchSample, got {arch!r}")
        gen = torch.Generator().manual_seed(self.config.seed + 10_000 + self.epoch)
        sums: dict[str, float] = {}
        total = 0
        metrics_fn = getattr(self.task, "metrics", None)
        size_fn = getattr(self.task, "batch_size", None)
        for batch in loader:
            a = fixed if fixed is not None else self.distribution.sample(generator=gen)
            if callable(metrics_fn):
                m = {k: float(v) for k, v in metrics_fn(self.supernet, batch, a).items()}
            else:
                loss, m = split_loss(self.task.loss(self.supernet, batch, a))
                m = {"loss": float(loss), **m}
            n = int(size_fn(batch)) if callable(size_fn) else len(batch[0])
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v * n
            total += n
        self.supernet.train()
        return {k: v / total for k, v in sums.items()} if total else {}

    def derive(self) -> Genotype:
        """The discrete architecture of the current distribution under the configured rule."""
        from datanas_core.derive import derive

        rule: Any = self.config.rule
        if self.config.rule_options:
            rule = {"type": rule or self.space.default_rule, **self.config.rule_options}
        return derive(self.distribution, self.space, rule=rule)

    def fit(
        self,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None = None,
        *,
        eval_loader: Iterable[Any] | None = None,
    ) -> SearchResult:
        """Search for ``config.epochs`` epochs (continuing from ``self.epoch`` after a resume).

        ``eval_loader`` (optional) is evaluated after each epoch with sampled and derived codes.
        """
        for cb in self.callbacks:
            hook = getattr(cb, "on_search_start", None)
            if hook is not None:
                hook(self)
        start_batch = self.batch_in_epoch if self.batch_in_epoch else 0
        n = self._len(train_loader)
        if isinstance(n, int) and n > 0:
            self.steps_per_epoch = n
        if self.config.progressive_decisions is not None and self.config.decision_criterion != "margin":
            from datanas_core.search.decisions import prepare_decision_batches

            prepare_decision_batches(self, val_loader)  # the held-out batches, the same after a resume
        while self.epoch < self.config.epochs and not self.stop_requested:
            self.distribution.set_epoch(self.epoch, self.config.epochs)
            set_epoch = getattr(train_loader, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(self.epoch)
            logs = self.train_epoch(train_loader, val_loader, start_batch=start_batch)
            start_batch = 0
            if self.stop_requested and self.batch_in_epoch < self._len(train_loader):
                break
            self.w_scheduler.step()
            record: dict[str, Any] = {"epoch": self.epoch, **logs}
            if eval_loader is not None:
                record.update({f"search_{k}": v for k, v in self.evaluate(eval_loader, "sample").items()})
                record.update({f"child_{k}": v for k, v in self.evaluate(eval_loader, "derived").items()})
            genotype = self.derive()
            record["genotype"] = genotype.to_dict()
            self.epoch += 1
            self.batch_in_epoch = 0
            self.history.append(record)
            for cb in self.callbacks:
                hook = getattr(cb, "on_epoch_end", None)
                if hook is not None:
                    hook(self, record)
        result = SearchResult(
            self.derive(), list(self.history), stopped_early=self.epoch < self.config.epochs
        )
        for cb in self.callbacks:
            hook = getattr(cb, "on_search_end", None)
            if hook is not None:
                hook(self, result)
        return result

    @staticmethod
    def _len(loader: Iterable[Any]) -> int:
        try:
            return len(loader)  # type: ignore[arg-type]
        except TypeError:
            return math.inf  # type: ignore[return-value]

    # ------------------------------------------------------------------ state
    def rebuild_optimizers(
        self, carry: Callable[[torch.optim.Optimizer, torch.optim.Optimizer], None] | None = None
    ) -> None:
        """Recreate the weight optimiser and LR schedule after the supernet's parameters changed (DrNAS
        stages).

        The schedule keeps its position (``last_epoch``); ``carry(old_optimizer, new_optimizer)`` may
        move state
        (e.g. momentum buffers widened with the same channel mapping) from the old optimiser to the new one.
        """
        cfg = self.config
        old = self.w_optimizer
        sched_state = self.w_scheduler.state_dict()
        lrs = [g["lr"] for g in old.param_groups]
        initial = [g.get("initial_lr", cfg.w_lr) for g in old.param_groups]
        self.w_params = [p for p in self.supernet.parameters() if p.requires_grad]
        self.w_optimizer = _weight_optimizer(self.w_params, cfg, lrs[0])
        for group in self.w_optimizer.param_groups:
            group["initial_lr"] = initial[0]
        self.w_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optimizer, T_max=cfg.epochs, eta_min=cfg.w_lr_min
        )
        # constructing a scheduler steps it once; restore the old position and learning rate exactly
        self.w_scheduler.load_state_dict(sched_state)
        for group in self.w_optimizer.param_groups:
            group["lr"] = lrs[0]
        if carry is not None:
            carry(old, self.w_optimizer)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed for a bit-exact resume (besides global RNGs and the data order)."""
        return {
            "supernet": self.supernet.state_dict(),
            "distribution": self.distribution.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "w_scheduler": self.w_scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            "history": list(self.history),
            "config": self.config.to_dict(),
            "regularizers": [r.state_dict() if hasattr(r, "state_dict") else None for r in self.regularizers],
            "weight_loss": self.weight_loss.state_dict() if hasattr(self.weight_loss, "state_dict") else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.distribution.load_state_dict(state["distribution"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.w_scheduler.load_state_dict(state["w_scheduler"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        self.history = list(state.get("history", []))
        for reg, st in zip(
            self.regularizers, state.get("regularizers", [None] * len(self.regularizers)), strict=False
        ):
            if st is not None and hasattr(reg, "load_state_dict"):
                reg.load_state_dict(st)
        wl = state.get("weight_loss")
        if wl is not None and hasattr(self.weight_loss, "load_state_dict"):
            self.weight_loss.load_state_dict(wl)  # type: ignore[union-attr]
        self.distribution.set_epoch(self.epoch, self.config.epochs)
