"""Cold Brew's published setting: the SE-GCN teacher (gkdfast.nn.SEGCN), the Distiller's model
regularisation hook, the per-seed cold-start masks, the α₀-scaled retrieval of the public code, and the
``coldbrew`` setting of ``--protocol published``."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gkdfast
from gkdfast.data import cold_start_masks, csbm, isolation_split
from gkdfast.distill import Distiller, recipes, terms
from gkdfast.distill.experiment import ModelSpec, seed_split
from gkdfast.distill.protocols import PUBLISHED_METHODS, prepare, published_settings, run_published
from gkdfast.nn import SEGCN, build_model


def _data(n=300, seed=0):
    return csbm(num_nodes=n, num_classes=3, feature_dim=8, seed=seed)


# -- SEGCN -------------------------------------------------------------------------------------------

def test_segcn_adds_its_tables_before_propagation_and_returns_every_layer_as_the_embedding():
    d = _data(60)
    torch.manual_seed(0)
    m = SEGCN(8, 16, 3, num_nodes=60, dropout=0.0, se_layers="first").eval()
    logits, se = m(d.x, d.graph, return_hidden=True)
    # by hand: layer 0 = Â(xW0 + E0) + b0, relu, layer 1 = Â(h W1) + b1
    l0, l1 = m.layers
    h0 = gkdfast.spmm(d.graph, l0.lin(d.x) + m.embeddings["0"], "sum", norm="gcn") + l0.bias
    out = gkdfast.spmm(d.graph, l1.lin(F.relu(h0)), "sum", norm="gcn") + l1.bias
    torch.testing.assert_close(logits, out)
    torch.testing.assert_close(se, torch.cat([h0, out], dim=1))
    assert se.shape == (60, 19)


def test_segcn_multiplies_bag_of_words_features_through_their_sparse_copy():
    d = _data(80)
    x = (torch.rand(80, 300, generator=torch.Generator().manual_seed(0)) < 0.02).float()  # 2 % non-zero
    torch.manual_seed(0)
    m = SEGCN(300, 16, 3, num_nodes=80, dropout=0.5).eval()
    dense = m(x, d.graph)
    torch.testing.assert_close(m(x.to_sparse_csr(), d.graph), dense)
    l0 = m.layers[0]
    want = gkdfast.spmm(d.graph, x @ l0.lin.weight.t() + m.embeddings["0"], "sum", norm="gcn") + l0.bias
    torch.testing.assert_close(m(x, d.graph, return_hidden=True)[1][:, :16], want)
    m.train()
    torch.manual_seed(3)
    a = m(x, d.graph)
    torch.manual_seed(3)
    assert torch.equal(a, m(x, d.graph)) and not torch.allclose(a, dense)  # seeded dropout, dropped entries


@pytest.mark.parametrize("layers,expect", [("first", ["0"]), ("last", ["2"]), ("all", ["0", "1", "2"]),
                                           ("none", []), ([1], ["1"])])
def test_segcn_se_layers_choose_which_layers_hold_a_table(layers, expect):
    m = SEGCN(8, 16, 3, num_layers=3, num_nodes=10, se_layers=layers)
    assert sorted(m.embeddings.keys()) == expect
    widths = {"0": 16, "1": 16, "2": 3}
    assert all(m.embeddings[k].shape == (10, widths[k]) for k in expect)


def test_segcn_regularization_is_se_reg_times_the_sum_of_frobenius_norms():
    m = SEGCN(8, 16, 3, num_layers=2, num_nodes=10, se_layers="all", se_reg=2.5)
    want = 2.5 * (m.embeddings["0"].norm() + m.embeddings["1"].norm())
    torch.testing.assert_close(m.regularization(), want)
    assert SEGCN(8, 16, 3, num_nodes=10, se_reg=0.0).regularization() is None


def test_segcn_bad_arguments_fail_in_one_line():
    with pytest.raises(ValueError, match="num_nodes"):
        SEGCN(8, 16, 3)
    with pytest.raises(ValueError, match="num_nodes"):
        build_model("segcn", 8, 16, 3)
    with pytest.raises(ValueError, match="se_layers"):
        SEGCN(8, 16, 3, num_nodes=5, se_layers="middle")
    with pytest.raises(ValueError, match="out of range"):
        SEGCN(8, 16, 3, num_nodes=5, se_layers=[2])
    with pytest.raises(ValueError, match="se_reg"):
        SEGCN(8, 16, 3, num_nodes=5, se_reg=-1.0)
    d = _data(40)
    with pytest.raises(ValueError, match="transductive"):
        SEGCN(8, 16, 3, num_nodes=41)(d.x, d.graph)


def test_model_spec_gives_the_graph_size_to_models_with_per_node_parameters():
    spec = ModelSpec("segcn", 16, 2, 0.5, (("se_reg", 1.0),))
    m = spec.build(8, 3, num_nodes=25)
    assert isinstance(m, SEGCN) and m.num_nodes == 25 and m.se_reg == 1.0
    assert type(ModelSpec("gcn", 16).build(8, 3, num_nodes=25)).__name__ == "GCN"  # ignored by the others


def test_distiller_adds_the_students_regularization_to_the_loss():
    d = _data(120)

    def fit(se_reg, epochs, lr):
        torch.manual_seed(0)
        m = SEGCN(8, 16, 3, num_nodes=120, se_reg=se_reg)
        start = float(m.embeddings["0"].detach().norm())
        r = Distiller(m, [terms.CrossEntropy(1.0)], lr=lr, epochs=epochs, patience=None).fit(d, select_best=False)
        return start, float(m.embeddings["0"].detach().norm()), r.history

    start, _, hist = fit(50.0, 1, 0.01)
    assert hist[0]["regularization"] == pytest.approx(50.0 * start, rel=1e-5)
    assert hist[0]["loss"] == pytest.approx(hist[0]["ce"] + hist[0]["regularization"], rel=1e-5)
    _, free, hist0 = fit(0.0, 60, 0.05)
    _, shrunk, _ = fit(50.0, 60, 0.05)
    assert "regularization" not in hist0[0]
    assert shrunk < 0.5 * free


# -- cold-start masks ----------------------------------------------------------------------------------

def test_cold_start_masks_validate_on_nodes_with_edges_and_test_on_isolated_ones():
    d = isolation_split(_data(400))
    iso = d.extras["isolated_mask"]
    tr, va, te = cold_start_masks(d, seed=3, num_val=60)
    assert torch.equal(tr, d.train_mask)
    assert int(va.sum()) == 60 and not (va & (iso | tr)).any()
    assert torch.equal(te, iso & ~tr)
    tr2, va2, _ = cold_start_masks(d, seed=3, num_val=60)
    assert torch.equal(va, va2)
    assert not torch.equal(va, cold_start_masks(d, seed=4, num_val=60)[1])
    # not enough candidates: half of them
    small = cold_start_masks(d, seed=0, num_val=10 ** 6)[1]
    assert int(small.sum()) == int((~tr & ~iso).sum()) // 2


def test_cold_start_masks_need_an_isolation_split():
    with pytest.raises(ValueError, match="isolation_split"):
        cold_start_masks(_data(50), seed=0)
    with pytest.raises(ValueError, match="num_val"):
        cold_start_masks(isolation_split(_data(50)), seed=0, num_val=0)


# -- Cold Brew's retrieval -----------------------------------------------------------------------------

def _reference_part2_input(x, q, keys, a0, a1, k):
    """The public code's part-2 input, node by node: top-k of (α₀ q)·keysᵀ, softmax, [x ; α₁ ẽ ; α₀ q]."""
    rows = []
    for i in range(x.size(0)):
        qi = a0 * q[i:i + 1]
        att = qi @ keys.t()
        sel = att.argsort()[0][-k:]
        w = torch.softmax(att[:, sel], dim=1)
        rows.append(torch.cat([x[i:i + 1], a1 * (w @ keys[sel]), qi], dim=1))
    return torch.cat(rows)


