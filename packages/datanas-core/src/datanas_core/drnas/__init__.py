"""DrNAS (Chen et al., ICLR 2021): Dirichlet architecture search with progressive learning (methods.md §6).

The Dirichlet estimator (``"dirichlet"``) and the regularisers (``"dirichlet_kl"``, α weight decay for the
default L2 form) live in the core; this subpackage adds what makes DrNAS DrNAS:

* partial-channel edges with channel shuffle (:class:`PartialChannelMixedOp`) and the spaces
  ``"drnas_darts"`` (DARTS without ``none``, BN inside the pooling ops) and ``"drnas_nb201"``, registered in
  :data:`~datanas_core.SPACES` on import;
* progressive learning (:class:`ProgressiveSearcher`, :class:`Stage`, :func:`parse_stages`): pruning to the
  top ops by α, Net2Net widening (:mod:`~datanas_core.drnas.widen`), optimiser and schedule rebuilt with their
  state carried over, α frozen at the start of each stage;
* the official settings as named configurations (:mod:`~datanas_core.drnas.presets`).

Example:
    >>> import datanas_core.drnas as drnas
    >>> drnas.parse_stages("25:6:7,25:4:4")[1]
    Stage(epochs=25, k=4, keep_ops=4)
    >>> sorted(drnas.PRESETS)
    ['darts_cifar', 'darts_cifar_kl', 'darts_imagenet', 'nb201', 'nb201_progressive']
"""

from __future__ import annotations

from datanas_core.drnas.partial import (
    PartialChannelMixedOp,
    WidenableFactorizedReduce,
    build_drnas_op,
    channel_shuffle,
    check_partial_channels,
)
from datanas_core.drnas.presets import PRESETS, DrNASPreset, get_preset, preset_names
from datanas_core.drnas.progressive import (
    STAGES_HELP,
    ProgressiveSearcher,
    Stage,
    build_searcher,
    format_stages,
    parse_stages,
    prune_mask,
)
from datanas_core.drnas.spaces import (
    DrNASDartsSpace,
    DrNASDartsSuperNet,
    DrNASNB201Space,
    DrNASNB201SuperNet,
    ProgressiveSupernetMixin,
)
from datanas_core.drnas.widen import ParamChange, carry_optimizer_state, channel_mapping, widen_module

#: Registry names of the DrNAS spaces (registered in ``datanas_core.SPACES`` by importing this package).
SPACE_NAMES: tuple[str, ...] = ("drnas_darts", "drnas_nb201")

__all__ = [
    "PRESETS",
    "SPACE_NAMES",
    "STAGES_HELP",
    "DrNASDartsSpace",
    "DrNASDartsSuperNet",
    "DrNASNB201Space",
    "DrNASNB201SuperNet",
    "DrNASPreset",
    "ParamChange",
    "PartialChannelMixedOp",
    "ProgressiveSearcher",
    "ProgressiveSupernetMixin",
    "Stage",
    "WidenableFactorizedReduce",
    "build_drnas_op",
    "build_searcher",
    "carry_optimizer_state",
    "channel_mapping",
    "channel_shuffle",
    "check_partial_channels",
    "format_stages",
    "get_preset",
    "parse_stages",
    "preset_names",
    "prune_mask",
    "widen_module",
]
