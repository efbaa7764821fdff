"""E2NAS: cell VAE round trip, valid decodes, gradients through the decoder, live novelty/complementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import datanas_core as dc
from datanas_core.e2nas import (
    CellVAE,
    Complementation,
    Novelty,
    all_nb201_genotypes,
    bundled_vae,
    e2nas_searcher,
    exploration_weight,
    genotype_to_codes,
    pretrain_vae,
    random_darts_genotypes,
)
from datanas_core.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def nb201() -> dc.NB201Space:
    return dc.NB201Space()


class _Task:
    def loss(self, model, batch, arch):  # noqa: ANN001, ANN201
        x, y = batch
        return F.cross_entropy(model(x, arch), y)


def _data(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 3, (2,), generator=g)) for _ in range(n)]


def test_pretraining_reconstructs_held_out_nb201_cells(nb201: dc.NB201Space) -> None:
    result = pretrain_vae(nb201, epochs=4, seed=1)
    assert result.metrics["n_test"] > 1500
    assert result.metrics["exact_reconstruction"] >= 0.99
    assert result.metrics["validity"] == 1.0


def test_bundled_weights_round_trip_every_cell(nb201: dc.NB201Space) -> None:
    vae = bundled_vae("nb201")
    cells = all_nb201_genotypes(nb201)
    assert len(cells) == 15625 and len(set(cells)) == 15625
    x = torch.stack([vae.flatten(genotype_to_codes(g, nb201)) for g in cells])
    with torch.no_grad():
        mu, _ = vae.encode(x)
        rec = vae.flatten(vae.hard_codes(vae.probs(mu), nb201))
    assert (rec == x).all(-1).float().mean().item() >= 0.99


def test_decoded_cells_are_always_valid(nb201: dc.NB201Space) -> None:
    vae = bundled_vae("nb201")
    g = torch.Generator().manual_seed(0)
    for z in 5 * torch.randn(50, vae.latent_dim, generator=g):
        nb201.validate(vae.decode_genotype(z, nb201))
    darts = dc.get_space("darts")
    dvae = CellVAE.for_space(darts, latent_dim=4, hidden=16)
    for z in torch.randn(10, 4, generator=g):
        darts.validate(dvae.decode_genotype(z, darts))
    for cell in random_darts_genotypes(darts, 5):
        darts.validate(cell)


def test_vae_bytes_round_trip_and_space_check(nb201: dc.NB201Space) -> None:
    vae = CellVAE.for_space(nb201, latent_dim=3, hidden=8)
    again, meta = CellVAE.from_bytes(vae.to_bytes({"note": "x"}))
    assert meta == {"note": "x"}
    for a, b in zip(vae.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="trained for space 'nb201'"):
        vae.check_space(dc.get_space("darts"))
    with pytest.raises(UnknownNameError, match="no bundled E2NAS VAE for space 'darts'"):
        bundled_vae("darts")


def test_gradients_reach_the_latent_through_the_decoder(nb201: dc.NB201Space) -> None:
    dist = dc.ArchitectureDistribution(nb201, {"type": "e2nas"}, seed=0)
    net = nb201.build_supernet(C=4, N=1, num_classes=3)
    arch = dist.sample()
    cs = arch["cell"]
    assert cs.grad_proxy and int(cs.mask.sum()) == 6  # one op per edge runs
    x, y = _data(1)[0]
    F.cross_entropy(net(x, arch), y).backward()
    z = dist.extra["z"]
    assert z.grad is not None and z.grad.abs().sum() > 0
    # the decoder is frozen: it is not an architecture parameter
    assert all(not p.requires_grad for p in dist.estimator.vae.parameters())
    g = dc.derive(dist, nb201)
    assert g == bundled_vae("nb201").decode_genotype(z.detach(), nb201)


def test_novelty_term_changes_the_latent_gradient(nb201: dc.NB201Space) -> None:
    dist = dc.ArchitectureDistribution(nb201, {"type": "e2nas"}, seed=0)
    dist.set_epoch(0, 10)
    nov = Novelty(weight=1.0, min_archive=1)
    z = dist.extra["z"]
    first = nov(dist)
    assert float(first.detach()) == 0.0 and len(nov.archive) == 1
    with torch.no_grad():
        z.add_(0.3)
    value = nov(dist) * nov.weight
    (grad,) = torch.autograd.grad(value, z)
    assert grad.abs().sum() > 0  # the official code's NumPy novelty would give no gradient
    assert nov.weight == pytest.approx(exploration_weight(0, 10))
    assert exploration_weight(0, 10) > 0.99 and exploration_weight(10, 10) < 0.01


def test_complementation_gradient_differs_from_current_only(nb201: dc.NB201Space) -> None:
    data = _data(3)
    cfg = dc.SearchConfig(
        epochs=2,
        estimator="e2nas",
        estimator_options={},
        regularizers=(),
        rule="argmax_edge",
        step_order="weight_first",
    )
    s_comp = e2nas_searcher(nb201, _Task(), cfg, supernet_kwargs={"C": 4, "N": 1, "num_classes": 3}, lam=0.5)
    s_plain = e2nas_searcher(nb201, _Task(), cfg, supernet_kwargs={"C": 4, "N": 1, "num_classes": 3}, lam=0.0)
    comp: Complementation = s_comp.weight_loss  # type: ignore[assignment]
    # same previous architecture for both, then compare the weight gradients of one weight loss
    for s in (s_comp, s_plain):
        s.weight_loss(s, data[0])
    grads = []
    for s in (s_comp, s_plain):
        s.supernet.zero_grad()
        loss, logs = s.weight_loss(s, data[1])
        loss.backward()
        grads.append(
            torch.cat(
                [
                    torch.zeros_like(p).flatten() if p.grad is None else p.grad.flatten()
                    for p in s.supernet.parameters()
                ]
            )
        )
    assert "loss_complementary" in logs or comp.previous is not None
    assert not torch.allclose(grads[0], grads[1])
    # the complementary architecture changes every unchanged edge
    cur = {"cell": F.one_hot(torch.tensor([0, 1, 2, 3, 4, 0]), 5).float()}
    prev = {"cell": F.one_hot(torch.tensor([0, 1, 2, 0, 0, 0]), 5).float()}
    c = comp.complementary(cur, prev)["cell"]
    same = [0, 1, 2, 5]
    assert all(int(c[r].argmax()) != int(cur["cell"][r].argmax()) for r in same)
    assert torch.equal(c[3:5], cur["cell"][3:5]) and torch.equal(c.sum(-1), torch.ones(6))


def test_nb201_e2nas_search_end_to_end(nb201: dc.NB201Space) -> None:
    data = _data(4)
    cfg = dc.SearchConfig(
        epochs=2,
        estimator="e2nas",
        estimator_options={},
        regularizers=(),
        rule="argmax_edge",
        step_order="weight_first",
    )
    s = e2nas_searcher(nb201, _Task(), cfg, supernet_kwargs={"C": 4, "N": 1, "num_classes": 3})
    z0 = s.distribution.extra["z"].detach().clone()
    result = s.fit(data[:2], data[2:])
    nb201.validate(result.genotype)
    assert not torch.equal(z0, s.distribution.extra["z"].detach())
    state = s.state_dict()
    assert state["weight_loss"]["previous"] is not None and state["regularizers"][0]["archive"]
    s2 = e2nas_searcher(nb201, _Task(), cfg, supernet_kwargs={"C": 4, "N": 1, "num_classes": 3})
    s2.load_state_dict(state)
    assert len(s2.regularizers[0].archive) == len(s.regularizers[0].archive)
