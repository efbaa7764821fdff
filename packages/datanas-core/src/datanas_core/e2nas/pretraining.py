"""Pretraining the cell VAE: data (every NB201 cell, or samples of the DARTS space), training, metrics."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from datanas_core.e2nas.vae import CellVAE, genotype_to_codes
from datanas_core.errors import ConfigError, UnknownNameError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.space.base import SearchSpace

__all__ = [
    "PretrainResult",
    "all_nb201_genotypes",
    "bundled_vae",
    "evaluate_vae",
    "pretrain_vae",
    "random_darts_genotypes",
]

logger = logging.getLogger(__name__)

#: Bundled pretrained weights (package data), by space name.
BUNDLED = {"nb201": "nb201.pt"}


def all_nb201_genotypes(space: SearchSpace) -> list[Genotype]:
    """The 15,625 cells of an NB201-style space (one op per edge, ``none`` included), in a fixed order."""
    ((ct, spec),) = space.cells().items()
    out = []
    for ops in itertools.product(spec.ops, repeat=spec.num_edges):
        edges = [EdgeChoice(s, d, op) for (s, d), op in zip(spec.edges, ops, strict=True) if op != "none"]
        out.append(Genotype(space.name, {ct: CellGenotype(tuple(edges), spec.concat)}))
    return out


def random_darts_genotypes(space: SearchSpace, n: int, *, seed: int = 0, per_node: int = 2) -> list[Genotype]:
    """``n`` uniformly random DARTS-style cells: ``per_node`` distinct (input, non-none op) pairs per node."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        cells = {}
        for ct, spec in space.cells().items():
            ops = [o for o in spec.ops if o != "none"]
            edges = []
            for node in spec.nodes:
                pairs = [(s, o) for s in range(node) for o in ops]
                pick = torch.randperm(len(pairs), generator=g)[:per_node].tolist()
                edges += [EdgeChoice(pairs[i][0], node, pairs[i][1]) for i in pick]
            cells[ct] = CellGenotype(tuple(edges), spec.concat)
        out.append(Genotype(space.name, cells))
    return out


@dataclass
class PretrainResult:
    """A trained VAE and its held-out metrics."""

    vae: CellVAE
    metrics: dict[str, float]
    history: list[dict[str, float]]


@torch.no_grad()
def evaluate_vae(
    vae: CellVAE, genotypes: list[Genotype], space: SearchSpace, *, n_prior: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Exact reconstruction accuracy (posterior mean -> decoded cell == input), per-entry accuracy, and the
    validity rate of cells decoded from prior samples ``z ~ N(0, I)``."""
    vae.eval()
    x = torch.stack([vae.flatten(genotype_to_codes(g, space)) for g in genotypes])
    mu, _ = vae.encode(x)
    codes = vae.hard_codes(vae.probs(mu), space) if vae.layout[0].one_op_per_edge else None
    if codes is not None:
        rec = vae.flatten(codes)
        exact = (rec == x).all(-1).float().mean().item()
        entry = (rec == x).float().mean().item()
    else:
        dec = [vae.decode_genotype(m, space) for m in mu]
        exact = sum(d == g for d, g in zip(dec, genotypes, strict=True)) / max(1, len(genotypes))
        entry = float("nan")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_prior, vae.latent_dim, generator=gen)
    valid = 0
    for zi in z:
        try:
            space.validate(vae.decode_genotype(zi, space))
            valid += 1
        except Exception:  # noqa: BLE001 - counting invalid decodes is the point
            pass
    return {"exact_reconstruction": float(exact), "entry_accuracy": float(entry), "validity": valid / n_prior}


def pretrain_vae(
    space: SearchSpace,
    *,
    genotypes: list[Genotype] | None = None,
    n_samples: int = 20000,
    latent_dim: int = 16,
    hidden: int = 256,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 2e-3,
    kl_weight: float = 5e-3,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> PretrainResult:
    """Train a :class:`CellVAE` on the cells of ``space`` (all NB201 cells, else ``n_samples`` random ones).

    The data are split ``split`` (train/val/test) with ``seed``; the returned metrics are on the held-out
    test part (and validity on prior samples).
    """
    if genotypes is None:
        if space.default_rule == "argmax_edge":
            genotypes = all_nb201_genotypes(space)
        else:
            genotypes = random_darts_genotypes(space, n_samples, seed=seed)
    if abs(sum(split) - 1.0) > 1e-6 or min(split) < 0:
        raise ConfigError(f"split must be three non-negative fractions summing to 1, got {split}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = CellVAE.for_space(space, latent_dim=latent_dim, hidden=hidden)
    x_all = torch.stack([vae.flatten(genotype_to_codes(gt, space)) for gt in genotypes])
    perm = torch.randperm(len(genotypes), generator=g)
    n_tr = int(split[0] * len(perm))
    n_va = int(split[1] * len(perm))
    tr, va, te = perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :]
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history = []
    for epoch in range(epochs):
        vae.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        total, n = 0.0, 0
        for i in range(0, len(order), batch_size):
            xb = x_all[order[i : i + batch_size]]
            loss, _ = vae.loss(xb, kl_weight=kl_weight, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
            n += len(xb)
        sched.step()
        rec = {"epoch": epoch, "loss": total / max(1, n)}
        if len(va):
            rec.update(
                {
                    f"val_{k}": v
                    for k, v in evaluate_vae(
                        vae, [genotypes[i] for i in va.tolist()], space, n_prior=50
                    ).items()
                }
            )
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        logger.info("vae epoch %d %s", epoch, rec)
    test = [genotypes[i] for i in te.tolist()]
    metrics = evaluate_vae(vae, test, space)
    metrics.update({"n_train": len(tr), "n_val": len(va), "n_test": len(te)})
    vae.eval()
    return PretrainResult(vae, metrics, history)


def bundled_vae(space_name: str) -> CellVAE:
    """The pretrained VAE shipped with the package for ``space_name`` (NB201)."""
    if space_name not in BUNDLED:
        raise UnknownNameError(
            f"no bundled E2NAS VAE for space {space_name!r}; bundled: {', '.join(sorted(BUNDLED))}. "
            f"Pretrain one with `python -m datanas_core.e2nas.pretrain --space {space_name} --out vae.pt` "
            "and pass "
            "vae='vae.pt'."
        )
    data = resources.files("datanas_core.e2nas").joinpath("weights", BUNDLED[space_name]).read_bytes()
    vae, _ = CellVAE.from_bytes(data)
    vae.eval()
    return vae


def load_vae(spec: str | Path | CellVAE, space: SearchSpace | None = None) -> CellVAE:
    """A VAE from an instance, a bundled space name or a file path."""
    if isinstance(spec, CellVAE):
        return spec
    if isinstance(spec, str) and spec in BUNDLED:
        return bundled_vae(spec)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"vae must be a CellVAE, a bundled name ({', '.join(sorted(BUNDLED))}) or an existing file; "
            f"got {spec!r}"
        )
    vae, _ = CellVAE.from_bytes(path.read_bytes())
    vae.eval()
    return vae


def describe(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