@pytest.mark.parametrize("alpha_query", [False, True])
def test_coldbrew_student_input_matches_the_public_codes_formula(alpha_query):
    d = _data(150)
    torch.manual_seed(0)
    teacher = SEGCN(8, 16, 3, num_nodes=150, se_reg=1.0)
    # the published setting: dot products and the α₀-scaled query; the default: cosine, no query
    metric = "dot" if alpha_query else "cosine"
    r = recipes.get("coldbrew", regress_epochs=3, epochs=3, alpha_query=alpha_query, hidden=32, metric=metric)
    trained = r.fit(lambda f: build_model("mlp", f, 16, 3), d, teacher, seed=0)
    model = trained.model.eval()
    head = model.head
    with torch.no_grad():
        head.alpha.fill_(0.7)
        if alpha_query:
            head.alpha_query.fill_(0.3)
        q = model.g(d.x)
        z = head.mix(model.features(d.x))
        if alpha_query:
            want = _reference_part2_input(d.x, q, model.keys, 0.3, 0.7, 3)
        else:  # softmax of the cosine similarities, no query in the classifier's input
            vals = F.normalize(q, dim=1, eps=1e-8) @ F.normalize(model.keys, dim=1, eps=1e-8).t()
            top = vals.topk(3, dim=1)
            w = torch.softmax(top.values, dim=1)
            want = torch.cat([d.x, 0.7 * (w.unsqueeze(-1) * model.keys[top.indices]).sum(1)], dim=1)
        torch.testing.assert_close(z, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(d.x), head.classifier(want), rtol=1e-5, atol=1e-5)
    assert head.classifier_width() == 8 + 19 * (2 if alpha_query else 1)


