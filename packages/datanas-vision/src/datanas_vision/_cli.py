"""Helpers shared by the vision CLIs (argument groups, option parsing, output)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core.cli_options import add_options, parse_kv, parse_reg
from datanas_core.errors import ConfigError

if TYPE_CHECKING:
    from datanas_vision.data import VisionData

__all__ = [
    "add_data_args",
    "set_threads",
    "data_config",
    "load_data_from_args",
    "parse_kv",
    "parse_reg",
    "write_out",
]


#: ``--data`` choices without importing torch (``--help`` stays fast); a test checks them against
#: :data:`datanas_vision.data.DATASETS`.
DATASET_NAMES = ("cifar10", "digits", "imagefolder", "imagezip", "mnist")


def write_out(text: str) -> None:
    """Write a line to stdout (CLI output; libraries log instead)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--data-dir`` and the dataset options."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        choices=DATASET_NAMES,
        default="digits",
        help="dataset (default: digits, scikit-learn's bundled 8x8 digits; needs no --data-dir)",
    )
    g.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset location: a directory (cifar10, imagefolder, mnist) or a .zip file (imagezip)",
    )
    add_options(
        g,
        ["--download"],
        help={
            "--download": "download missing CIFAR-10 files into --data-dir (checksum verified; default: off)"
        },
    )
    g.add_argument("--max-per-class", type=int, default=None, help="use at most N training images per class")
    g.add_argument("--test-max-per-class", type=int, default=None, help="use at most N test images per class")
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize folder/zip images to SIZE x SIZE (default: as stored)",
    )
    g.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes (image decoding)")
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random crop with padding (+ horizontal flip where it suits the data)",
    )


def load_data_from_args(args: argparse.Namespace) -> VisionData:
    from datanas_vision.data import DataOptions, load_dataset

    opts = DataOptions(
        max_per_class=args.max_per_class,
        test_max_per_class=args.test_max_per_class,
        image_size=args.image_size,
        download=bool(args.download),
    )
    return load_dataset(args.data, args.data_dir, opts)


def data_config(args: argparse.Namespace, data: VisionData) -> dict[str, Any]:
    """The data part of a run's configuration (JSON-able)."""
    return {
        "data": args.data,
        "data_dir": None if args.data_dir is None else str(args.data_dir),
        "max_per_class": args.max_per_class,
        "test_max_per_class": args.test_max_per_class,
        "image_size": args.image_size,
        "augment": bool(args.augment),
        "dataset": data.describe(),
    }


#: Images with fewer pixels than this get one torch thread by default (see :func:`set_threads`).
SMALL_IMAGE_PIXELS = 32 * 32


def set_threads(requested: int | None, image_size: tuple[int, int], device: Any) -> int:
    """Set torch's intra-op CPU threads and return the number used.

    ``requested`` wins when given. Otherwise, on the CPU with images smaller than 32x32 (digits, MNIST-sized
    or smaller), one thread: intra-op parallelism gains little on such small feature maps, and OpenMP
    threads that wait for each other slow a run down many times over when the cores are shared with
    other processes. Larger images keep torch's default.

    Raises:
        ConfigError: ``requested`` < 1.
    """
    import logging

    import torch

    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--threads must be >= 1, got {requested}")
        torch.set_num_threads(requested)
    elif str(device).startswith("cpu") and image_size[0] * image_size[1] < SMALL_IMAGE_PIXELS:
        if torch.get_num_threads() != 1:
            logging.getLogger(__name__).info(
                "using 1 CPU thread for %dx%d images (pass --threads N to change)", *image_size
            )
        torch.set_num_threads(1)
    return torch.get_num_threads()
