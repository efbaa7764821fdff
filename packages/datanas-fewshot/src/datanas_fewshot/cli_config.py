"""The options of the few-shot and clustering command lines as typed dataclasses, without torch (``--help``
builds its option tables from them): each field's type, default and help (the ``Attributes:`` entries) are the
single source of the CLI flag. :func:`~datanas_core.cli_options.add_dataclass_options` makes the flags and
:func:`~datanas_core.cli_options.dataclass_from_args` turns the parsed options back into these objects, from
which the CLIs build :class:`~datanas_fewshot.fewshot.FewShotConfig` and
:class:`~datanas_fewshot.cluster.pipeline.ClusterConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from datanas_core.cli_options import check_positive
from datanas_core.errors import ConfigError

__all__ = [
    "CLUSTER_DATASET_NAMES",
    "DATASET_NAMES",
    "OBJECTIVE_NAMES",
    "CellNetOptions",
    "ClusterDataOptions",
    "ClusterEvalOptions",
    "ClusterModelOptions",
    "ClusterSearchOptions",
    "ClusterTrainOptions",
    "FewShotDataOptions",
    "FewShotSearchOptions",
    "FewShotTaskOptions",
    "FewShotTrainOptions",
    "MetaLearnerOptions",
]

FewShotDataset = Literal["omniglot", "folder"]
ClusterDataset = Literal["digits", "mnist", "folder"]
Objective = Literal["dec", "iic", "scan"]

#: ``--data`` and ``--objective`` choices (the fields' Literal values); tests check them against
#: :data:`~datanas_fewshot.sources.FEWSHOT_DATASETS`, :data:`~datanas_fewshot.cluster.data.CLUSTER_DATASETS` and
#: the ``OBJECTIVES`` registry.
DATASET_NAMES: tuple[str, ...] = get_args(FewShotDataset)
CLUSTER_DATASET_NAMES: tuple[str, ...] = get_args(ClusterDataset)
OBJECTIVE_NAMES: tuple[str, ...] = get_args(Objective)


def _non_negative(owner: object, *names: str) -> None:
    for name in names:
        v = getattr(owner, name)
        if v is not None and v < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v!r}")


@dataclass(frozen=True)
class CellNetOptions:
    """The DARTS cell space and network size (few-shot and clustering).

    Attributes:
        ops: op set: small, compact or darts (or a comma-separated list).
        C: initial channels.
        layers: cells.
        steps: intermediate nodes per cell.
    """

    ops: str = "small"
    C: int = 8
    layers: int = 3
    steps: int = 3

    def __post_init__(self) -> None:
        check_positive(self, "C", "layers", "steps")

    def op_set(self) -> str | tuple[str, ...]:
        """``ops`` as the space builders take it: a set name, or a tuple of op names."""
        if "," in self.ops:
            return tuple(o.strip() for o in self.ops.split(",") if o.strip())
        return self.ops


# ------------------------------------------------------------------------------------------ few-shot
@dataclass(frozen=True)
class FewShotDataOptions:
    """The few-shot dataset.

    Attributes:
        data: dataset.
        data_dir: folder with the dataset files (required).
        image_size: images are resized to SIZE x SIZE.
        rotations: Omniglot: rotations by 90/180/270 degrees as extra classes.
    """

    data: FewShotDataset = "omniglot"
    data_dir: Path | None = None
    image_size: int = 28
    rotations: bool = True

    def __post_init__(self) -> None:
        check_positive(self, "image_size")


@dataclass(frozen=True)
class FewShotTaskOptions:
    """The episodes.

    Attributes:
        ways: classes per episode (N-way).
        shots: support samples per class (K-shot).
        queries: query samples per class.
    """

    ways: int = 5
    shots: int = 1
    queries: int = 15

    def __post_init__(self) -> None:
        check_positive(self, "ways", "shots", "queries")


@dataclass(frozen=True)
class MetaLearnerOptions:
    """The meta-learner that uses the cell network.

    Attributes:
        meta_learner: meta-learner that uses the cell network (ProtoNet, or first-order MAML via learn2learn).
        inner_lr: MAML inner learning rate.
        inner_steps: MAML inner steps (training).
        test_inner_steps: MAML inner steps (evaluation).
        first_order: first-order MAML (no second derivatives).
    """

    meta_learner: Literal["protonet", "maml"] = "protonet"
    inner_lr: float = 0.4
    inner_steps: int = 1
    test_inner_steps: int = 3
    first_order: bool = True

    def maml(self) -> dict[str, Any]:
        """The MAML options of :class:`~datanas_fewshot.fewshot.FewShotConfig` (``{}`` for ProtoNet)."""
        if self.meta_learner != "maml":
            return {}
        return {
            "inner_lr": self.inner_lr,
            "inner_steps": self.inner_steps,
            "test_inner_steps": self.test_inner_steps,
            "first_order": self.first_order,
        }


@dataclass(frozen=True)
class FewShotSearchOptions:
    """The few-shot search's budget per epoch and its ProtoNet distance (the epochs are ``--epochs``).

    Attributes:
        episodes: weight-step episodes per search epoch (the budget is --epochs x --steps-per-epoch).
        distance_scale: ProtoNet: divide squared distances by this number during the search, or 'dim'
            (embedding width).
    """

    episodes: int = 60
    distance_scale: str = "1"

    def __post_init__(self) -> None:
        check_positive(self, "episodes")
        self.scale()

    def scale(self) -> float | str:
        """``distance_scale`` as a number, or ``"dim"``."""
        if self.distance_scale == "dim":
            return "dim"
        try:
            return float(self.distance_scale)
        except ValueError:
            raise ConfigError(
                f"--distance-scale must be a number or 'dim', got {self.distance_scale!r}"
            ) from None


@dataclass(frozen=True)
class FewShotTrainOptions:
    """Meta-training and evaluation of ``python -m datanas_fewshot.train``.

    Attributes:
        conv4_hidden: Conv-4 width: an integer, or 'match' (the parameter count of --match-genotype's network).
        match_genotype: genotype whose parameter count Conv-4 ('--conv4-hidden match') and random cells (their
            C) match.
        train_episodes: meta-training episodes.
        meta_batch: episodes per optimiser step.
        lr: meta learning rate (Adam, cosine to lr / 10).
        test_episodes: meta-test episodes (>= 600 to report).
        official_runs: also score the 20 official one-shot runs (Omniglot all_runs.zip).
    """

    conv4_hidden: str = "64"
    match_genotype: Path | None = None
    train_episodes: int = 600
    meta_batch: int = 1
    lr: float = 2e-3
    test_episodes: int = 600
    official_runs: bool = True

    def __post_init__(self) -> None:
        check_positive(self, "train_episodes", "meta_batch", "test_episodes")


# ------------------------------------------------------------------------------------------ clustering
@dataclass(frozen=True)
class ClusterDataOptions:
    """The images to cluster.

    Attributes:
        data: dataset (digits needs no files).
        data_dir: folder with the dataset files.
        clusters: number of clusters (default: number of classes).
        image_size: resize images to this side (0: keep).
        invert: image folders: invert (dark strokes on light background).
    """

    data: ClusterDataset = "digits"
    data_dir: Path | None = None
    clusters: int | None = None
    image_size: int = 12
    invert: bool = False

    def __post_init__(self) -> None:
        _non_negative(self, "image_size")
        if self.clusters is not None:
            check_positive(self, "clusters")


@dataclass(frozen=True)
class ClusterModelOptions:
    """The unsupervised objective, the head and the augmentation.

    Attributes:
        objective: unsupervised objective.
        entropy_weight: IIC lambda / SCAN entropy weight.
        embed_dim: embedding width of the head.
        overcluster: IIC over-clustering head size (0: off).
        nce_weight: auxiliary InfoNCE term on the embeddings (0: pure objective).
        thickness: stroke-thickness augmentation (0: off).
        contrast: intensity augmentation (0: off).
    """

    objective: Objective = "iic"
    entropy_weight: float | None = None
    embed_dim: int = 64
    overcluster: int = 0
    nce_weight: float = 1.0
    thickness: float = 0.5
    contrast: float = 0.3

    def __post_init__(self) -> None:
        check_positive(self, "embed_dim")
        _non_negative(self, "overcluster", "nce_weight", "thickness", "contrast", "entropy_weight")
        if self.entropy_weight is not None and self.objective == "dec":
            raise ConfigError("--entropy-weight applies to iic and scan, not dec")

    def objective_options(self) -> dict[str, Any]:
        return {} if self.entropy_weight is None else {"entropy_weight": self.entropy_weight}


@dataclass(frozen=True)
class ClusterSearchOptions:
    """The clustering search's budget per epoch (the epochs are ``--epochs``) and its seed.

    Attributes:
        search_batches: batches per search epoch (0: all; the budget is --epochs x --steps-per-epoch).
        search_batch_size: batch size of the search.
        search_seed: seed of the search's supernet and architecture draws only (default: the run seed);
            training and evaluation keep the run seed, so searches with several seeds share one training
            protocol.
    """

    search_batches: int = 60
    search_batch_size: int = 64
    search_seed: int | None = None

    def __post_init__(self) -> None:
        _non_negative(self, "search_batches")
        check_positive(self, "search_batch_size")


@dataclass(frozen=True)
class ClusterTrainOptions:
    """Training of the derived network.

    Attributes:
        train_epochs: training epochs of the derived network.
        train_batches: batches per training epoch (0: all).
        batch_size: training batch size.
        lr: training learning rate (Adam).
    """

    train_epochs: int = 3
    train_batches: int = 100
    batch_size: int = 64
    lr: float = 3e-3

    def __post_init__(self) -> None:
        check_positive(self, "train_epochs", "batch_size")
        _non_negative(self, "train_batches")


@dataclass(frozen=True)
class ClusterEvalOptions:
    """The evaluation.

    Attributes:
        kmeans_n_init: k-means restarts.
        random_cells: also train N random cells with the same budget.
        pixel_baseline: k-means on raw pixels.
    """

    kmeans_n_init: int = 10
    random_cells: int = 0
    pixel_baseline: bool = True

    def __post_init__(self) -> None:
        check_positive(self, "kmeans_n_init")
        _non_negative(self, "random_cells")
