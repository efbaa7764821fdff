"""Unsupervised clustering objectives over two views of the same images (no labels anywhere).

All objectives take the cluster logits of two views, ``logits_a`` and ``logits_b`` (``[N, K]`` each), and
return a
scalar loss to minimise:

- ``"iic"``: Invariant Information Clustering (Ji et al., ICCV 2019): maximise the mutual information between
  the cluster assignments of the two views, estimated from the symmetrised ``K x K`` joint distribution.
- ``"scan"``: SCAN-style consistency (Van Gansbeke et al., ECCV 2020): ``-log <p_a, p_b>`` pulls the two views
  (or an image and a mined neighbour) into the same cluster, minus ``entropy_weight`` times the entropy of the
  mean assignment, which keeps clusters balanced.
- ``"dec"``: DEC-style self-training (Xie et al., ICML 2016): the sharpened target ``p^2 / f`` (normalised per
  sample) of view b teaches view a through ``KL(target || q_a)``; with a ``student_t`` head the assignments
  are
  DEC's Student-t kernel around learned centroids.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from datanas_core.errors import ConfigError
from datanas_core.registry import Registry

__all__ = [
    "OBJECTIVES",
    "ClusteringObjective",
    "DECLoss",
    "IICLoss",
    "SCANLoss",
    "build_objective",
    "info_nce",
]

logger = logging.getLogger(__name__)

_EPS = 1e-8


@runtime_checkable
class ClusteringObjective(Protocol):
    """``loss(logits_a, logits_b) -> scalar`` on two views' ``[N, K]`` cluster logits."""

    def __call__(self, logits_a: Tensor, logits_b: Tensor) -> Tensor: ...


def _check(logits_a: Tensor, logits_b: Tensor) -> None:
    if logits_a.ndim != 2 or logits_a.shape != logits_b.shape:
        raise ConfigError(
            f"objective needs two [N, K] logit tensors of the same shape, got {tuple(logits_a.shape)} and "
            f"{tuple(logits_b.shape)}"
        )


class IICLoss:
    """Negative mutual information between the two views' cluster assignments (IIC).

    Args:
        entropy_weight: ``lambda`` of IIC's generalised objective (1.0 is plain mutual information; larger
            values favour balanced marginals).
    """

    def __init__(self, entropy_weight: float = 1.0) -> None:
        if entropy_weight < 0:
            raise ConfigError(f"entropy_weight must be >= 0, got {entropy_weight!r}")
        self.entropy_weight = float(entropy_weight)

    def __call__(self, logits_a: Tensor, logits_b: Tensor) -> Tensor:
        _check(logits_a, logits_b)
        pa = logits_a.float().softmax(1)
        pb = logits_b.float().softmax(1)
        joint = pa.t() @ pb / pa.shape[0]
        joint = ((joint + joint.t()) / 2).clamp_min(_EPS)
        joint = joint / joint.sum()
        pi = joint.sum(1, keepdim=True)
        pj = joint.sum(0, keepdim=True)
        mi = (joint * (joint.log() - self.entropy_weight * pi.log() - self.entropy_weight * pj.log())).sum()
        return -mi

    def __repr__(self) -> str:
        return f"IICLoss(entropy_weight={self.entropy_weight})"


class SCANLoss:
    """SCAN-style consistency plus entropy of the mean assignment.

    Args:
        entropy_weight: weight of the (negative) entropy term; SCAN uses 5.0.
    """

    def __init__(self, entropy_weight: float = 5.0) -> None:
        if entropy_weight < 0:
            raise ConfigError(f"entropy_weight must be >= 0, got {entropy_weight!r}")
        self.entropy_weight = float(entropy_weight)

    def __call__(self, logits_a: Tensor, logits_b: Tensor) -> Tensor:
        _check(logits_a, logits_b)
        pa = logits_a.float().softmax(1)
        pb = logits_b.float().softmax(1)
        consistency = -((pa * pb).sum(1).clamp_min(_EPS).log()).mean()
        mean = pa.mean(0).clamp_min(_EPS)
        entropy = -(mean * mean.log()).sum()
        return consistency - self.entropy_weight * entropy

    def __repr__(self) -> str:
        return f"SCANLoss(entropy_weight={self.entropy_weight})"


class DECLoss:
    """DEC self-training: ``KL(P || Q_a)`` with the sharpened, detached target ``P`` from view b.

    Args:
        balance: divide by the soft cluster frequency ``f_j`` (DEC's target); without it the target is
            only the squared, renormalised assignment.
    """

    def __init__(self, balance: bool = True) -> None:
        self.balance = balance

    @staticmethod
    def target(q: Tensor, balance: bool = True) -> Tensor:
        """DEC's auxiliary target ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')``."""
        w = q**2
        if balance:
            w = w / q.sum(0, keepdim=True).clamp_min(_EPS)
        return w / w.sum(1, keepdim=True).clamp_min(_EPS)

    def __call__(self, logits_a: Tensor, logits_b: Tensor) -> Tensor:
        _check(logits_a, logits_b)
        with torch.no_grad():
            p = self.target(logits_b.float().softmax(1), self.balance)
        log_q = F.log_softmax(logits_a.float(), 1)
        return (p * (p.clamp_min(_EPS).log() - log_q)).sum(1).mean()

    def __repr__(self) -> str:
        return f"DECLoss(balance={self.balance})"


def info_nce(emb_a: Tensor, emb_b: Tensor, temperature: float = 0.5) -> Tensor:
    """InfoNCE / NT-Xent (Oord et al. 2018; Chen et al., SimCLR 2020) between two views' embeddings.

    Each embedding must pick its other view out of the ``2N - 1`` other embeddings of the batch: a lower bound
    on the mutual information between the views at the instance level (IIC's idea applied to embeddings
    instead of cluster assignments). Used as an auxiliary term that shapes the embedding k-means reads.

    Args:
        emb_a, emb_b: ``[N, D]`` embeddings of the two views (L2-normalised here).
        temperature: softmax temperature.
    """
    if emb_a.ndim != 2 or emb_a.shape != emb_b.shape:
        raise ConfigError(
            f"info_nce needs two [N, D] tensors of the same shape, got {tuple(emb_a.shape)} and "
            f"{tuple(emb_b.shape)}"
        )
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    n = emb_a.shape[0]
    z = F.normalize(torch.cat([emb_a, emb_b]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


#: Clustering objectives by name (``"iic"``, ``"scan"``, ``"dec"``).
OBJECTIVES: Registry[type] = Registry("clustering objective")
OBJECTIVES.register("iic", IICLoss)
OBJECTIVES.register("scan", SCANLoss)
OBJECTIVES.register("dec", DECLoss)


def build_objective(name: str, **options: float | bool) -> ClusteringObjective:
    """Instantiate a registered objective.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
        ConfigError: an option the objective does not take.
    """
    return OBJECTIVES.build({"type": name, **options})
