"""SAIL's modules as its paper describes them (``inter="fade"``, ``intra="features"``): the loss
against a dense reference, the parameter fading, that each option changes what the encoder learns,
and one clear error per bad setting."""

import pytest
import torch
import torch.nn.functional as F

from gkdfast.distill import recipes
from gkdfast.distill.recipes import sail as sail_mod
from gkdfast.distill.recipes.sail import faded_parameters, feature_uniformity
from gkdfast.nn import GCN


def _dense_reference(h, x, tau):
    """(1/N) Σ_i KL(softmax_j(cos(x_i, x_j)/τ) ‖ softmax_j(cos(h_i, h_j)/τ)), float64, all pairs."""
    h, x = F.normalize(h.double(), dim=1), F.normalize(x.double(), dim=1)
    p = torch.softmax(x @ x.t() / tau, dim=1)
    log_q = torch.log_softmax(h @ h.t() / tau, dim=1)
    return float((p * (p.log() - log_q)).sum(1).mean())


def test_feature_uniformity_equals_the_dense_kl_and_vanishes_when_the_similarities_agree(small_cora):
    torch.manual_seed(0)
    x = small_cora.x[:120]
    h = torch.randn(120, 16, requires_grad=True)
    for tau in (0.25, 1.0):
        got = feature_uniformity(h, x, tau=tau, samples=None)
        assert float(got.detach()) == pytest.approx(_dense_reference(h.detach(), x, tau), rel=1e-4, abs=1e-6)
    # the engine's all-pairs loss (fused, O(N·d) memory) gives the same value
    from gkdfast.losses import gsp

    engine = gsp(h.detach(), x, kernel="cosine", loss="kl", tau=0.25)
    assert float(engine) == pytest.approx(float(feature_uniformity(h.detach(), x, samples=None)), rel=1e-4)
    feature_uniformity(h, x, samples=None).backward()
    assert h.grad is not None and float(h.grad.abs().sum()) > 0
    assert float(feature_uniformity(F.normalize(x, dim=1), x, samples=None)) == pytest.approx(0.0, abs=1e-5)
    # a sample: the loss of the sampled rows, drawn from the global RNG (which the Distiller checkpoints)
    torch.manual_seed(3)
    sampled = feature_uniformity(h, x, samples=40)
    torch.manual_seed(3)
    pick = torch.randperm(120)[:40]
    expected = _dense_reference(h.detach()[pick], x[pick], 0.25)
    assert float(sampled.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_faded_parameters_mix_each_tensor_with_noise_of_its_own_scale():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    kept = faded_parameters(lin, 1.0)
    assert all(torch.equal(kept[n], p) for n, p in lin.named_parameters())
    torch.manual_seed(1)
    faded = faded_parameters(lin, 0.9)
    torch.manual_seed(1)
    noise = torch.randn_like(lin.weight)
    expected = 0.9 * lin.weight + 0.1 * lin.weight.detach().std(unbiased=False) * noise
    torch.testing.assert_close(faded["weight"], expected)
    faded["weight"].sum().backward()  # differentiable in θ, with gradient w
    torch.testing.assert_close(lin.weight.grad, torch.full_like(lin.weight, 0.9))


def _similarity_gap(encoder, data):
    with torch.no_grad():
        h = encoder.eval()(data.x, data.graph, return_hidden=True)[1]
    return float(feature_uniformity(h, data.x, samples=None))


def test_the_features_intra_term_pulls_the_embeddings_similarities_towards_the_features(small_cora):
    gaps = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        t = recipes.get("sail", epochs=15, intra="features", intra_weight=weight, baseline=False,
                        probe_epochs=5).fit(lambda f: GCN(f, 32, 7), small_cora, seed=0)
        gaps[weight] = _similarity_gap(t.model.encoder, small_cora)
    assert gaps[1.0] < gaps[0.0], gaps


@pytest.mark.parametrize("inter, views, fades", [("views", 3, 0), ("fade", 0, 3), ("both", 3, 3)])
def test_inter_runs_the_views_the_faded_encoder_or_both(inter, views, fades, small_cora, monkeypatch):
    calls = {"augment": 0, "fade": 0}
    real_augment, real_fade = sail_mod.augment, sail_mod.faded_parameters

    def augment(*a, **kw):
        calls["augment"] += 1
        return real_augment(*a, **kw)

    def fade(*a, **kw):
        calls["fade"] += 1
        return real_fade(*a, **kw)

    monkeypatch.setattr(sail_mod, "augment", augment)
    monkeypatch.setattr(sail_mod, "faded_parameters", fade)
    torch.manual_seed(0)
    recipes.get("sail", epochs=3, probe_epochs=2, baseline=False, inter=inter, intra_weight=0.0).fit(
        lambda f: GCN(f, 16, 7), small_cora, seed=0)
    assert calls == {"augment": views, "fade": fades}


def test_a_fade_that_keeps_everything_is_the_encoder_itself(small_cora):
    torch.manual_seed(0)
    enc = GCN(small_cora.num_features, 16, 7).eval()
    term = sail_mod.SailTerm(1.0, 0.4, 8, (0.1, 0.1, 0.1, 0.1), inter="fade", fade_keep=1.0).bind(enc)
    plain = enc(small_cora.x, small_cora.graph, return_hidden=True)[1]
    torch.testing.assert_close(term.faded_embed(small_cora.x, small_cora.graph), plain)
    faded = sail_mod.SailTerm(1.0, 0.4, 8, (0.1,) * 4, inter="fade", fade_keep=0.5).bind(enc)
    assert not torch.allclose(faded.faded_embed(small_cora.x, small_cora.graph), plain)


@pytest.mark.parametrize("key, value", [("intra", "edges"), ("inter", "mixed"), ("fade_keep", 0.0),
                                        ("fade_keep", 1.5), ("intra_tau", 0.0), ("intra_samples", 1),
                                        ("intra_samples", 2.5)])
def test_a_bad_sail_setting_is_one_clear_error(key, value, small_cora):
    with pytest.raises(ValueError, match=key):
        recipes.get("sail", **{key: value}).fit(lambda f: GCN(f, 8, 7), small_cora)
