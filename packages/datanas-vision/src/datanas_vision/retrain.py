"""Retraining a derived architecture from scratch with the DARTS evaluation protocol (methods.md §1.4).

SGD with momentum (timm's ``create_optimizer_v2(opt="momentum")``, weight decay on every parameter as in
DARTS), cosine learning rate to ``min_lr`` (timm's ``create_scheduler_v2(sched="cosine")``, stepped per
epoch), auxiliary head weighted 0.4, drop-path linearly ramped from 0 over the epochs, cutout, gradient-norm
clipping at 5, then top-1/top-5 on the test split.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datanas_core.errors import ConfigError, NumericalError
from datanas_core.genotype import Genotype
from datanas_vision.data import VisionData, make_train_loaders
from datanas_vision.models import GenotypeLike, resolve_genotype
from datanas_vision.retrain_config import RetrainConfig
from datanas_vision.task import accuracy

__all__ = ["RetrainConfig", "auxiliary_fits", "build_retrain_model", "evaluate", "retrain"]

logger = logging.getLogger(__name__)


def auxiliary_fits(image_size: tuple[int, int], stem: str = "cifar") -> bool:
    """Whether DARTS' CIFAR auxiliary head fits: it needs >= 8x8 maps after the second reduction."""
    if stem != "cifar":
        return min(image_size) >= 224
    return min(image_size) // 4 >= 8


