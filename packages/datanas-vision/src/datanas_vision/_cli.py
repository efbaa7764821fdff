"""Helpers shared by the vision CLIs (the data flags, option parsing, output)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from datanas_core.cli_options import add_dataclass_options, dataclass_from_args, parse_kv, parse_reg
from datanas_core.errors import ConfigError
from datanas_vision.cli_config import DATASET_NAMES, VisionDataConfig

if TYPE_CHECKING:
    from datanas_vision.data import VisionData

__all__ = [
    "DATASET_NAMES",
    "add_data_args",
    "set_threads",
    "data_config",
    "load_data_from_args",
    "parse_kv",
    "parse_reg",
    "write_out",
]


def write_out(text: str) -> None:
    """Write a line to stdout (CLI output; libraries log instead)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """The :class:`~datanas_vision.cli_config.VisionDataConfig` options (``--data``, ``--data-dir``, ...)."""
    add_dataclass_options(parser.add_argument_group("data"), VisionDataConfig)


def load_data_from_args(args: argparse.Namespace) -> VisionData:
    """Load the dataset the parsed data options name."""
    return dataclass_from_args(VisionDataConfig, args).load()


def data_config(args: argparse.Namespace, data: VisionData) -> dict[str, Any]:
    """The data part of a run's configuration (JSON-able)."""
    return dataclass_from_args(VisionDataConfig, args).to_config(data)


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
