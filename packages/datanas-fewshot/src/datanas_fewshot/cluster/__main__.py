"""``python -m datanas_fewshot.cluster``: unsupervised cell search, training and k-means evaluation.

Example::

    python -m datanas_fewshot.cluster --data mnist --data-dir ../shared/data/mnist --out runs/cluster-mnist
    python -m datanas_fewshot.cluster --data digits --objective scan --random-cells 5

The run directory holds the search outputs of :func:`datanas_core.runtime.run_search` (config, manifest,
metrics, checkpoints, genotype, report) plus ``clustering/``: ``results.json`` (NMI / ARI / ACC of k-means on
the embeddings and of the head's assignments, the raw-pixel baseline, random cells), ``model.pt``, and the
report (``report.html``, ``confusion_kmeans.svg``, ``confusion_head.svg``, ``projection.svg``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core.cli_options import (
    CONFIG_KEY,
    add_dataclass_options,
    add_options,
    cli_config,
    command,
    dataclass_from_args,
    dataclass_help,
    new_parser,
    print_summary,
    resolve_genotype,
)
from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_fewshot.cli_config import (  # noqa: F401 - the choice tuples: their old import place
    CLUSTER_DATASET_NAMES as DATASET_NAMES,
)
from datanas_fewshot.cli_config import (  # noqa: F401 - the choice tuples: their old import place
    OBJECTIVE_NAMES,
    CellNetOptions,
    ClusterDataOptions,
    ClusterEvalOptions,
    ClusterModelOptions,
    ClusterSearchOptions,
    ClusterTrainOptions,
)
from datanas_fewshot.search import add_cellnet_args, add_method_args, search_config, set_threads

if TYPE_CHECKING:
    from datanas_fewshot.cluster.pipeline import (
        ClusterConfig,
    )

logger = logging.getLogger("datanas_fewshot.cluster")


def build_parser() -> argparse.ArgumentParser:
    from datanas_core.runtime import add_runtime_args

    p = new_parser(
        "python -m datanas_fewshot.cluster",
        "Search a cell for unsupervised clustering (no labels in search or training), train it, "
        "and evaluate with k-means (NMI, ARI, Hungarian accuracy).",
    )
    add_dataclass_options(p.add_argument_group("data"), ClusterDataOptions)
    m = p.add_argument_group("model")
    add_dataclass_options(m, ClusterModelOptions, ["objective", "entropy_weight"])
    add_cellnet_args(m)
    add_dataclass_options(
        m, ClusterModelOptions, ["embed_dim", "overcluster", "nce_weight", "thickness", "contrast"]
    )
    s = p.add_argument_group("search")
    add_options(
        s,
        ["--genotype"],
        help={
            "--genotype": "skip the search and train this genotype (a JSON file or a search run directory)"
        },
    )
    add_options(
        s,
        ["--epochs"],
        defaults={"--epochs": 6},
        aliases={"--epochs": ["--search-epochs"]},
        dests={"--epochs": "search_epochs"},
        help={"--epochs": "search epochs (--search-epochs: old name)"},
    )
    add_dataclass_options(
        s,
        ClusterSearchOptions,
        ["search_batches", "search_batch_size"],
        flags={"search_batches": "--steps-per-epoch"},
        aliases={"search_batches": ["--search-batches"]},
        help={
            "search_batches": dataclass_help(ClusterSearchOptions)["search_batches"]
            + "; --search-batches: old name"
        },
    )
    add_method_args(s, samples=4, w_lr=3e-3, arch_warmup=2)
    add_dataclass_options(s, ClusterSearchOptions, ["search_seed"])
    add_dataclass_options(p.add_argument_group("training"), ClusterTrainOptions)
    e = p.add_argument_group("evaluation")
    add_dataclass_options(e, ClusterEvalOptions)
    add_options(e, ["--threads"], help={"--threads": "torch CPU threads (default: torch's choice)"})
    add_runtime_args(p)
    return p


def config_from_args(args: argparse.Namespace, n_clusters: int, seed: int) -> ClusterConfig:
    """The :class:`~datanas_fewshot.cluster.pipeline.ClusterConfig` of the parsed options (built from the
    option dataclasses of :mod:`datanas_fewshot.cli_config`)."""
    from datanas_fewshot.cluster.augment import PairAugment, RandomAffine
    from datanas_fewshot.cluster.pipeline import ClusterConfig
    from datanas_fewshot.cluster.train import TrainConfig

    data = dataclass_from_args(ClusterDataOptions, args)
    model = dataclass_from_args(ClusterModelOptions, args)
    net = dataclass_from_args(CellNetOptions, args)
    search = dataclass_from_args(ClusterSearchOptions, args)
    train = dataclass_from_args(ClusterTrainOptions, args)
    evaluation = dataclass_from_args(ClusterEvalOptions, args)
    ops = net.op_set()
    return ClusterConfig(
        n_clusters=n_clusters,
        image_size=data.image_size or None,
        ops=ops,
        steps=net.steps,
        C=net.C,
        layers=net.layers,
        embed_dim=model.embed_dim,
        objective=model.objective,
        objective_options=model.objective_options(),
        assignment="student_t" if model.objective == "dec" else "linear",
        overcluster=model.overcluster,
        nce_weight=model.nce_weight,
        weight_optimizer=args.w_optimizer,
        search=search_config(args, seed, epochs=args.search_epochs),
        search_batch_size=search.search_batch_size,
        search_max_batches=search.search_batches or None,
        train=TrainConfig(
            epochs=train.train_epochs,
            batch_size=train.batch_size,
            lr=train.lr,
            max_batches=train.train_batches or None,
            seed=seed,
        ),
        kmeans_n_init=evaluation.kmeans_n_init,
        augment=PairAugment(RandomAffine(thickness=model.thickness, contrast=model.contrast)),
        seed=seed,
        search_seed=search.search_seed,
    )


def run_one(args: argparse.Namespace, opts: Any, seed: int, out: Path) -> dict[str, Any]:
    import torch

    from datanas_core.io import atomic_write_text
    from datanas_core.runtime import run_search
    from datanas_fewshot.cellnets import count_parameters, resize_images
    from datanas_fewshot.cluster.data import load_clustering_data
    from datanas_fewshot.cluster.pipeline import (
        build_clustering_searcher,
        evaluate_random_cells,
        kmeans_on_pixels,
        train_network,
    )
    from datanas_fewshot.cluster.report import write_report

    options = dataclass_from_args(ClusterDataOptions, args)
    evaluation = dataclass_from_args(ClusterEvalOptions, args)
    data = load_clustering_data(
        options.data, options.data_dir, size=options.image_size or 28, invert=options.invert
    )
    n_clusters = options.clusters or data.num_classes
    if n_clusters is None:
        raise ConfigError(f"dataset {data.name!r} has no labels: pass --clusters K")
    config = config_from_args(args, n_clusters, seed)
    from datanas_core.runtime.rundir import prepare_run_dir

    prepare_run_dir(out)  # one-line error for a file or a read-only path
    run_config = {"data": args.data, "data_dir": str(args.data_dir) if args.data_dir else None,
                  "images": len(data), **config.to_dict(), CONFIG_KEY: cli_config(args)}  # fmt: skip
    t0 = time.time()
    if args.genotype is not None:
        genotype = resolve_genotype(args.genotype, nb201=False)
        config.space().validate(genotype)
        search_seconds = 0.0
    else:
        # search and training see data.images only; data.labels are used in evaluation below
        searcher, train_loader, val_loader = build_clustering_searcher(data.images, config)
        size = config.image_size or int(data.images.shape[-1])
        result = run_search(
            searcher,
            train_loader,
            val_loader,
            run_dir=out,
            config=run_config,
            consistency_batches=2,
            derived_kwargs={
                "C": config.C,
                "layers": config.layers,
                "num_classes": 0,
                "in_channels": int(data.images.shape[1]),
            },  # fmt: skip
            derived_input_shape=(int(data.images.shape[1]), size, size),
            **opts.run_kwargs(),
        )
        genotype = result.genotype
        search_seconds = time.time() - t0
    t1 = time.time()
    net, history = train_network(data.images, genotype, config)
    train_seconds = time.time() - t1
    from datanas_fewshot.cluster.kmeans import KMeansEvaluator
    from datanas_fewshot.cluster.train import evaluate_clustering

    results: dict[str, Any] = {
        "dataset": data.name,
        "images": len(data),
        "n_clusters": n_clusters,
        "genotype": genotype.to_dict(),
        "parameters": count_parameters(net),
        "search_seconds": round(search_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "train_history": history,
    }
    cdir = out / "clustering"
    cdir.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "genotype": genotype.to_dict(), "config": config.to_dict()},
               cdir / "model.pt")  # fmt: skip
    if data.labels is None:
        logger.warning("dataset %r has no labels: trained, but not scored", data.name)
    else:
        ev = evaluate_clustering(
            net, resize_images(data.images, config.image_size), data.labels,
            KMeansEvaluator(n_clusters, n_init=config.kmeans_n_init, seed=seed),
        )  # fmt: skip
        results["searched"] = ev.to_dict()
        scores = {"searched: k-means": ev.kmeans.to_dict(), "searched: head": ev.head.to_dict()}
        if evaluation.pixel_baseline:
            px = kmeans_on_pixels(data, n_clusters, n_init=config.kmeans_n_init, seed=seed)
            results["pixels_kmeans"] = px.to_dict()
            scores["raw pixels: k-means"] = px.to_dict()
        if evaluation.random_cells:
            rnd = evaluate_random_cells(data, config, evaluation.random_cells, seed=seed + 1000)
            results["random_cells"] = [{"genotype": g.to_dict(), **r.to_dict()} for g, r in rnd]
            nmis = [r.kmeans.nmi for _, r in rnd]
            results["random_median_kmeans_nmi"] = statistics.median(nmis)
            results["random_median_head_nmi"] = statistics.median([r.head.nmi for _, r in rnd])
            scores["random cells (median): k-means"] = {"nmi": statistics.median(nmis)}
        write_report(
            cdir,
            labels=data.labels,
            predictions={"kmeans": ev.kmeans_pred, "head": ev.head_pred},
            embeddings=ev.embeddings,
            scores=scores,
            title=f"datanas clustering: {data.name} ({config.objective})",
            extra={"genotype": genotype.to_json(indent=None), "parameters": results["parameters"]},
        )
        logger.info("searched cell: k-means %s | head %s", ev.kmeans, ev.head)  # rounded (__str__)
    atomic_write_text(cdir / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    return results


def _rounded(value: Any, digits: int = 4) -> Any:
    """``value`` with every float rounded to ``digits`` decimals (the printed summary line)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def _headline(res: dict[str, Any]) -> dict[str, Any]:
    """The clustering scores of the summary block (rounded to 4 decimals)."""
    out: dict[str, Any] = {}
    for part in ("kmeans", "head"):
        for k, v in (res.get("searched", {}).get(part) or {}).items():
            if isinstance(v, float):
                out[f"{part}_{k}"] = v
    if "pixels_kmeans" in res:
        out["pixels_kmeans_nmi"] = res["pixels_kmeans"].get("nmi")
    if "random_median_kmeans_nmi" in res:
        out["random_median_kmeans_nmi"] = res["random_median_kmeans_nmi"]
    return _rounded(out)


def _run(args: argparse.Namespace) -> int:
    """The clustering run of the parsed options (one per seed)."""
    from datanas_core.runtime import RuntimeOptions

    opts = RuntimeOptions.from_args(args, default_out="runs/cluster")
    if opts.dry_run:
        raise ConfigError("--dry-run is not supported by the clustering CLI")
    set_threads(args.threads)
    for seed in opts.seeds:
        out = opts.run_dir_for(seed)
        res = run_one(args, opts, seed, out)
        print_summary(
            "cluster",
            run_dir=out,
            genotype=Genotype.from_dict(res["genotype"]),
            metrics=_headline(res),
            extra={
                "seed": seed,
                "parameters": res.get("parameters"),
                "report": out / "clustering" / "report.html",
            },
        )
    return 0


#: ``main(argv=None) -> int``: parse (``--config``/``--resume``), run, one-line errors.
main = command(build_parser, _run)


if __name__ == "__main__":
    raise SystemExit(main())
