"""Choice modules for searching your own model: :class:`LayerChoice`, :class:`InputChoice` (and
:meth:`LayerChoice.from_values` for value choices such as kernel sizes or widths).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from datanas_core.nn import LayerChoice
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),
    ...                     LayerChoice([nn.Conv2d(8, 8, 3, padding=1), nn.Identity()], label="block"))
    >>> tuple(net(torch.randn(1, 3, 8, 8)).shape)      # outside a search: the first candidate
    (1, 8, 8, 8)

Search it with :func:`datanas_core.search` (or build a :class:`~datanas_core.space.model.ModelSpace` for the
engine's pieces), turn a genotype into a plain model with :func:`datanas_core.fix`.
"""

from __future__ import annotations

from datanas_core.nn.choices import ChoiceModule, ChosenInputs, InputChoice, LayerChoice

__all__ = ["ChoiceModule", "ChosenInputs", "InputChoice", "LayerChoice"]
