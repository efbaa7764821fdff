"""E2NAS search pieces: the latent estimator, the exploration (novelty) term and architecture complementation.

Unlike the released code (methods.md §7h), every term here carries gradient:

- :class:`LatentEstimator` ("e2nas"): the architecture variable is one latent vector ``z`` (an extra parameter
  of the :class:`~datanas_core.distribution.ArchitectureDistribution`). Each forward decodes ``z`` with the
  pretrained (frozen) VAE decoder into per-edge probabilities ``P(z)``, takes the valid hard code ``H``
  (argmax
  per edge for NB201, top pairs per node for DARTS) and uses ``W = H − sg(P(z)) + P(z)``: the forward
  value is the
  discrete architecture, the backward pass goes **through the decoder** to ``z`` (the official code instead
  treats ``softmax(z)`` itself as logits, bypassing the decoder). Only the chosen ops run (sparse executor,
  zero-valued carriers for the others).
- :class:`Novelty` ("novelty"): a differentiable log kernel density of ``z`` under an archive of the last
  ``archive_size`` visited latents; minimising it pushes ``z`` away from visited architectures. Its weight
  follows ``η_e = 1 − sigmoid(r (2e/E − 1))`` (high early, low late) and the validation loss is weighted by
  ``1 − η_e`` (:func:`exploration_weight`, wired by :func:`e2nas_searcher`).
- :class:`Complementation`: the weight loss ``(1 − λ) L(a_t) + λ/2 [L(a_{t−1}) + L(a_t^c)]`` where
``a_{t−1}`` is
  the previous step's architecture and ``a_t^c`` replaces every edge that did not change since
  ``a_{t−1}`` by a
  uniformly random different op; all three terms back-propagate into the shared weights.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from datanas_core.errors import ConfigError
from datanas_core.estimators import ESTIMATORS, Estimator
from datanas_core.regularizers import REGULARIZERS, Regularizer
from datanas_core.sample import ArchSample, CellSample
from datanas_core.search.task import split_loss
from datanas_core.space.base import CellSpec

__all__ = ["Complementation", "LatentEstimator", "Novelty", "exploration_weight"]


def exploration_weight(epoch: int, total_epochs: int, r: float = 10.0) -> float:
    """``η_e = 1 − sigmoid(r · (2e/E − 1))``: ≈ 1 at the start of the search, ≈ 0 at the end."""
    x = r * (2.0 * epoch / max(1, total_epochs) - 1.0)
    return 1.0 - 1.0 / (1.0 + math.exp(-x))


@ESTIMATORS.register("e2nas")
class LatentEstimator(Estimator):
    """E2NAS: search over the latent space of a pretrained cell VAE (see the module docstring).

    Args:
        vae: a :class:`~datanas_core.e2nas.vae.CellVAE`, a bundled name (``"nb201"``) or a weights file.
        init_std: scale of the initial latent (the official code: ``1e-3 · N(0, 1)``).
        space: the search space (needed for DARTS-style decoding; NB201 decoding needs only the layout).
    """

    name: ClassVar[str] = "e2nas"
    hard: ClassVar[bool] = True
    default_executor: ClassVar[str] = "sparse"
    uses_extra: ClassVar[bool] = True

    def __init__(self, vae: Any = "nb201", *, init_std: float = 1e-3, space: Any = None) -> None:
        from datanas_core.e2nas.pretraining import load_vae

        super().__init__(tau=1.0, init_mean=0.0, init_std=0.0)
        self.vae = load_vae(vae)
        for p in self.vae.parameters():
            p.requires_grad_(False)
        self.latent_std = float(init_std)
        self.space = space
        self._config = {"vae": vae if isinstance(vae, str) else "<CellVAE>", "init_std": init_std}

    def init_extra(
        self, cells: Mapping[str, CellSpec], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        got = [(ct, s.num_edges, s.num_ops) for ct, s in cells.items()]
        want = [(x.cell_type, x.num_edges, x.num_ops) for x in self.vae.layout]
        if got != want:
            raise ConfigError(f"the VAE's cells {want} do not match the space's cells {got}")
        device = generator.device if generator is not None else torch.device("cpu")
        z = self.latent_std * torch.randn(self.vae.latent_dim, generator=generator, device=device)
        return {"z": z}

    def _z(self, extra: Mapping[str, Tensor] | None) -> Tensor:
        if extra is None or "z" not in extra:
            raise ConfigError("the e2nas estimator needs the distribution's extra parameter 'z'")
        return extra["z"]

    def _decoded(self, z: Tensor) -> dict[str, Tensor]:
        self.vae.to(z.device)
        return self.vae.probs(z)

    def probs(
        self, logits: Tensor, spec: CellSpec | None = None, extra: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        if spec is None:
            raise ConfigError("the e2nas estimator needs the cell spec")
        return self._decoded(self._z(extra))[spec.cell_type]

    def _hard(self, p: Tensor, spec: CellSpec) -> Tensor:
        lay = next(x for x in self.vae.layout if x.cell_type == spec.cell_type)
        if lay.one_op_per_edge:
            return torch.nn.functional.one_hot(p.argmax(-1), spec.num_ops).to(p.dtype)
        code = torch.zeros_like(p)
        pn = p.detach().clone()
        if "none" in spec.ops:
            pn[:, spec.ops.index("none")] = -1.0
        for node in spec.nodes:
            rows = spec.in_edges(node)
            top = torch.topk(pn[rows].flatten(), min(lay.per_node, len(rows) * spec.num_ops)).indices.tolist()
            for t in top:
                code[rows[t // spec.num_ops], t % spec.num_ops] = 1.0
        return code

    def sample(
        self,
        logits: Tensor,
        spec: CellSpec,
        *,
        generator: torch.Generator | None = None,
        epoch_state: Mapping[str, Any] | None = None,
        extra: Mapping[str, Tensor] | None = None,
    ) -> CellSample:
        p = self.probs(logits, spec, extra)
        self.check_finite(p, spec)
        hard = self._hard(p, spec)
        weights = hard - p.detach() + p  # straight-through, through the decoder to z
        return CellSample(weights, hard > 0, p.detach(), hard.detach(), True, 1.0)

    def mode(self, logits: Tensor, spec: CellSpec, extra: Mapping[str, Tensor] | None = None) -> CellSample:
        return self.sample(logits, spec, extra=extra)


@REGULARIZERS.register("novelty")
class Novelty(Regularizer):
    """Exploration term: log Gaussian-kernel density of the latent under an archive of visited latents.

    ``N(z) = log mean_i exp(−‖z − a_i‖² / (2 h²))``. Minimising it moves ``z`` away from the architectures
    visited recently. The archive holds the last ``archive_size`` latents (detached), appended at every call;
    the term is 0 until ``min_archive`` latents are stored. ``weight`` is rescaled by the E2NAS schedule when
    ``schedule=True`` (``weight · η_e``, see :func:`exploration_weight`).

    Args:
        weight: base weight.
        archive_size: archive length (paper: 50).
        bandwidth: kernel bandwidth ``h`` in latent units.
        min_archive: latents needed before the term is active.
        schedule: multiply by ``η_e`` from the distribution's epoch state.
        r: steepness of the schedule.
    """

    name = "novelty"
    needs_sample = False

    def __init__(
        self,
        weight: float = 1.0,
        archive_size: int = 50,
        bandwidth: float = 0.5,
        min_archive: int = 2,
        schedule: bool = True,
        r: float = 10.0,
    ) -> None:
        super().__init__(weight)
        if archive_size < 1 or bandwidth <= 0 or min_archive < 1:
            raise ConfigError(
                f"archive_size >= 1, bandwidth > 0 and min_archive >= 1 are required, got {archive_size}, "
                f"{bandwidth}, {min_archive}"
            )
        self.archive: deque[Tensor] = deque(maxlen=archive_size)
        self.bandwidth = float(bandwidth)
        self.min_archive = int(min_archive)
        self.schedule = bool(schedule)
        self.r = float(r)
        self.base_weight = float(weight)

    def __call__(self, distribution: Any, sample: ArchSample | None = None) -> Tensor:
        z = distribution.extra["z"]
        if self.schedule:
            st = distribution.estimator.epoch_state
            self.weight = self.base_weight * exploration_weight(st["epoch"], st["total_epochs"], self.r)
        if len(self.archive) < self.min_archive:
            value = z.sum() * 0.0
        else:
            arch = torch.stack(list(self.archive)).to(z)
            d2 = ((z.unsqueeze(0) - arch) ** 2).sum(-1)
            value = torch.logsumexp(-d2 / (2 * self.bandwidth**2), 0) - math.log(len(self.archive))
        self.archive.append(z.detach().clone().cpu())
        return value

    def state_dict(self) -> dict[str, Any]:
        return {"archive": [a.clone() for a in self.archive], "weight": self.weight}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.archive.clear()
        self.archive.extend(state["archive"])
        self.weight = float(state["weight"])


class Complementation:
    """E2NAS' weight loss over the current, previous and complementary architectures (gradients flow).

    Use as ``Searcher(..., weight_loss=Complementation(0.5))``.

    Args:
        lam: ``λ``; 0 gives the plain loss of the current architecture.
        seed: seed of the random ops of the complementary architecture.
    """

    def __init__(self, lam: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"lam must be in [0, 1], got {lam}")
        self.lam = float(lam)
        self.generator = torch.Generator().manual_seed(seed)
        self.previous: dict[str, Tensor] | None = None

    def complementary(
        self, current: Mapping[str, Tensor], previous: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``a_t^c``: every edge whose code equals the previous one gets a random different op (one-op edges)
        or a random different non-zero pattern position (multi-hot rows: each kept op moved to another op)."""
        out = {}
        for ct, cur in current.items():
            code = cur.clone()
            prev = previous[ct]
            same = (code == prev).all(-1).nonzero().flatten().tolist()
            K = code.shape[-1]
            for r in same:
                on = code[r].nonzero().flatten().tolist()
                for k in on:
                    shift = int(torch.randint(1, K, (1,), generator=self.generator))
                    code[r, k] = 0.0
                    code[r, (k + shift) % K] = 1.0
            out[ct] = code
        return out

    def __call__(self, searcher: Any, batch: Any) -> tuple[Tensor, dict[str, float]]:
        arch = searcher.sample()
        cur_codes = {ct: (s.code if s.code is not None else s.weights).detach() for ct, s in arch.items()}
        # the searcher's forward (bf16 autocast / compiled supernet as configured), else the plain task loss
        fwd = getattr(searcher, "forward_loss", None) or (
            lambda b, a: searcher.task.loss(searcher.supernet, b, a)
        )
        loss, logs = split_loss(fwd(batch, arch))
        out_logs = {"loss_current": float(loss.detach()), **logs}
        if self.lam > 0 and self.previous is not None:
            comp = self.complementary(cur_codes, self.previous)
            prev_loss, _ = split_loss(fwd(batch, ArchSample.fixed(self.previous)))
            comp_loss, _ = split_loss(fwd(batch, ArchSample.fixed(comp)))
            loss = (1 - self.lam) * loss + self.lam / 2 * (prev_loss + comp_loss)
            out_logs.update(
                loss_previous=float(prev_loss.detach()), loss_complementary=float(comp_loss.detach())
            )
        self.previous = cur_codes
        return loss, out_logs

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "previous": self.previous}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.previous = state["previous"]
