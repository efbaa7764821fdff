"""``python -m datanas_core.e2nas.pretrain``: train the E2NAS cell VAE and report reconstruction and validity.

Examples:
    python -m datanas_core.e2nas.pretrain --space nb201 --out nb201_vae.pt
    python -m datanas_core.e2nas.pretrain --space darts --samples 50000 --out darts_vae.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datanas_core.e2nas.pretrain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--space", default="nb201", help="search space name (nb201, darts, darts_ext, ...)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the weights (.pt)")
    parser.add_argument(
        "--samples", type=int, default=20000, help="random cells for spaces that cannot be enumerated"
    )
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--kl-weight", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    import datanas_core
    from datanas_core.e2nas.pretraining import pretrain_vae
    from datanas_core.io import atomic_write_bytes

    if args.threads:
        torch.set_num_threads(args.threads)
    space = datanas_core.get_space(args.space)
    t0 = time.time()

    def show(rec: dict) -> None:
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)

    result = pretrain_vae(
        space,
        n_samples=args.samples,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_weight=args.kl_weight,
        seed=args.seed,
        on_epoch=show,
    )
    meta = {
        **result.metrics,
        "space": args.space,
        "epochs": args.epochs,
        "seed": args.seed,
        "seconds": round(time.time() - t0, 1),
        "datanas_core": datanas_core.__version__,
    }
    atomic_write_bytes(args.out, result.vae.to_bytes(meta))
    print(
        f"held-out exact reconstruction {result.metrics['exact_reconstruction']:.4f}, "
        "validity of prior samples "
        f"{result.metrics['validity']:.4f}; wrote {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
