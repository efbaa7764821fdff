from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

import datanas_vision.timm_models as tm  # noqa: E402  (registers the entrypoints)
from datanas_core.errors import ConfigError, GenotypeError  # noqa: E402
from datanas_core.published import load_published, published_names  # noqa: E402
from datanas_vision.models import DartsClassifier, NB201Classifier, resolve_genotype  # noqa: E402

NB201_STR = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _tiny(name: str) -> dict:
    kw: dict = {"C": 4, "N": 1} if "nb201" in name else {"C": 4, "layers": 3}
    if name == "datanas_cifar":
        kw["genotype"] = "darts_v2"
    if name == "datanas_nb201":
        kw["genotype"] = NB201_STR
    return kw


def test_every_bundled_genotype_has_an_entrypoint():
    assert set(published_names()) == {b for b in tm.ENTRYPOINTS.values() if b is not None}
    assert set(tm.ENTRYPOINTS) <= set(timm.list_models("datanas_*"))


@pytest.mark.parametrize("name", list(tm.ENTRYPOINTS))
def test_create_model_every_entrypoint(name):
    model = timm.create_model(name, pretrained=False, num_classes=5, **_tiny(name)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
    assert logits.shape == (2, 5)
    assert pooled.shape == (2, model.num_features)
    assert torch.allclose(model.forward_head(feats), logits)
    assert model.pretrained_cfg["architecture"] == name
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    bundled = tm.ENTRYPOINTS[name]
    if bundled is not None:
        assert model.genotype == load_published(bundled)


@pytest.mark.parametrize("name", ["datanas_darts_v2", "datanas_data_m7", "datanas_nb201_best"])
def test_features_only_shapes_match_feature_info(name):
    kw = _tiny(name)
    feat = timm.create_model(name, features_only=True, **kw).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = feat(x)
    assert [o.shape[1] for o in outs] == feat.feature_info.channels()
    assert [32 // o.shape[-1] for o in outs] == feat.feature_info.reduction() == [1, 2, 4]
    # the chosen maps equal the full model's intermediates at the same indices
    full = timm.create_model(name, **kw).eval()
    with torch.no_grad():
        full.load_state_dict(feat.model.state_dict(), strict=False)
        ref = full.forward_intermediates(x, indices=list(feat.out_indices), intermediates_only=True)
    for a, b in zip(outs, ref, strict=True):
        assert torch.allclose(a, b)


def test_features_only_custom_out_indices_prunes_later_cells():
    feat = timm.create_model("datanas_darts_v2", features_only=True, out_indices=(0, 2), C=4, layers=5)
    assert len(feat.model.cells) == 2  # cells after feature index 2 (cell 1) are gone
    assert not hasattr(feat.model, "auxiliary_head")
    outs = feat(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs] == [(12, 32, 32), (32, 16, 16)]


def test_forward_intermediates_indices_and_stop_early():
    model = timm.create_model("datanas_darts_v2", C=4, layers=4, num_classes=3).eval()
    x = torch.randn(1, 3, 16, 16)
    final, inter = model.forward_intermediates(x)
    assert len(inter) == len(model.feature_info) == 5
    assert torch.allclose(model.forward_head(final), model(x))
    last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [t.shape for t in last2] == [t.shape for t in inter[-2:]]
    early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
    assert torch.allclose(early[0], inter[1])


def test_genotype_roundtrip_through_model_args():
    g = load_published("DATA_M4")
    model = timm.create_model("datanas_cifar", genotype=g, C=4, layers=3, num_classes=7).eval()
    args = model._model_args
    assert args["genotype"] == g.to_dict()  # recorded as JSON, not as the object
    rebuilt = timm.create_model("datanas_cifar", **args).eval()
    assert rebuilt.genotype == g
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), rebuilt(x))


def test_genotype_roundtrip_through_timm_export(tmp_path):
    pytest.importorskip("huggingface_hub")
    g = resolve_genotype(NB201_STR)
    model = timm.create_model("datanas_nb201", genotype=NB201_STR, C=4, N=1, num_classes=4).eval()
    timm.models.save_for_hf(model, tmp_path)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert isinstance(loaded, NB201Classifier) and loaded.genotype == g
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_genotype_forms_resolve_to_the_same_cell(tmp_path):
    g = load_published("DARTS_V2")
    g.save(tmp_path / "genotype.json")
    forms = [g, g.to_dict(), "darts_v2", "DARTS_V2", str(tmp_path / "genotype.json"), tmp_path, g.to_json()]
    assert all(resolve_genotype(f) == g for f in forms)
    with pytest.raises(GenotypeError, match="DARTS_V2"):
        resolve_genotype("darts_v3")


def test_entrypoint_errors():
    with pytest.raises(ConfigError, match="needs genotype"):
        timm.create_model("datanas_cifar", C=4, layers=3)
    with pytest.raises(ConfigError, match="fixed genotype"):
        timm.create_model("datanas_darts_v2", genotype="gdas", C=4, layers=3)
    with pytest.raises(ConfigError, match="'nb201'"):
        timm.create_model("datanas_cifar", genotype=NB201_STR, C=4, layers=3)


def test_auxiliary_head_drop_path_and_in_chans():
    model = timm.create_model(
        "datanas_darts_v2", C=4, layers=3, num_classes=10, in_chans=1, auxiliary=True, drop_path_rate=0.2
    )
    assert isinstance(model, DartsClassifier) and model.drop_path_prob == 0.2
    model.train()
    logits, aux = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    model.eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_reset_classifier_and_drop_rate():
    model = timm.create_model("datanas_gdas", C=4, layers=3, num_classes=10, drop_rate=0.5)
    model.reset_classifier(0)
    model.eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, model.num_features)
    model.reset_classifier(3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_importing_package_alone_does_not_register():
    import subprocess
    import sys

    # timm is not even imported, so nothing can have been registered with it
    code = (
        "import sys, datanas_vision; "
        "assert 'datanas_vision.timm_models' not in sys.modules; "
        "assert 'timm' not in sys.modules, 'timm imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _env() -> dict:
    import os
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env