def resolve_cutout(cutout: int | None, image_size: tuple[int, int]) -> int:
    """The cutout length to use (``None``: 16 for images of 32 pixels or more, else a quarter of the side)."""
    if cutout is not None:
        return int(cutout)
    side = min(image_size)
    return 16 if side >= 32 else max(1, side // 4)


def build_retrain_model(
    genotype: GenotypeLike, data: VisionData, config: RetrainConfig
) -> tuple[nn.Module, dict[str, Any]]:
    """The timm model for ``genotype`` sized for ``data`` (``datanas_cifar`` or ``datanas_nb201``).

    Returns:
        ``(model, model_args)``: ``timm.create_model(name, **model_args)`` rebuilds it.
    """
    import timm

    import datanas_vision.timm_models  # noqa: F401  (registers the entrypoints)

    g = resolve_genotype(genotype)
    if g.space == "nb201":
        name = "datanas_nb201"
        kwargs: dict[str, Any] = {"C": config.C, "N": config.layers}
    else:
        name = "datanas_cifar"
        aux = auxiliary_fits(data.image_size) if config.auxiliary is None else bool(config.auxiliary)
        if aux and not auxiliary_fits(data.image_size):
            raise ConfigError(
                f"the auxiliary head needs >= 8x8 feature maps after the second reduction, i.e. images of at "
                f"least 32x32; these are {data.image_size[0]}x{data.image_size[1]} (use --no-auxiliary)"
            )
        kwargs = {"C": config.C, "layers": config.layers, "auxiliary": aux, "drop_path_rate": 0.0}
    kwargs.update(genotype=g.to_dict(), num_classes=data.num_classes, in_chans=data.in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = timm.create_model(name, pretrained=False, **kwargs)
    return model, {"model_name": name, **kwargs}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy of ``model`` over ``loader`` (eval mode)."""
    model.eval()
    total, loss_sum, top1, top5 = 0, 0.0, 0.0, 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        n = int(y.shape[0])
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        top1 += float(accuracy(logits, y)) * n
        top5 += float(accuracy(logits, y, 5)) * n
        total += n
    return {"loss": loss_sum / total, "top1": top1 / total, "top5": top5 / total, "num_images": total}


def retrain(
    genotype: GenotypeLike,
    data: VisionData,
    config: RetrainConfig | None = None,
    *,
    device: torch.device | str | None = None,
    on_epoch_end: Callable[[Mapping[str, Any]], None] | None = None,
    on_step_end: Callable[[int, int], None] | None = None,
    eval_every: int = 0,
) -> dict[str, Any]:
    """Train ``genotype`` from scratch on ``data.train`` and evaluate top-1 on ``data.test``.

    Args:
        genotype: see :func:`~datanas_vision.models.resolve_genotype`.
        data: the dataset.
        config: :class:`RetrainConfig`.
        device: where to train (default CPU).
        on_epoch_end: called with each epoch record (progress reporting belongs to the caller).
        on_step_end: called with ``(step_in_epoch, steps_per_epoch)`` after every step.
        eval_every: also evaluate on the test split every this many epochs (0: only at the end).

    Returns:
        ``{"test": {...}, "history": [...], "params": ..., "model_args": ..., "config": ..., "seconds": ...}``
        plus ``"model"`` (the trained module).

    Raises:
        NumericalError: the loss became NaN or infinite.
    """
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    config = config or RetrainConfig()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    g: Genotype = resolve_genotype(genotype)
    model, model_args = build_retrain_model(g, data, config)
    model.to(dev)
    drop_gen = torch.Generator(device=dev).manual_seed(config.seed + 7)
    if hasattr(model, "drop_path_generator"):
        model.drop_path_generator = drop_gen
    cutout = resolve_cutout(config.cutout, data.image_size)
    train_loader, test_loader = make_train_loaders(
        data,
        batch_size=config.batch_size,
        seed=config.seed,
        augment=config.augment,
        cutout=cutout,
        num_workers=config.num_workers,
    )
    optimizer = create_optimizer_v2(
        model,
        opt="momentum",
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        filter_bias_and_bn=False,
    )
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=config.epochs, min_lr=config.min_lr
    )
    params = sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n)
    logger.info(
        "retraining %s (%s): %.3f M parameters, %d epochs, cutout %d, auxiliary %s",
        g.meta.get("name", g.space),
        model_args["model_name"],
        params / 1e6,
        config.epochs,
        cutout,
        model_args.get("auxiliary", False),
    )
    history: list[dict[str, Any]] = []
    t0 = time.time()
    steps = len(train_loader)
    for epoch in range(config.epochs):
        model.train()
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = config.drop_path * epoch / config.epochs
        lr = float(optimizer.param_groups[0]["lr"])
        sums = {"loss": 0.0, "acc": 0.0}
        seen = 0
        train_loader.set_epoch(epoch)
        for i, (x, y) in enumerate(train_loader):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            out = model(x)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            if aux is not None:
                loss = loss + config.auxiliary_weight * F.cross_entropy(
                    aux, y, label_smoothing=config.label_smoothing
                )
            if not math.isfinite(float(loss.detach())):
                raise NumericalError(
                    f"retraining loss became {float(loss.detach())} at epoch {epoch}, step {i}; "
                    f"lower the learning rate (now {lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            n = int(y.shape[0])
            sums["loss"] += float(loss.detach()) * n
            sums["acc"] += float(accuracy(logits.detach(), y)) * n
            seen += n
            if on_step_end is not None:
                on_step_end(i + 1, steps)
        scheduler.step(epoch + 1)
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "drop_path": float(getattr(model, "drop_path_prob", 0.0)),
            "train_loss": sums["loss"] / seen,
            "train_acc": sums["acc"] / seen,
            "time": time.time() - t0,
        }
        if eval_every and ((epoch + 1) % eval_every == 0) and epoch + 1 < config.epochs:
            record.update({f"test_{k}": v for k, v in evaluate(model, test_loader, dev).items()})
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(record)
    test = evaluate(model, test_loader, dev)
    seconds = time.time() - t0
    logger.info("test top-1 %.4f (top-5 %.4f) after %.0f s", test["top1"], test["top5"], seconds)
    return {
        "test": test,
        "history": history,
        "params": int(params),
        "model_args": {k: v for k, v in model_args.items() if k != "genotype"},
        "genotype": g.to_dict(),
        "config": {**config.to_dict(), "cutout": cutout, "auxiliary": model_args.get("auxiliary", False)},
        "seconds": seconds,
        "model": model,
    }
