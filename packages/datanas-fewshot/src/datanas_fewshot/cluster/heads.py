"""Clustering heads and the backbone + head network used for unsupervised search and training.

A :class:`ClusteringHead` maps pooled backbone features to an embedding (for k-means) and to cluster logits
(for
the unsupervised objective and the head's own assignments). :class:`ClusteringNetwork` puts a head on any
backbone exposing ``forward_features``: a searched supernet (``forward_features(x, arch)``) or a derived
network
(``forward_features(x)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.sample import ArchSample

__all__ = ["ClusterOutput", "ClusteringHead", "ClusteringNetwork", "pool_features"]

logger = logging.getLogger(__name__)

_ASSIGNMENTS = ("linear", "student_t")


@dataclass
class ClusterOutput:
    """What a clustering network returns for a batch of ``N`` images.

    Attributes:
        embedding: ``[N, D]`` representation used for k-means.
        logits: ``[N, K]`` cluster logits (``softmax`` gives the soft assignment).
        overcluster_logits: ``[N, K_over]`` logits of IIC's auxiliary over-clustering head, or ``None``.
    """

    embedding: Tensor
    logits: Tensor
    overcluster_logits: Tensor | None = None


def pool_features(features: Tensor) -> Tensor:
    """Global average pooling of ``[N, C, H, W]`` maps to ``[N, C]`` (``[N, C]`` passes through)."""
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    if features.ndim == 2:
        return features
    raise ConfigError(f"backbone features must be [N, C, H, W] or [N, C], got shape {tuple(features.shape)}")


class ClusteringHead(nn.Module):
    """Embedding MLP plus cluster assignment layer(s).

    Args:
        in_features: channels of the pooled backbone features.
        n_clusters: number of clusters ``K``.
        embed_dim: width of the embedding.
        assignment: ``"linear"`` (a linear layer, IIC / SCAN) or ``"student_t"`` (DEC's Student-t kernel
        around
            learned centroids: ``q_ij ∝ (1 + |z_i - mu_j|^2 / alpha)^{-(alpha + 1) / 2}``).
        overcluster: size of IIC's auxiliary over-clustering head (0 disables it).
        alpha: degrees of freedom of the Student-t kernel.

    Example:
        >>> head = ClusteringHead(16, n_clusters=10, embed_dim=32)
        >>> out = head(torch.randn(4, 16))
        >>> out.embedding.shape, out.logits.shape
        (torch.Size([4, 32]), torch.Size([4, 10]))
    """

    def __init__(
        self,
        in_features: int,
        n_clusters: int,
        *,
        embed_dim: int = 64,
        assignment: Literal["linear", "student_t"] = "linear",
        overcluster: int = 0,
        alpha: float = 1.0,
    ) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("n_clusters", n_clusters), ("embed_dim", embed_dim)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if n_clusters < 2:
            raise ConfigError(f"n_clusters must be >= 2, got {n_clusters}")
        if assignment not in _ASSIGNMENTS:
            raise ConfigError(f"assignment must be one of {', '.join(_ASSIGNMENTS)}; got {assignment!r}")
        if not isinstance(overcluster, int) or overcluster < 0 or overcluster == 1:
            raise ConfigError(f"overcluster must be 0 (off) or >= 2, got {overcluster!r}")
        if alpha <= 0:
            raise ConfigError(f"alpha must be > 0, got {alpha!r}")
        self.n_clusters = n_clusters
        self.embed_dim = embed_dim
        self.assignment = assignment
        self.alpha = float(alpha)
        self.embed = nn.Sequential(
            nn.Linear(in_features, embed_dim), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=False)
        )
        if assignment == "linear":
            self.cluster = nn.Linear(embed_dim, n_clusters)
            self.centroids = None
        else:
            self.cluster = None
            self.centroids = nn.Parameter(torch.randn(n_clusters, embed_dim) * 0.1)
        self.overcluster = nn.Linear(embed_dim, overcluster) if overcluster else None

    def forward(self, features: Tensor) -> ClusterOutput:
        """``features``: ``[N, C]`` pooled (or ``[N, C, H, W]``, pooled here) -> :class:`ClusterOutput`."""
        z = self.embed(pool_features(features))
        if self.cluster is not None:
            logits = self.cluster(z)
        else:
            d2 = torch.cdist(z, self.centroids).pow(2)
            logits = -(self.alpha + 1) / 2 * torch.log1p(d2 / self.alpha)
        over = self.overcluster(z) if self.overcluster is not None else None
        return ClusterOutput(z, logits, over)

    @torch.no_grad()
    def init_centroids(self, embeddings: Tensor) -> None:
        """Set DEC centroids (``student_t`` only) from embeddings, e.g. k-means centres of unlabelled data."""
        if self.centroids is None:
            raise ConfigError("init_centroids needs assignment='student_t'")
        if embeddings.shape != self.centroids.shape:
            raise ConfigError(
                f"centroids must have shape {tuple(self.centroids.shape)}, got {tuple(embeddings.shape)}"
            )
        self.centroids.copy_(embeddings.to(self.centroids))


class ClusteringNetwork(nn.Module):
    """A backbone with a :class:`ClusteringHead`; ``forward(x, arch=None) -> ClusterOutput``.

    The backbone must provide ``forward_features(x)`` (derived networks) or ``forward_features(x, arch)``
    (supernets, called when ``arch`` is given). Its own classifier, if any, is not used.

    Args:
        backbone: feature extractor.
        head: clustering head whose ``in_features`` equals the backbone's feature channels.
    """

    def __init__(self, backbone: nn.Module, head: ClusteringHead) -> None:
        super().__init__()
        if not callable(getattr(backbone, "forward_features", None)):
            raise ConfigError(f"backbone {type(backbone).__name__} has no forward_features method")
        self.backbone = backbone
        self.head = head

    def features(self, x: Tensor, arch: ArchSample | None = None) -> Tensor:
        """Pooled backbone features ``[N, C]``."""
        feats = self.backbone.forward_features(x) if arch is None else self.backbone.forward_features(x, arch)
        return pool_features(feats)

    def forward(self, x: Tensor, arch: ArchSample | None = None) -> ClusterOutput:
        return self.head(self.features(x, arch))

    @torch.no_grad()
    def embed(
        self, x: Tensor, arch: ArchSample | None = None, *, batch_size: int = 512
    ) -> tuple[Tensor, Tensor]:
        """Embeddings ``[N, D]`` and cluster logits ``[N, K]`` of ``x`` in eval mode, batched."""
        was_training = self.training
        self.eval()
        embs, logits = [], []
        try:
            for i in range(0, x.shape[0], batch_size):
                out = self(x[i : i + batch_size], arch)
                embs.append(out.embedding)
                logits.append(out.logits)
        finally:
            self.train(was_training)
        return torch.cat(embs), torch.cat(logits)
