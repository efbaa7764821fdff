"""Command line: train a derived segmentation backbone (searched, bundled or random) and report test mIoU.

Examples::

    python -m datanas_seg.train --genotype runs/seg-search/genotype.json --data isbi2012 --data-dir DIR
    python -m datanas_seg.train --genotype random:3 --data isbi2012 --data-dir DIR      # a random backbone
    python -m datanas_seg.train --genotype G.json ... --export-config runs/g/mmseg_config.py
    python -m datanas_seg.train --genotype runs/seg-search ...      # a search run directory

With a search run directory (or its genotype.json), the results are also added to that run's summary.json
and report. ``--export-config`` writes an mmseg config with the real ``data_root`` (the segfolder given as
``--data-dir``, or the loaded images written as a segfolder next to the config) and this run's
train/val/test split.

The model is mmseg's ``EncoderDecoder`` with the ``DataNASBackbone`` and an mmseg decode head
(``--framework mmseg``, default) or the pure-torch FPN head (``--framework torch``). Training uses random
crops of the training images (SGD, poly LR); validation and test mIoU are computed on whole images with
mmseg's ``IoUMetric.intersect_and_union`` (pure-torch areas with ``--framework torch``). Results go to
``OUT/metrics.json`` (and the weights to ``OUT/model.pt``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core.cli_options import (
    add_dataclass_options,
    add_options,
    command,
    dataclass_from_args,
    new_parser,
    print_summary,
    torch_device,
)
from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_seg import _cli
from datanas_seg.cli_config import SegDataConfig, SegModelConfig, SegTrainConfig
from datanas_seg.genotypes import resolve_genotype

if TYPE_CHECKING:
    import torch

    from datanas_seg.data import SegImages
    from datanas_seg.space import SegDartsSpace

__all__ = ["build_parser", "evaluate_model", "main", "parse_genotype", "train_and_evaluate"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m datanas_seg.train``."""
    from datanas_core.runtime import add_runtime_args

    p = new_parser(
        "python -m datanas_seg.train",
        "Train a derived DataNAS segmentation backbone and report validation/test mIoU.",
    )
    add_options(
        p,
        ["--genotype"],
        required=["--genotype"],
        help={
            "--genotype": "genotype JSON path, search run directory, bundled name, or 'random:SEED' for a random "
            "architecture of the space"
        },
    )
    _cli.add_data_args(p)
    _cli.add_model_args(p, C=16, head_channels=16)
    g = p.add_argument_group("training")
    add_dataclass_options(g, SegTrainConfig)
    add_options(g, ["--threads"], help={"--threads": "torch CPU threads (default: torch's choice)"})
    g.add_argument(
        "--export-config", type=Path, default=None, help="also write an mmseg config for the genotype"
    )
    # --seed is SegTrainConfig.seed (above): the seed of the training configuration it rebuilds.
    add_runtime_args(
        p,
        ["out", "device", "verbose"],
        help={
            "out": "output folder (default: runs/seg-train/<time>)",
            "device": "torch device (default: cuda if available, else cpu)",
        },
    )
    return p


