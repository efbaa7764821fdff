"""E2NAS (NeurIPS 2020): differentiable search in the latent space of a cell VAE, with exploration
(novelty) and architecture complementation whose gradients actually flow.

Pieces: :class:`CellVAE` (pretrained with ``python -m datanas_core.e2nas.pretrain``; NB201 weights are
bundled), the ``"e2nas"`` estimator (:class:`LatentEstimator`, straight-through through the decoder), the
``"novelty"`` regulariser and the :class:`Complementation` weight loss. :func:`e2nas_searcher` wires them into
a :class:`~datanas_core.search.Searcher`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datanas_core.e2nas.pretraining import (
    PretrainResult,
    all_nb201_genotypes,
    bundled_vae,
    evaluate_vae,
    load_vae,
    pretrain_vae,
    random_darts_genotypes,
)
from datanas_core.e2nas.search import Complementation, LatentEstimator, Novelty, exploration_weight
from datanas_core.e2nas.vae import CellLayout, CellVAE, codes_to_genotype, genotype_to_codes, layout_of

__all__ = [
    "CellLayout",
    "CellVAE",
    "Complementation",
    "LatentEstimator",
    "Novelty",
    "PretrainResult",
    "all_nb201_genotypes",
    "bundled_vae",
    "codes_to_genotype",
    "e2nas_searcher",
    "evaluate_vae",
    "exploration_weight",
    "genotype_to_codes",
    "layout_of",
    "load_vae",
    "pretrain_vae",
    "random_darts_genotypes",
]


def e2nas_searcher(
    space: Any,
    task: Any,
    config: Any = None,
    *,
    vae: Any = None,
    lam: float = 0.5,
    novelty_weight: float = 1.0,
    r: float = 10.0,
    complementation: bool = True,
    exploration: bool = True,
    supernet_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    device: Any = None,
) -> Any:
    """A :class:`~datanas_core.search.Searcher` set up as E2NAS.

    The paper's defaults (methods.md §7d): weight step first, then the latent step; complementation
    ``λ = 0.5``; exploration with ``η_e = 1 − sigmoid(r (2e/E − 1))``, ``r = 10``: the validation loss
    is weighted
    by ``1 − η_e`` and the novelty term by ``η_e``. ``vae`` defaults to the bundled weights of the space.
    """
    from datanas_core.search import SearchConfig, Searcher

    vae_spec = vae if vae is not None else space.name
    if config is None:
        config = SearchConfig(
            epochs=250,
            estimator="e2nas",
            estimator_options={},
            regularizers=(),
            rule="argmax_edge",
            step_order="weight_first",
            w_nesterov=True,
            w_weight_decay=5e-4,
        )
    regs = list(config.regularizers)
    if exploration:
        regs.append({"type": "novelty", "weight": novelty_weight, "r": r})
    opts = dict(config.estimator_options)
    opts.setdefault("vae", vae_spec)
    config = config.replace(
        estimator="e2nas", estimator_options=opts, regularizers=tuple(regs), executor="sparse"
    )
    searcher = Searcher(
        space,
        task,
        config,
        supernet_kwargs=supernet_kwargs,
        callbacks=callbacks,
        device=device,
        weight_loss=Complementation(lam, seed=config.seed) if complementation else None,
    )
    if exploration:

        def val_weight(s: Any) -> float:
            return 1.0 - exploration_weight(s.epoch, s.config.epochs, r)

        searcher.val_loss_weight = val_weight
    return searcher
