"""A variational autoencoder for cells: the continuous, injective architecture space E2NAS searches in.

A genotype of a space is written as one ``[E, K]`` 0/1 code per cell type (the labelled DAG: which op runs on
which edge; for NB201 every edge carries exactly one op, ``none`` included). That code is an injective
description of the cell, so an encoder over it is an injective graph encoder (methods.md §7 uses D-VAE's
asynchronous message passing; this simpler encoder is what the issue allows and is exact on NB201).

- Encoder: MLP over the flattened codes -> ``(mu, logvar)`` of a ``latent_dim`` Gaussian.
- Decoder: MLP from the latent to per-cell-type ``[E, K]`` logits. Rows of spaces with one op per edge are
  categorical (softmax); other rows are independent Bernoulli (multi-hot: DARTS cells).
- :meth:`CellVAE.decode_genotype` turns logits into a *valid* cell by construction: argmax per edge (NB201) or
  the top-``k`` (input, op) pairs per node (DARTS: 2 per node), so every latent decodes to an architecture.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.space.base import SearchSpace

__all__ = ["CellLayout", "CellVAE", "codes_to_genotype", "genotype_to_codes", "layout_of"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellLayout:
    """How one cell type is laid out in the flat code vector."""

    cell_type: str
    num_edges: int
    num_ops: int
    one_op_per_edge: bool
    per_node: int

    @property
    def size(self) -> int:
        return self.num_edges * self.num_ops


def layout_of(space: SearchSpace) -> list[CellLayout]:
    """The VAE layout of a space: NB201-like spaces (``argmax_edge`` default rule) are one op per edge, other
    spaces are multi-hot with 2 (input, op) pairs per node (DARTS)."""
    one = space.default_rule == "argmax_edge"
    return [CellLayout(ct, spec.num_edges, spec.num_ops, one, 2) for ct, spec in space.cells().items()]


def genotype_to_codes(genotype: Genotype, space: SearchSpace) -> dict[str, Tensor]:
    """``[E, K]`` 0/1 code per cell type; for one-op-per-edge layouts absent edges get ``none``."""
    out = {}
    for lay, (ct, spec) in zip(layout_of(space), space.cells().items(), strict=True):
        code = torch.zeros(spec.num_edges, spec.num_ops)
        for e in genotype.cells[ct].edges:
            code[spec.edge_index[(e.src, e.dst)], spec.ops.index(e.op)] = 1.0
        if lay.one_op_per_edge and "none" in spec.ops:
            empty = code.sum(-1) == 0
            code[empty, spec.ops.index("none")] = 1.0
        out[ct] = code
    return out


class CellVAE(nn.Module):
    """MLP variational autoencoder over cell codes.

    Args:
        space_name: name of the space the layout belongs to (checked when loading weights).
        layout: per-cell-type layouts (see :func:`layout_of`).
        latent_dim: size of the latent vector.
        hidden: width of the two hidden layers of encoder and decoder.

    Example:
        >>> from datanas_core.space.nb201 import NB201Space
        >>> space = NB201Space()
        >>> vae = CellVAE.for_space(space, latent_dim=8)
        >>> s = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
        >>> g = space.from_string(s)
        >>> space.validate(vae.decode_genotype(vae.encode_genotypes([g], space)[0], space))
    """

    def __init__(
        self, space_name: str, layout: Sequence[CellLayout], latent_dim: int = 16, hidden: int = 256
    ) -> None:
        super().__init__()
        if latent_dim < 1 or hidden < 1:
            raise ConfigError(f"latent_dim and hidden must be >= 1, got {latent_dim}, {hidden}")
        self.space_name = space_name
        self.layout = list(layout)
        self.latent_dim = latent_dim
        self.hidden = hidden
        n = sum(lay.size for lay in self.layout)
        self.encoder = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n),
        )

    @classmethod
    def for_space(cls, space: SearchSpace, **kwargs: Any) -> CellVAE:
        return cls(space.name, layout_of(space), **kwargs)

    # ------------------------------------------------------------------ codes
    def flatten(self, codes: Mapping[str, Tensor]) -> Tensor:
        """``{cell_type: [..., E, K]}`` -> ``[..., N]``."""
        parts = [codes[lay.cell_type].flatten(-2) for lay in self.layout]
        return torch.cat(parts, dim=-1)

    def split(self, flat: Tensor) -> dict[str, Tensor]:
        """``[..., N]`` -> ``{cell_type: [..., E, K]}``."""
        out, start = {}, 0
        for lay in self.layout:
            chunk = flat[..., start : start + lay.size]
            out[lay.cell_type] = chunk.reshape(*flat.shape[:-1], lay.num_edges, lay.num_ops)
            start += lay.size
        return out

    def encode_genotypes(self, genotypes: Sequence[Genotype], space: SearchSpace) -> Tensor:
        """Deterministic latent codes (the posterior means) of genotypes, ``[B, latent_dim]``."""
        self.check_space(space)
        dev = self.to_mu.weight.device
        x = torch.stack([self.flatten(genotype_to_codes(g, space)) for g in genotypes]).to(dev)
        mu, _ = self.encode(x)
        return mu

    # ------------------------------------------------------------------ networks
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h).clamp(-10, 10)

    def decode_logits(self, z: Tensor) -> dict[str, Tensor]:
        """Per-cell-type ``[..., E, K]`` logits of the decoder (differentiable w.r.t. ``z``)."""
        return self.split(self.decoder(z))

    def probs(self, z: Tensor) -> dict[str, Tensor]:
        """Per-cell-type ``[..., E, K]`` probabilities: softmax rows (one op per edge) or sigmoid entries."""
        logits = self.decode_logits(z)
        return {
            lay.cell_type: (
                logits[lay.cell_type].softmax(-1) if lay.one_op_per_edge else logits[lay.cell_type].sigmoid()
            )
            for lay in self.layout
        }

    def hard_codes(self, probs: Mapping[str, Tensor], space: SearchSpace) -> dict[str, Tensor]:
        """Valid 0/1 codes from decoder probabilities (argmax per edge, or top pairs per node)."""
        out = {}
        for lay, (ct, spec) in zip(self.layout, space.cells().items(), strict=True):
            p = probs[ct]
            if lay.one_op_per_edge:
                out[ct] = F.one_hot(p.argmax(-1), lay.num_ops).to(p.dtype)
                continue
            code = torch.zeros_like(p)
            pn = p.detach().clone()
            if "none" in spec.ops:
                pn[..., spec.ops.index("none")] = -1.0
            for node in spec.nodes:
                rows = spec.in_edges(node)
                flat = pn[rows].flatten()
                k = min(lay.per_node, flat.numel())
                top = torch.topk(flat, k).indices.tolist()
                for t in top:
                    code[rows[t // lay.num_ops], t % lay.num_ops] = 1.0
            out[ct] = code
        return out

    def decode_genotype(self, z: Tensor, space: SearchSpace) -> Genotype:
        """The (always valid) genotype a latent vector decodes to."""
        self.check_space(space)
        with torch.no_grad():
            codes = self.hard_codes(self.probs(z.reshape(-1)), space)
        return codes_to_genotype(codes, space)

    def forward(
        self, x: Tensor, *, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        mu, logvar = self.encode(x)
        if sample:
            eps = torch.randn(mu.shape, generator=generator, device="cpu", dtype=mu.dtype).to(mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decode_logits(z), mu, logvar

    def loss(
        self, x: Tensor, *, kl_weight: float = 5e-3, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction (categorical or Bernoulli per layout) + ``kl_weight`` * KL to N(0, I)."""
        logits, mu, logvar = self(x, generator=generator)
        target = self.split(x)
        rec = x.new_zeros(())
        for lay in self.layout:
            lg, tg = logits[lay.cell_type], target[lay.cell_type]
            if lay.one_op_per_edge:
                rec = rec + F.cross_entropy(
                    lg.reshape(-1, lay.num_ops), tg.reshape(-1, lay.num_ops).argmax(-1), reduction="sum"
                )
            else:
                rec = rec + F.binary_cross_entropy_with_logits(lg, tg, reduction="sum")
        rec = rec / x.shape[0]
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1))
        return rec + kl_weight * kl, {"rec": float(rec.detach()), "kl": float(kl.detach())}

    # ------------------------------------------------------------------ persistence
    def check_space(self, space: SearchSpace) -> None:
        lay = layout_of(space)
        if space.name != self.space_name or [(x.cell_type, x.num_edges, x.num_ops) for x in lay] != [
            (x.cell_type, x.num_edges, x.num_ops) for x in self.layout
        ]:
            raise ConfigError(
                f"this VAE was trained for space {self.space_name!r} with cells "
                f"{[(x.cell_type, x.num_edges, x.num_ops) for x in self.layout]}; "
                f"got space {space.name!r} with "
                f"{[(x.cell_type, x.num_edges, x.num_ops) for x in lay]}. Pretrain one for it with "
                "`python -m datanas_core.e2nas.pretrain --space NAME`."
            )

    def to_bytes(self, meta: Mapping[str, Any] | None = None) -> bytes:
        buf = io.BytesIO()
        torch.save(
            {
                "format": "datanas.e2nas.vae/1",
                "space": self.space_name,
                "layout": [dict(vars(x)) for x in self.layout],
                "latent_dim": self.latent_dim,
                "hidden": self.hidden,
                "state_dict": self.state_dict(),
                "meta": dict(meta or {}),
            },
            buf,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[CellVAE, dict[str, Any]]:
        doc = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if doc.get("format") != "datanas.e2nas.vae/1":
            raise ConfigError(f"not a datanas E2NAS VAE file (format {doc.get('format')!r})")
        vae = cls(doc["space"], [CellLayout(**x) for x in doc["layout"]], doc["latent_dim"], doc["hidden"])
        vae.load_state_dict(doc["state_dict"])
        return vae, dict(doc.get("meta", {}))


def codes_to_genotype(codes: Mapping[str, Tensor], space: SearchSpace) -> Genotype:
    """0/1 ``[E, K]`` codes -> genotype (``none`` entries dropped)."""
    cells = {}
    for ct, spec in space.cells().items():
        code = codes[ct]
        edges = [
            EdgeChoice(spec.edges[r][0], spec.edges[r][1], spec.ops[k])
            for r, k in (torch.nonzero(code > 0.5).tolist())
            if spec.ops[k] != "none"
        ]
        cells[ct] = CellGenotype(tuple(edges), spec.concat)
    return Genotype(space.name, cells)
