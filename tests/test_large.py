"""The out-of-core pipeline (gkdfast.distill.large) on small graphs: stages, memory checks, results."""
import json
import os

import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill import large, memory
from gkdfast.distill.experiment import seed_split
from gkdfast.distill.large import distill_large, format_stages
from gkdfast.distill.memory import InsufficientMemory, check_memory
from gkdfast.distill.results import save_json, validate
from gkdfast.nn import SAGE


def _data():
    return csbm(num_nodes=800, num_classes=4, feature_dim=16, seed=0)


def _trained_teacher(data):
    """A quickly trained full-batch teacher (stage 1 is the sampler's job; here it is given)."""
    torch.manual_seed(0)
    t = SAGE(data.num_features, 32, data.num_classes)
    opt = torch.optim.Adam(t.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(t(data.x, data.graph)[data.train_mask], data.y[data.train_mask]).backward()
        opt.step()
    return t.eval()


def test_stages_inference_students_evaluation(tmp_path):
    data = _data()
    teacher = _trained_teacher(data)
    lines = []
    res = distill_large(data, teacher=teacher, hidden=32, batch_size=100, chunk_rows=97, student_epochs=3,
                        student_min_steps=0, out_dir=str(tmp_path), progress=False, overrides={"lamb": 0.5},
                        log=lines.append)
    assert [s["stage"] for s in res["stages"]] == ["inference", "student", "baseline", "evaluate"]
    for s in res["stages"]:
        assert s["seconds"] > 0 and s["peak_rss_bytes"] > 0 and s["throughput"] > 0 and s["estimate_bytes"] > 0
    assert [(r["method"], r["model"]) for r in res["rows"]] == [("teacher", "SAGE(32)"), ("none", "MLP(32)"),
                                                                ("glnn", "MLP(32)")]
    # The teacher row is the full-graph teacher's accuracy (layer-wise inference is exact).
    with torch.no_grad():
        full = teacher(data.x, data.graph).argmax(-1)
    expected = float((full[data.test_mask] == data.y[data.test_mask]).float().mean())
    assert res["rows"][0]["test_acc_mean"] == pytest.approx(expected)
    assert res["rows"][0]["test_acc_mean"] > 0.5  # a working teacher on a homophilous graph
    student = res["stages"][1]
    assert student["epochs"] == 3 and 0.0 <= student["best_val_acc"] <= 1.0
    save_json(res, str(tmp_path / "results.json"))  # the schema accepts the stages table
    validate(json.loads((tmp_path / "results.json").read_text()))
    assert len([x for x in lines if x.startswith("stage")]) == 4
    table = format_stages(res["stages"], markdown=True)
    assert table.count("\n") == 5 and "| inference |" in table
    # The teacher outputs are in the cache, memory-mapped; a rerun reads them and resumes the students.
    assert os.listdir(tmp_path / "cache" / "teachers")
    again = distill_large(data, teacher=teacher, hidden=32, batch_size=100, chunk_rows=97, student_epochs=3,
                          student_min_steps=0, out_dir=str(tmp_path), progress=False, overrides={"lamb": 0.5})
    assert again["stages"][0]["cached"] is True
    assert [r["test_acc"] for r in again["rows"]] == [r["test_acc"] for r in res["rows"]]


def test_representation_recipes_run_on_the_mapped_teacher_hidden_rows(tmp_path, monkeypatch):
    """GSP, G-CRD and KD + G-CRD beside GLNN in one run: one student stage each (same initial weights,
    same cached teacher), their pair terms fed the batch's rows of the mapped teacher hidden matrix."""
    from gkdfast.distill import terms

    data = _data()
    teacher = _trained_teacher(data)
    seen = {}
    for cls in (terms.GSP, terms.CRD):
        real = cls.forward

        def spy(self, ctx, _real=real, _name=cls.__name__):
            seen.setdefault(_name, []).append((ctx.hidden.shape[0], tuple(ctx.teacher_hidden.shape)))
            return _real(self, ctx)

        monkeypatch.setattr(cls, "forward", spy)
    res = distill_large(data, teacher=teacher, hidden=32, batch_size=200, chunk_rows=97, student_epochs=2,
                        student_min_steps=0, method=["glnn", "gsp", "gcrd", "kd_gcrd"],
                        overrides={"glnn.lamb": 0.5, "gsp.batching": "partition", "gcrd.batching": "partition"},
                        out_dir=str(tmp_path), progress=False)
    assert [s["stage"] for s in res["stages"]] == ["inference", "student:glnn", "student:gsp", "student:gcrd",
                                                   "student:kd_gcrd", "baseline", "evaluate"]
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "glnn", "gsp", "gcrd", "kd_gcrd"]
    assert all(0.0 <= r["test_acc_mean"] <= 1.0 for r in res["rows"])
    # every batch of 200 rows (800 nodes, 2 epochs: 8 steps per recipe) met its teacher rows, 32 wide
    assert seen["GSP"] == [(200, (200, 32))] * 8 and seen["CRD"] == [(200, (200, 32))] * 16
    est = {s["stage"]: s["estimate_bytes"] for s in res["stages"]}
    assert est["student:gsp"] > est["student:glnn"]  # the mapped hidden matrix and the heads are planned for
    with pytest.raises(ValueError, match="names no method"):
        distill_large(data, teacher=teacher, method=["glnn", "gsp"], overrides={"lamb": 0.5}, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not among the methods"):
        distill_large(data, teacher=teacher, method="glnn", overrides={"gsp.beta": 1.0}, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not supported at scale"):
        distill_large(data, teacher=teacher, method=["glnn", "glnn"], out_dir=str(tmp_path))


def test_student_schedule_counts_steps():
    """Floors in steps, GSP/G-CRD's labelled_first batches while the labels fill half a batch at most, and
    a method's own settings kept as given."""
    sched = large.student_schedule
    kw = dict(num_pool=2_450_000, batch_size=4096, epochs=20, patience=5, min_steps=600, min_patience_steps=100)
    # 235 labels: the baseline's epoch is one step, so 600 epochs of patience 100
    assert sched("none", {}, num_train=235, **kw) == {"batching": "partition", "batch_edges": "induced",
                                                      "steps_per_epoch": 1, "epochs": 600, "patience": 100}
    # GLNN's epoch is 599 steps: the pipeline's 20 epochs and patience 5 stand
    assert sched("glnn", {}, num_train=235, **kw) == {"batching": "partition", "batch_edges": "induced",
                                                      "steps_per_epoch": 599, "epochs": 20, "patience": 5}
    lsp = sched("lsp", {}, num_train=235, **kw)
    assert (lsp["batching"], lsp["batch_edges"]) == ("labelled_first", "neighbours")
    assert sched("lsp", {"batch_edges": "induced"}, num_train=235, **kw)["batch_edges"] == "induced"
    assert sched("gcrd", {}, num_train=235, **kw)["batching"] == "labelled_first"
    assert sched("kd_gcrd", {}, num_train=235, **kw)["batching"] == "partition"  # soft labels on every node
    # labels filling more than half a batch: partition batches carry labelled rows anyway
    many = sched("gsp", {}, num_train=196_615, **kw)
    assert many["batching"] == "partition" and many["steps_per_epoch"] == 599
    assert sched("glnn", {}, num_train=235, passes="separate", **kw)["steps_per_epoch"] == 1 + 598
    # separate passes have a label pass of their own: they keep partition batches
    assert sched("gsp", {}, num_train=235, passes="separate", **kw)["batching"] == "partition"
    mine = sched("gsp", {"batching": "partition", "epochs": 3, "patience": 7}, num_train=235, **kw)
    assert (mine["batching"], mine["epochs"], mine["patience"]) == ("partition", 3, 7)
    assert sched("none", {}, num_train=235, **{**kw, "patience": None})["patience"] is None


def test_patience_has_a_ceiling_in_steps():
    """At 10^7 nodes an epoch is 2,442 steps: the 3,000-step ceiling leaves 2 epochs of patience, not 5;
    at 2.45·10^6 (599 steps) 5 epochs are 2,995 steps and stand; the floor still wins on tiny epochs."""
    sched = large.student_schedule
    kw = dict(num_train=235, batch_size=4096, epochs=20, patience=5, min_steps=600, min_patience_steps=100,
              max_patience_steps=3000)
    assert sched("glnn", {}, num_pool=10**7, **kw)["patience"] == 2
    assert sched("glnn", {}, num_pool=2_450_000, **kw)["patience"] == 5
    assert sched("glnn", {}, num_pool=10**9, **kw)["patience"] == 1  # never below one epoch
    assert sched("none", {}, num_pool=10**7, **kw)["patience"] == 100  # one-step epochs: the floor
    assert sched("glnn", {}, num_pool=10**7, **{**kw, "max_patience_steps": None})["patience"] == 5
    assert sched("glnn", {"patience": 9}, num_pool=10**7, **kw)["patience"] == 9  # a method's own setting
    assert sched("glnn", {}, num_pool=10**7, **{**kw, "patience": None})["patience"] is None
    # the floor wins where the two meet: 5,000 steps need 3 epochs of 2,442
    assert sched("glnn", {}, num_pool=10**7, **{**kw, "min_patience_steps": 5000})["patience"] == 3
    assert sched("gsp", {}, num_pool=10**7, **{**kw, "max_patience_steps": 50})["patience"] == 100  # labelled_first
    assert sched("gsp", {}, num_pool=10**7, **{**kw, "max_patience_steps": 50, "min_patience_steps": 0})[
        "patience"] == 5
    sep = sched("glnn", {}, num_pool=10**7, passes="separate", **kw)  # 1 label step + 2,441 pool steps
    assert (sep["steps_per_epoch"], sep["patience"]) == (2442, 2)


def test_few_labels_train_by_steps_and_gsp_on_batches_that_carry_them(tmp_path, monkeypatch):
    """80 labelled nodes among 800, batches of 200: GSP's batches start with every training node (one
    step per epoch), the label-only baseline (one step per epoch too) is raised to the step floor."""
    from gkdfast.distill import terms

    data = _data()
    teacher = _trained_teacher(data)
    train = set(data.train_mask.nonzero().flatten().tolist())
    firsts = []
    real = terms.GSP.forward

    def spy(self, ctx):
        firsts.append((set(ctx.nodes[:80].tolist()) == train, int(ctx.labelled.sum()), ctx.nodes.numel()))
        return real(self, ctx)

    monkeypatch.setattr(terms.GSP, "forward", spy)
    res = distill_large(data, teacher=teacher, hidden=32, batch_size=200, chunk_rows=97, student_epochs=2,
                        patience=None, student_min_steps=12, min_patience_steps=0, method=["gsp", "glnn"],
                        overrides={"glnn.patience": 1}, out_dir=str(tmp_path), progress=False)
    st = {s["stage"]: s for s in res["stages"]}
    assert (st["student:gsp"]["batching"], st["student:gsp"]["epochs"], st["student:gsp"]["steps"]) == \
        ("labelled_first", 12, 12)
    assert firsts == [(True, 80, 200)] * 12
    assert (st["baseline"]["batching"], st["baseline"]["epochs"], st["baseline"]["steps"]) == ("partition", 12, 12)
    # GLNN: 4 steps per epoch, so 3 epochs reach the floor of 12 steps; its own patience of 1 is kept
    assert st["student:glnn"]["batching"] == "partition" and st["student:glnn"]["steps"] == \
        4 * st["student:glnn"]["epochs"] <= 12
    with pytest.raises(ValueError, match="student_min_steps must be an int >= 0"):
        distill_large(data, teacher=teacher, student_min_steps=-1, out_dir=str(tmp_path))
    for bad in (0, True, 2.5, "3000"):
        with pytest.raises(ValueError, match="max_patience_steps must be None or a positive int"):
            distill_large(data, teacher=teacher, max_patience_steps=bad, out_dir=str(tmp_path))


def test_nosmog_trains_on_features_joined_to_streaming_positions(tmp_path, monkeypatch):
    """NOSMOG in the pipeline: a positions stage writes [x ; DeepWalk] once (a rerun maps it), the
    NOSMOG student reads that matrix for training and evaluation, GLNN beside it reads x alone."""
    from gkdfast.distill import distiller as _distiller
    from gkdfast.distill import large_positions

    data = _data()
    teacher = _trained_teacher(data)
    widths = {}
    real_fit = _distiller.Distiller.fit

    def spy(self, d, inputs=None, **kw):
        x = d.x if inputs is None else inputs
        widths[self.desc] = (x.shape, bool(torch.equal(x[:, :16], d.x)), x[:, 16:].clone())
        return real_fit(self, d, inputs=inputs, **kw)

    monkeypatch.setattr(_distiller.Distiller, "fit", spy)
    walks = {"nosmog.pos_dim": 8, "nosmog.walks_per_node": 2, "nosmog.walk_length": 8, "nosmog.adv_steps": 1}
    lines = []
    kw = dict(teacher=teacher, hidden=32, batch_size=200, chunk_rows=97, student_epochs=1, student_min_steps=0,
              method=["glnn", "nosmog"], overrides=walks, out_dir=str(tmp_path), progress=False, log=lines.append)
    res = distill_large(data, **kw)
    assert [s["stage"] for s in res["stages"]] == ["inference", "positions", "student:glnn", "student:nosmog",
                                                   "baseline", "evaluate"]
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "glnn", "nosmog"]
    shape, x_first, positions = widths["student:nosmog: nosmog -> MLP"]
    assert shape == (800, 24) and x_first and torch.isfinite(positions).all() and float(positions.std()) > 0.01
    assert widths["student:glnn: glnn -> MLP"][0] == (800, 16)
    pos = res["stages"][1]
    assert pos["throughput_unit"] == "walks/s" and (pos["dim"], pos["walks_per_node"], pos["lr"]) == (8, 2, 0.1)
    assert pos["cached"] is False
    assert any(line.startswith("positions: DeepWalk 8 x 2") for line in lines)
    # a rerun maps the file instead of training DeepWalk again
    calls = []
    monkeypatch.setattr("gkdfast.distill.positional.streaming_deepwalk", lambda *a, **k: calls.append(a))
    lines.clear()
    again = distill_large(data, **kw)
    assert not calls and not any(line.startswith("positions:") for line in lines)
    assert again["stages"][1]["cached"] is True
    assert torch.equal(widths["student:nosmog: nosmog -> MLP"][2], positions)
    assert again["rows"][3]["test_acc_mean"] == res["rows"][3]["test_acc_mean"]
    assert large_positions.estimate_positions(800, 16, 8, 2)["DeepWalk matrices"] == 2 * 800 * 8 * 4
    with pytest.raises(ValueError, match="graph-free"):
        distill_large(data, teacher=teacher, student="sage", method="nosmog", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="streaming DeepWalk"):
        distill_large(data, teacher=teacher, method="nosmog", overrides={"pos_method": "svd"}, out_dir=str(tmp_path))


def _spy_lsp_steps(monkeypatch) -> list:
    """Records each LSP step: (neighbourhood batch?, centres, rows, edges into non-centre rows, labelled
    rows, student hidden width, teacher hidden width)."""
    from gkdfast.distill import terms

    steps, real = [], terms.LSP.forward

    def spy(self, ctx):
        b = int(ctx.observed.sum())
        steps.append((ctx.neighbourhood, b, ctx.nodes.numel(), int(ctx.graph.in_degree()[b:].sum()),
                      int(ctx.labelled.sum()), ctx.hidden.shape[1], ctx.teacher_hidden.shape[1]))
        return real(self, ctx)

    monkeypatch.setattr(terms.LSP, "forward", spy)
    return steps


@pytest.mark.parametrize("student", ["mlp", "sage"])
def test_lsp_trains_on_neighbourhood_batches(tmp_path, monkeypatch, student):
    """LSP in the pipeline, into an MLP or a SAGE student: each step's rows are 200 centres
    (labelled_first: the 80 training nodes first) followed by their in-neighbours (for the SAGE, as
    further seeds of its sampled batch); the term sees the centres' in-edges only, the labels on the
    centres only; the estimates plan for the grown batch."""
    from gkdfast.distill import large_gnn

    data = _data()
    teacher = _trained_teacher(data)
    steps = _spy_lsp_steps(monkeypatch)
    res = distill_large(data, teacher=teacher, hidden=32, student=student, student_hidden=16, fanouts=(5, 5),
                        batch_size=200, chunk_rows=97, student_epochs=1, student_min_steps=5, min_patience_steps=0,
                        method="lsp", out_dir=str(tmp_path), progress=False)
    st = res["stages"][1]
    assert (st["stage"], st["batching"], st["batch_edges"], st["steps"]) == ("student", "labelled_first",
                                                                               "neighbours", 5)
    assert len(steps) == 5
    for neighbourhood, b, rows, edges_into_neighbours, labelled, width, t_width in steps:
        assert neighbourhood and b == 200 and rows > b and edges_into_neighbours == 0 and labelled == 80
        assert (width, t_width) == (16, 32)
    model = "MLP(16)" if student == "mlp" else "SAGE(16)"
    assert [(r["method"], r["model"]) for r in res["rows"]][1:] == [("none", model), ("lsp", model)]
    if student == "mlp":
        small = large.estimate_student(800, 16, 32, 4, 200, 120, SAGE(16, 32, 4))
        grown = large.estimate_student(800, 16, 32, 4, 200, 120, SAGE(16, 32, 4), neighbours=3.0)
        assert grown["batch rows"] == 4 * small["batch rows"] and "batch graph (neighbourhoods)" in grown
    else:
        m = SAGE(16, 16, 4)
        small = large_gnn.estimate_gnn_student(10**6, 16, 16, 4, (5, 5), 100, m, 120, 32)
        grown = large_gnn.estimate_gnn_student(10**6, 16, 16, 4, (5, 5), 100, m, 120, 32, neighbours=3.0)
        assert grown["gathered features"] == 4 * small["gathered features"]
        assert "batch graph (neighbourhoods)" in grown


def test_gnn_students_train_on_sampled_batches(tmp_path, monkeypatch):
    """A SAGE student per method: KD on partition batches of every node, GSP on labelled_first batches
    (80 labels, batches of 200), the baseline on the training nodes; each step's terms read the seeds'
    teacher rows; test accuracy from exact layer-wise inference of the student, whose files are gone."""
    from gkdfast.distill import terms
    from gkdfast.nn import layerwise

    data = _data()
    teacher = _trained_teacher(data)
    seen = []
    real = terms.GSP.forward

    def spy(self, ctx):
        seen.append((ctx.nodes.numel(), int(ctx.labelled.sum()), tuple(ctx.teacher_hidden.shape),
                     ctx.hidden.shape[1]))
        return real(self, ctx)

    monkeypatch.setattr(terms.GSP, "forward", spy)
    full = []
    real_lw = layerwise.layerwise_inference

    def lw(model, *a, **k):
        out = real_lw(model, *a, **k)
        with torch.no_grad():  # the teacher's, then each student's: the full-graph outputs
            full.append(torch.allclose(out[0], model(data.x, data.graph), atol=1e-5))
        return out

    monkeypatch.setattr(layerwise, "layerwise_inference", lw)
    res = distill_large(data, teacher=teacher, hidden=32, student="sage", student_hidden=16, fanouts=(5, 5),
                        batch_size=200, chunk_rows=97, student_epochs=2, student_min_steps=8, min_patience_steps=0,
                        method=["kd", "gsp"], out_dir=str(tmp_path), progress=False)
    st = {s["stage"]: s for s in res["stages"]}
    assert (st["student:kd"]["batching"], st["student:kd"]["steps"]) == ("partition", 8)  # 4 batches x 2 epochs
    assert (st["student:gsp"]["batching"], st["student:gsp"]["steps"]) == ("labelled_first", 8)
    assert (st["baseline"]["epochs"], st["baseline"]["steps"]) == (8, 8)
    assert seen == [(200, 80, (200, 32), 16)] * 8
    assert [(r["method"], r["model"]) for r in res["rows"]] == [("teacher", "SAGE(32)"), ("none", "SAGE(16)"),
                                                                ("kd", "SAGE(16)"), ("gsp", "SAGE(16)")]
    assert full == [True] * 4 and all(0.0 < r["test_acc_mean"] <= 1.0 for r in res["rows"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("student-")]


def test_memory_check_stops_a_stage_with_the_flag_to_lower(tmp_path, monkeypatch):
    data = _data()
    teacher = _trained_teacher(data)
    monkeypatch.setattr(memory, "mem_available", lambda: 1 << 10)  # 1 KiB free
    with pytest.raises(InsufficientMemory, match=r"stage 'inference' needs about .* but only 1.0 KiB is "
                                                 r"available .*--chunk-rows \(now 500\)"):
        distill_large(data, teacher=teacher, hidden=32, chunk_rows=500, out_dir=str(tmp_path), progress=False)
    assert not os.path.exists(tmp_path / "cache")  # stopped before any work
    # Enough for inference, not for the student's batches: the student stage names --batch-size.
    need = sum(large.estimate_inference(800, data.num_edges / 800, 16, 32, 4, 500).values())
    monkeypatch.setattr(memory, "mem_available", lambda: int(need / 0.9) + 1)
    with pytest.raises(InsufficientMemory, match=r"stage 'student'.*--batch-size \(now 800\)"):
        distill_large(data, teacher=teacher, hidden=32, chunk_rows=500, batch_size=800, out_dir=str(tmp_path),
                      progress=False)
    # The check can be turned off.
    res = distill_large(data, teacher=teacher, hidden=32, chunk_rows=500, batch_size=800, student_epochs=1,
                        student_min_steps=0, out_dir=str(tmp_path), progress=False, check_memory_first=False)
    assert len(res["rows"]) == 3


def test_check_memory_message_and_unknown_free_memory():
    assert check_memory("x", {"a": 10}, "hint", available=100) == 10
    with pytest.raises(InsufficientMemory, match="stage 'x' needs about 3.00 GiB .*a 2.00 GiB, b 1.00 GiB.*: hint"):
        check_memory("x", {"a": 2 << 30, "b": 1 << 30}, "hint", available=1 << 30)


def test_estimates_grow_with_their_flags():
    m = SAGE(100, 256, 47)
    small = sum(large.estimate_inference(10**6, 50, 100, 256, 47, 1024).values())
    assert small < sum(large.estimate_inference(10**6, 50, 100, 256, 47, 65536).values())
    assert sum(large.estimate_teacher(10**6, 100, 256, 47, (15, 10), 256, m).values()) < \
        sum(large.estimate_teacher(10**6, 100, 256, 47, (15, 10), 1024, m).values())


def test_bad_arguments(tmp_path):
    data = _data()
    with pytest.raises(ValueError, match="not supported at scale"):
        distill_large(data, teacher=SAGE(16, 8, 4), method="graphmlp", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="student must be 'mlp' or one of sage, gcn, gin, gat"):
        distill_large(data, teacher=SAGE(16, 8, 4), student="rgcn", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"lsp with a GNN student .* drop --set lsp.batch_edges=induced"):
        distill_large(data, teacher=SAGE(16, 8, 4), student="gcn", method="lsp", overrides={"batch_edges": "induced"},
                      out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="fanouts must be 2 positive ints"):
        distill_large(data, fanouts=(15,), out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        distill_large(data, teacher=SAGE(16, 8, 4), chunk_rows=0, out_dir=str(tmp_path))


def test_whole_pipeline_with_sampled_teacher(tmp_path):
    """Stage 1 included: the teacher trained by gkdfast.sampling.fit_sampled (the sampler's package)."""
    pytest.importorskip("gkdfast.sampling", reason="gkdfast.sampling (neighbour sampler) not in this tree")
    data = _data()
    res = distill_large(data, teacher="sage", hidden=32, fanouts=(5, 5), teacher_epochs=2, teacher_batch_size=128,
                        batch_size=128, chunk_rows=100, student_epochs=2, student_min_steps=0, out_dir=str(tmp_path),
                        progress=False)
    assert [s["stage"] for s in res["stages"]] == ["teacher", "inference", "student", "baseline", "evaluate"]
    assert res["stages"][0]["throughput"] > 0 and res["rows"][0]["train_seconds"] > 0
    assert os.path.exists(tmp_path / "teacher-SAGE(32)-seed0.pt")
    # A rerun reuses the saved teacher weights and the cached outputs.
    again = distill_large(data, teacher="sage", hidden=32, fanouts=(5, 5), teacher_epochs=2, teacher_batch_size=128,
                          batch_size=128, chunk_rows=100, student_epochs=2, student_min_steps=0, out_dir=str(tmp_path),
                        progress=False)
    assert again["stages"][1]["cached"] is True and again["stages"][0]["resumed"] is True
    # the resumed teacher reports the training it did when it ran, not zeros
    assert again["rows"][0]["train_seconds"] == res["rows"][0]["train_seconds"] > 0
    assert again["rows"][0]["test_acc"] == res["rows"][0]["test_acc"]
    # Other teacher settings, or another split of the same graph: the saved weights are not theirs
    for kw, d in ((dict(teacher_epochs=3), data), ({}, seed_split(data, 5))):
        third = distill_large(d, teacher="sage", hidden=32, fanouts=(5, 5), teacher_batch_size=128,
                              batch_size=128, chunk_rows=100, student_epochs=2, student_min_steps=0,
                              out_dir=str(tmp_path), progress=False, **dict(dict(teacher_epochs=2), **kw))
        assert "resumed" not in third["stages"][0]


def test_saved_teacher_without_a_readable_record_or_weights_trains_again(tmp_path):
    """Weights whose record is missing or damaged, or which cannot be read, are not loaded: they could be
    another graph's teacher (a 600-node run's weights loaded onto a 700-node graph scored 30 %)."""
    pytest.importorskip("gkdfast.sampling", reason="gkdfast.sampling (neighbour sampler) not in this tree")
    data = _data()
    kw = dict(teacher="sage", hidden=16, fanouts=(3, 3), teacher_epochs=1, teacher_batch_size=128, batch_size=128,
              chunk_rows=100, student_epochs=1, student_min_steps=0, out_dir=str(tmp_path), progress=False)
    lines = []
    distill_large(data, log=lines.append, **kw)
    weights = tmp_path / "teacher-SAGE(16)-seed0.pt"
    record = tmp_path / "teacher-SAGE(16)-seed0.pt.json"
    assert distill_large(data, **kw)["stages"][0].get("resumed") is True
    damage = [("missing record", lambda: record.unlink(), "has no readable record"),
              ("damaged record", lambda: record.write_text('{"key": "ab'), "has no readable record"),
              ("damaged weights", lambda: weights.write_bytes(b"\x00" * 64), "cannot be read")]
    for what, spoil, said in damage:  # (the second move keeps the first one's file: .unverified-1.pt)
        spoil()
        lines.clear()
        res = distill_large(data, log=lines.append, **kw)
        assert "resumed" not in res["stages"][0], what
        assert any(said in line and "training again" in line for line in lines), (what, lines)
        assert distill_large(data, **kw)["stages"][0].get("resumed") is True, what  # rewritten whole
        if "record" in what:  # weights without a record may be a user's: kept aside, not overwritten
            kept = {"missing record": "unverified.pt", "damaged record": "unverified-1.pt"}[what]
            assert (tmp_path / f"teacher-SAGE(16)-seed0.{kept}").exists()
            assert any("moved to teacher-SAGE(16)-seed0.unverified" in line for line in lines)


def test_sampled_teacher_is_validated_about_teacher_validations_times(tmp_path, monkeypatch):
    """With one batch per epoch the teacher trains many one-step epochs: it is validated every
    ceil(epochs / teacher_validations) epochs and after the last, not after every step."""
    pytest.importorskip("gkdfast.sampling", reason="gkdfast.sampling (neighbour sampler) not in this tree")
    import gkdfast.sampling as sampling

    seen = {}
    real = sampling.fit_sampled

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.update(epochs=kwargs["epochs"], eval_every=kwargs["eval_every"],
                    validated=[h["epoch"] for h in out["history"] if "val_acc" in h])
        return out

    monkeypatch.setattr(sampling, "fit_sampled", spy)
    data = _data()
    batches = -(-int(data.train_mask.sum()) // 1024)
    res = distill_large(data, teacher="sage", hidden=16, fanouts=(3, 3), teacher_batch_size=1024,
                        teacher_min_steps=45 * batches, teacher_validations=7, batch_size=128, chunk_rows=100,
                        student_epochs=1, student_min_steps=0, out_dir=str(tmp_path), progress=False)
    assert seen["epochs"] == 45 and seen["eval_every"] == 7  # ceil(45 / 7)
    assert seen["validated"] == [7, 14, 21, 28, 35, 42, 45]
    assert res["stages"][0]["eval_every"] == 7
    with pytest.raises(ValueError, match="teacher_validations must be a positive int"):
        distill_large(data, teacher_validations=0, out_dir=str(tmp_path / "bad"))


def test_rerun_with_other_student_settings_and_a_cached_teacher_under_little_memory(tmp_path, monkeypatch):
    """A rerun in the same folder: other student settings start afresh beside the old checkpoints (they
    were refused as "a different run"); the cached teacher outputs need no memory plan and report the
    inference time of the run that made them, not the time of opening the files."""
    data = _data()
    teacher = _trained_teacher(data)
    kw = dict(teacher=teacher, hidden=32, chunk_rows=97, student_epochs=2, student_min_steps=0,
              out_dir=str(tmp_path), progress=False)
    first = distill_large(data, batch_size=100, **kw)
    second = distill_large(data, batch_size=128, student_hidden=16, **kw)
    assert [r["model"] for r in second["rows"]][1:] == ["MLP(16)", "MLP(16)"]
    assert second["stages"][0]["cached"] is True and second["stages"][0]["estimate_bytes"] == 0
    assert second["rows"][0]["inference_ms_per_1k_nodes"] == first["rows"][0]["inference_ms_per_1k_nodes"]
    monkeypatch.setattr(memory, "mem_available", lambda: 1 << 10)  # 1 KiB: the cached teacher needs none
    with pytest.raises(InsufficientMemory, match="stage 'student'"):  # not 'inference'
        distill_large(data, batch_size=100, **kw)


def test_inference_estimate_takes_the_fullest_block(tmp_path):
    from gkdfast import Graph

    n = 1000
    hub = Graph(torch.stack([torch.randint(0, n, (20000,)), torch.zeros(20000, dtype=torch.long)]), n)
    assert large._max_block_edges(hub, 100) == 20000
    avg = sum(large.estimate_inference(n, 20.0, 16, 32, 4, 100).values())
    worst = sum(large.estimate_inference(n, 20.0, 16, 32, 4, 100, max_block_edges=20000).values())
    assert worst > avg


def test_teacher_key_tells_weightings_of_the_same_csr_apart():
    from gkdfast import Graph

    d = csbm(num_nodes=3, num_classes=2, feature_dim=4, seed=0)
    w = torch.tensor([1.0, 5.0, 1.0])
    a = Graph(torch.tensor([[1, 0, 2], [0, 1, 0]]), 3, w)
    b = Graph(torch.tensor([[1, 2, 0], [0, 0, 1]]), 3, w)
    keys = [large._teacher_key(type(d)(**dict(vars(d), graph=g)), "sage", 2, (5, 5), 2, 64, 0.01, 0, 1, 0)
            for g in (a, b)]
    assert keys[0] != keys[1]


def test_teacher_cache_sweeps_the_folders_of_killed_writers(tmp_path):
    from gkdfast.distill.teacher_cache import STALE_SECONDS, teacher_outputs

    root = tmp_path / "teachers"
    old, live = root / ".tmp-old", root / ".tmp-live"
    for d in (old, live):
        d.mkdir(parents=True)
        (d / "logits.f32").write_bytes(b"\0" * 16)
    stamp = os.path.getmtime(old) - STALE_SECONDS - 60
    for p in (old, old / "logits.f32"):
        os.utime(p, (stamp, stamp))
    data = _data()
    teacher_outputs(SAGE(16, 8, 4), data.x, data.graph, cache_dir=str(tmp_path))
    assert not old.exists() and live.exists()  # a writer still touching its files keeps them