def test_coldbrew_regresses_the_se_teacher_embedding_on_training_nodes_only():
    d = _data(200)
    torch.manual_seed(0)
    teacher = SEGCN(8, 16, 3, num_nodes=200)
    r = recipes.get("coldbrew", regress_epochs=40, epochs=2, regress_nodes="train", hidden=32, regress_lr=0.01)
    model = r.fit(lambda f: build_model("mlp", f, 16, 3), d, teacher, seed=0).model.eval()
    with torch.no_grad():
        se = teacher.eval()(d.x, d.graph, return_hidden=True)[1]
        err = (model.g(d.x) - se).pow(2).mean(1)
    tr = d.train_mask
    assert float(err[tr].mean()) < float(err[~tr].mean())


def test_coldbrew_bad_options_fail_before_training():
    d = _data(60)
    teacher = SEGCN(8, 16, 3, num_nodes=60)
    with pytest.raises(ValueError, match="topk"):
        recipes.get("coldbrew", topk=0).fit(lambda f: build_model("mlp", f, 8, 3), d, teacher)
    with pytest.raises(ValueError, match="exceeds"):
        recipes.get("coldbrew", topk=61).fit(lambda f: build_model("mlp", f, 8, 3), d, teacher)
    with pytest.raises(ValueError, match="metric"):
        recipes.get("coldbrew", metric="l2").fit(lambda f: build_model("mlp", f, 8, 3), d, teacher)
    with pytest.raises(ValueError, match="g_dropout"):
        recipes.get("coldbrew", g_dropout=1.0).fit(lambda f: build_model("mlp", f, 8, 3), d, teacher)


# -- the published setting -----------------------------------------------------------------------------

def test_coldbrew_has_a_published_setting_with_the_public_codes_hyperparameters():
    assert "coldbrew" in PUBLISHED_METHODS
    cora, = published_settings("cora", ["coldbrew"])
    assert cora.key == "coldbrew" and cora.split == "isolation" and cora.train_first == 600 and cora.row_normalize
    assert cora.teacher.name == "segcn" and dict(cora.teacher.options)["se_reg"] == 32.0
    assert cora.teacher.hidden == 64 and cora.teacher.dropout == 0.6
    assert cora.students[0].label == "MLP(256)" and cora.overrides["coldbrew"]["alpha_query"] is True
    assert cora.overrides["coldbrew"]["regress_nodes"] == "train"
    cite, = published_settings("citeseer", ["coldbrew"])
    assert cite.train_first is None and dict(cite.teacher.options)["se_reg"] == 0.5 and cite.teacher.hidden == 256
    assert cite.describe()["split"] == "isolation"


def test_prepare_cuts_the_tail_and_each_seed_tests_on_isolated_nodes():
    data = _data(400)
    s = published_settings("cora", ["coldbrew"])[0]
    d = prepare(data, s)
    assert torch.equal(d.train_mask, torch.arange(400) < 600)  # every node of a 400-node graph
    s = s.__class__(**{**s.__dict__, "train_first": 100})
    d = prepare(data, s)
    assert torch.equal(d.train_mask, torch.arange(400) < 100)
    iso = d.extras["isolated_mask"]
    assert int(d.graph.in_degree()[iso].max()) <= 1  # self-loops only, if any
    a, b = seed_split(d, 0), seed_split(d, 1)
    assert torch.equal(a.test_mask, iso & (torch.arange(400) >= 100))
    assert not (a.val_mask & iso).any() and not torch.equal(a.val_mask, b.val_mask)


def test_run_published_coldbrew_rows_on_a_small_graph():
    data = _data(300)
    res = run_published(data, methods=["coldbrew"], epochs=3)
    rows = [(r["method"], r["model"]) for r in res["rows"]]
    assert rows == [("teacher", "SEGCN(64)"), ("none", "MLP(256)"), ("coldbrew", "MLP(256)")]
    setting, = res["protocol"]["settings"]
    assert setting["key"] == "coldbrew" and setting["split"] == "isolation"
    assert all(0.0 <= r["test_acc_mean"] <= 1.0 for r in res["rows"])


def test_retrieval_heads_fingerprint_covers_alpha_init():
    """helper 118: a resume with another `alpha_init` went on silently (the parameters' starting value was
    in no setting the checkpoint fingerprint reads; their values are overwritten on resume)."""
    import hashlib

    from gkdfast.distill.checkpoint_file import hash_module_settings
    from gkdfast.distill.recipes.coldbrew import _RetrievalHead

    def digest(alpha_init):
        h = hashlib.sha256()
        hash_module_settings(h, _RetrievalHead(torch.nn.Linear(11, 3), 8, 3, 2, alpha_init))
        return h.hexdigest()

    assert digest(1e-4) == digest(1e-4)
    assert digest(1e-4) != digest(0.5)