def parse_genotype(text: str, space: SegDartsSpace) -> Genotype:
    """A genotype from ``--genotype`` (``random:SEED`` draws one from the space).

    Raises:
        GenotypeError: unknown name or file; ConfigError: bad ``random:`` seed.
    """
    import torch

    from datanas_seg.training import random_genotype

    if text.startswith("random:"):
        try:
            seed = int(text.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--genotype {text!r}: use random:SEED with an integer seed") from None
        return random_genotype(space, torch.Generator().manual_seed(seed)).with_meta(seed=seed)
    return resolve_genotype(text)


def evaluate_model(
    model_config: SegModelConfig,
    train: SegTrainConfig,
    model: torch.nn.Module,
    part: SegImages,
    areas_fn: Any,
    device: torch.device,
    *,
    crop: int,
) -> dict[str, float]:
    """mIoU of ``model`` on the whole images of ``part`` (sliding windows unless ``test_mode`` is whole)."""
    from datanas_seg.data import EvalImageDataset
    from datanas_seg.task import evaluate_segmentation

    slide = train.test_mode == "slide"
    predict = _cli.predict_fn(
        model_config, model, crop_size=crop if slide else None, stride=train.test_stride if slide else None
    )
    was_training = model.training
    model.eval()
    try:
        divisor = 4 * 2 ** (model_config.num_stages - 1)
        loader = [(x[None], y[None]) for x, y in EvalImageDataset(part, size_divisor=divisor)]
        return evaluate_segmentation(
            predict,
            loader,
            part.num_classes,
            ignore_index=part.ignore_index,
            device=device,
            areas_fn=areas_fn,
        )
    finally:
        model.train(was_training)


def train_and_evaluate(
    model_config: SegModelConfig,
    train: SegTrainConfig,
    genotype: Genotype,
    splits: _cli.Splits,
    *,
    batch_size: int,
    crop: int,
    device: torch.device,
    out: Path | None = None,
) -> dict[str, Any]:
    """Build, train and evaluate one derived model; returns the metrics record (also written to ``out``)."""
    import torch

    from datanas_core.io import atomic_write_text
    from datanas_seg.training import TrainSettings, count_parameters, train_model

    torch.manual_seed(train.seed)
    model, task, areas_fn = _cli.build_derived_model(
        model_config, genotype, splits.data, drop_path_prob=train.drop_path, class_weight=splits.class_weight
    )
    model.to(device)
    backbone = model.backbone
    n_backbone = count_parameters(backbone)
    n_total = count_parameters(model)
    if train.init_weights is not None:
        try:
            model.load_state_dict(torch.load(train.init_weights, map_location=device, weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot load --init-weights {str(train.init_weights)!r} into this model: {exc}"
            ) from exc
    settings = TrainSettings(
        iters=max(train.iters, 1),
        batch_size=batch_size,
        crop_size=crop,
        lr=train.lr,
        weight_decay=train.weight_decay,
        seed=train.seed,
    )
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    if train.iters > 0:
        logger.info("training: %d backbone / %d total parameters, %s", n_backbone, n_total, settings)
        history = train_model(model, task, splits.train, settings)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    val = evaluate_model(model_config, train, model, splits.val, areas_fn, device, crop=crop)
    test = evaluate_model(model_config, train, model, splits.test, areas_fn, device, crop=crop)
    record = {
        "genotype": genotype.to_dict(),
        "framework": model_config.framework,
        "decode_head": model_config.decode_head if model_config.framework == "mmseg" else "SimpleSegHead",
        "params_backbone": n_backbone,
        "params_total": n_total,
        "train": {**settings.to_dict(), "iters": train.iters},
        "test_mode": train.test_mode,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t1,
        "final_train_loss": history[-1]["loss"] if history else None,
        "val": val,
        "test": test,
        "history": history,
    }
    logger.info(
        "val mIoU %.4f | test mIoU %.4f (aAcc %.4f) | %.0fs training",
        val["mIoU"],
        test["mIoU"],
        test["aAcc"],
        train_seconds,
    )
    if out is not None:
        from datanas_core.runtime.rundir import prepare_run_dir

        prepare_run_dir(out)  # one-line error for a file or a read-only path
        atomic_write_text(out / "metrics.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        torch.save(model.state_dict(), out / "model.pt")
    return record


def _run(args: argparse.Namespace) -> int:
    from datanas_core.runtime import seed_everything
    from datanas_seg.export import export_mmseg_config
    from datanas_seg.space import SegDartsSpace

    data = dataclass_from_args(SegDataConfig, args)
    model_config = dataclass_from_args(SegModelConfig, args)
    train = dataclass_from_args(SegTrainConfig, args)
    _cli.set_threads(args.threads)
    seed_everything(train.seed)
    space = SegDartsSpace()
    genotype = parse_genotype(args.genotype, space)
    space.validate(genotype)
    splits = _cli.load_splits(data)
    out = args.out or Path("runs/seg-train") / time.strftime("%Y%m%d-%H%M%S")
    crop = data.crop
    record = train_and_evaluate(
        model_config,
        train,
        genotype,
        splits,
        batch_size=data.batch_size,
        crop=crop,
        device=torch_device(args.device),
        out=out,
    )
    genotype.save(out / "genotype.json")
    if args.export_config is not None:
        data_root = _segfolder_for_export(args, splits)
        path = export_mmseg_config(
            genotype,
            args.export_config,
            num_classes=splits.data.num_classes,
            class_names=splits.data.class_names,
            class_weight=splits.class_weight,
            crop_size=(crop, crop),
            batch_size=data.batch_size,
            max_iters=train.iters,
            lr=train.lr,
            data_root=data_root,
            splits=splits.names(),
            **model_config.segmentor_kwargs(),
        )
        logger.info(
            "mmseg config written to %s (data_root %s, the same train/val/test split)", path, data_root
        )
    from datanas_core.runtime import record_retraining

    metrics = {f"val_{k}": v for k, v in record["val"].items() if isinstance(v, (int, float))}
    metrics.update({f"test_{k}": v for k, v in record["test"].items() if isinstance(v, (int, float))})
    print_summary(
        "seg train",
        run_dir=out,
        genotype=genotype,
        metrics={k: v for k, v in metrics.items() if "mIoU" in k or "aAcc" in k or "mAcc" in k},
        extra={"mmseg config": args.export_config} if args.export_config is not None else None,
    )
    metrics.update(params_backbone=record["params_backbone"], iters=args.iters, data=args.data)
    record_retraining(args.genotype, f"retrain ({args.data})", metrics, source=out)
    return 0


def _segfolder_for_export(args: argparse.Namespace, splits: _cli.Splits) -> Path:
    """The ``data_root`` of an exported config: the ``--data-dir`` of a segfolder of PNGs, else the loaded
    images written as a segfolder next to the config (``<config stem>_data/``)."""
    if args.data == "segfolder":
        images = Path(args.data_dir) / "images"
        if images.is_dir() and all(
            p.suffix.lower() == ".png" for p in images.iterdir() if p.stem in set(splits.data.names)
        ):
            return Path(args.data_dir).resolve()
    from datanas_seg.data import write_segfolder

    target = args.export_config.with_name(f"{args.export_config.stem}_data")
    logger.info("writing the %s images as a segfolder for the exported config: %s", args.data, target)
    return write_segfolder(splits.data, target).resolve()


#: ``main(argv=None) -> int``: parse (``--config``/``--resume`` where offered), run, one-line errors.
main = command(build_parser, _run)

if __name__ == "__main__":
    raise SystemExit(main())
