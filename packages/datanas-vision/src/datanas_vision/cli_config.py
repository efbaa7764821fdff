"""The options of the ``datanas_vision`` command lines as typed dataclasses, without torch (``--help`` builds its
option tables from them): each field's type, default and help (the ``Attributes:`` entries) are the single
source of the CLI flag. :func:`~datanas_core.cli_options.add_dataclass_options` makes the flags and
:func:`~datanas_core.cli_options.dataclass_from_args` turns the parsed options back into these objects. The
retraining hyper-parameters are :class:`~datanas_vision.retrain_config.RetrainConfig`; the method, budget and
run flags shared with the other domains come from :mod:`datanas_core.cli_options` and
:class:`~datanas_core.runtime.RuntimeArgs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from datanas_core.cli_options import check_positive
from datanas_core.errors import ConfigError

if TYPE_CHECKING:
    from datanas_vision.data import DataOptions, VisionData

__all__ = [
    "COMPARE_SPACES",
    "DATASET_NAMES",
    "SPACE_CHOICES",
    "VisionCompareConfig",
    "VisionCompareSearch",
    "VisionDataConfig",
    "VisionMethodOptions",
    "VisionSearchSettings",
    "VisionTrainOptions",
]

DatasetName = Literal["cifar10", "digits", "imagefolder", "imagezip", "mnist"]
SpaceName = Literal[
    "darts", "darts_ext", "nb201", "drnas_darts", "drnas_nb201", "entrannas_darts", "entrannas_nb201"
]
CompareSpace = Literal["darts", "darts_ext", "nb201"]

#: ``--data`` choices (the field's Literal values); a test checks them against
#: :data:`datanas_vision.data.DATASETS`.
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
#: Core spaces usable for images: DARTS (+ extended), NB201, and the method spaces of DrNAS and EnTranNAS.
SPACE_CHOICES: tuple[str, ...] = get_args(SpaceName)
#: The spaces ``compare`` draws random cells from.
COMPARE_SPACES: tuple[str, ...] = get_args(CompareSpace)


@dataclass(frozen=True)
class VisionDataConfig:
    """The images of a vision CLI: dataset, location, subsets and loading.

    Attributes:
        data: dataset (default: digits, scikit-learn's bundled 8x8 digits; needs no --data-dir).
        data_dir: dataset location: a directory (cifar10, imagefolder, mnist) or a .zip file (imagezip).
        download: download missing CIFAR-10 files into --data-dir (checksum verified; default: off).
        max_per_class: use at most N training images per class.
        test_max_per_class: use at most N test images per class.
        image_size: resize folder/zip images to SIZE x SIZE (default: as stored).
        num_workers: data-loader worker processes (image decoding).
        augment: random crop with padding (+ horizontal flip where it suits the data).
    """

    data: DatasetName = "digits"
    data_dir: Path | None = None
    download: bool = False
    max_per_class: int | None = None
    test_max_per_class: int | None = None
    image_size: int | None = None
    num_workers: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        check_positive(self, "max_per_class", "test_max_per_class", "image_size")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, got {self.num_workers!r}")

    def data_options(self) -> DataOptions:
        """The :class:`~datanas_vision.data.DataOptions` of the dataset sources."""
        from datanas_vision.data import DataOptions

        return DataOptions(
            max_per_class=self.max_per_class,
            test_max_per_class=self.test_max_per_class,
            image_size=self.image_size,
            download=bool(self.download),
        )

    def load(self) -> VisionData:
        """Load the dataset (:func:`~datanas_vision.data.load_dataset`)."""
        from datanas_vision.data import load_dataset

        return load_dataset(self.data, self.data_dir, self.data_options())

    def to_config(self, data: VisionData | None = None) -> dict[str, Any]:
        """The data part of a run's configuration (JSON-able; with ``data``, its description)."""
        out: dict[str, Any] = {
            "data": self.data,
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "max_per_class": self.max_per_class,
            "test_max_per_class": self.test_max_per_class,
            "image_size": self.image_size,
            "augment": bool(self.augment),
        }
        if data is not None:
            out["dataset"] = data.describe()
        return out


@dataclass(frozen=True)
class VisionSearchSettings:
    """The supernet, loaders and read-only checks of ``python -m datanas_vision.search``.

    Attributes:
        space: search space.
        C: supernet width (initial channels).
        layers: supernet cells (DARTS) or cells per stage N (NB201).
        batch_size: batch size (each of the two bilevel halves).
        train_fraction: share of the training split that trains weights.
        consistency_batches: validation batches for the per-epoch search/child consistency check (default: the
            first 2,048 validation images, or all of them if fewer).
        benchmark: NB201 spaces: score every epoch's derived cell against NAS-Bench-201 / NATS-Bench results (a
            CSV export with ArchitectureString,CIFAR10TestAccuracy200Epochs,..., a simple 'arch,<metric>,...'
            CSV, or an official benchmark file read with nats_bench / nas_201_api when installed); read-only:
            the search is the same with and without it.
    """

    space: SpaceName = "darts"
    C: int = 8
    layers: int = 5
    batch_size: int = 64
    train_fraction: float = 0.5
    consistency_batches: int | None = None
    benchmark: Path | None = None

    def __post_init__(self) -> None:
        check_positive(self, "C", "layers", "batch_size", "consistency_batches")
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(f"--train-fraction must be in (0, 1), got {self.train_fraction!r}")

    def supernet_kwargs(self, num_classes: int, in_channels: int) -> dict[str, Any]:
        """The supernet's size keywords (``layers``, or ``N`` in the NB201 spaces)."""
        common = {"C": self.C, "num_classes": num_classes, "in_channels": in_channels}
        if self.space.endswith("nb201"):
            return {**common, "N": self.layers}
        return {**common, "layers": self.layers}


@dataclass(frozen=True)
class VisionMethodOptions:
    """Search settings only the vision search exposes. Each field but the repeatable ``KEY=VALUE`` lists and
    ``stages`` is the :class:`~datanas_core.search.SearchConfig` field of the same name; ``None`` keeps the
    preset's value (or SearchConfig's default). The schedule flags every search CLI has (``--schedule-unit``,
    ``--arch-travel``, ``--a-lr-warmup``, ``--a-lr-schedule``, ``--weight-sampling``) are core's shared options
    (:data:`~datanas_core.cli_options.SEARCH_CONFIG_OPTIONS`).

    Attributes:
        estimator_option: extra estimator option, e.g. tau=linear:5:1 (repeatable).
        stages: DrNAS progressive search stages, e.g. 25:6:7,25:4:4 (epochs, partial-channel K, kept ops per
            edge); the stage epochs must add up to --epochs.
        rule_option: derivation rule option (repeatable).
        w_weight_decay: weight decay of the weights.
        a_weight_decay: architecture weight decay.
        grad_clip: weight gradient-norm clip.
    """

    estimator_option: tuple[str, ...] | None = None
    stages: str | None = None
    rule_option: tuple[str, ...] | None = None
    w_weight_decay: float | None = None
    a_weight_decay: float | None = None
    grad_clip: float | None = None

    #: The flags given more than once (``--estimator-option a=1 --estimator-option b=2``).
    REPEATED = ("estimator_option", "rule_option")

    def search_config_changes(self) -> dict[str, Any]:
        """The :class:`~datanas_core.search.SearchConfig` fields these options set (those given, not ``None``;
        the ``KEY=VALUE`` lists and ``stages`` are read by the search CLI itself)."""
        skip = {*self.REPEATED, "stages"}
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class VisionTrainOptions:
    """The retraining CLI's own options (``python -m datanas_vision.train``; the hyper-parameters are
    :class:`~datanas_vision.retrain_config.RetrainConfig`'s).

    Attributes:
        eval_every: also test every N epochs (0: at the end only).
        overwrite: replace results already in --out.
    """

    eval_every: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ConfigError(f"--eval-every must be >= 0, got {self.eval_every!r}")


@dataclass(frozen=True)
class VisionCompareSearch:
    """The search step of ``python -m datanas_vision.compare`` (skipped with --genotype).

    Attributes:
        search_epochs: search epochs.
        search_C: supernet width.
        search_layers: supernet cells (NB201: per stage).
        search_batch_size: search batch size.
        search_seed: seed of the search only (default: --seed); the random cells and retraining keep --seed,
            so searches with several seeds are compared against the same random cells.
        search_train_fraction: share of the training images for the weights; the rest update the
            architecture (search default 0.5).
    """

    search_epochs: int = 10
    search_C: int = 8
    search_layers: int = 5
    search_batch_size: int = 64
    search_seed: int | None = None
    search_train_fraction: float | None = None

    def __post_init__(self) -> None:
        check_positive(self, "search_epochs", "search_C", "search_layers", "search_batch_size")


@dataclass(frozen=True)
class VisionCompareConfig:
    """The comparison of ``python -m datanas_vision.compare`` (retraining: :class:`RetrainConfig`'s flags).

    Attributes:
        space: search space.
        random: number of random cells.
        train_epochs: retraining epochs.
        jobs: run the search and the retrainings in up to this many child processes at once (default 1:
            everything in this process, one after the other).
        benchmark: --space nb201: also score the search's epochs and every cell against NAS-Bench-201 /
            NATS-Bench results (see python -m datanas_vision.search --benchmark).
    """

    space: CompareSpace = "darts"
    random: int = 10
    train_epochs: int = 10
    jobs: int = 1
    benchmark: Path | None = None

    def __post_init__(self) -> None:
        check_positive(self, "train_epochs", "jobs")
        if not isinstance(self.random, int) or self.random < 0:
            raise ConfigError(f"--random must be >= 0, got {self.random!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
