"""``gkdfast distill --sampled``: the out-of-core pipeline from the command line."""
import json
import os

import pytest
import torch

from gkdfast.cli import main
from gkdfast.cli_large import parse_fanouts, wants_large
from gkdfast.data import csbm, save_npz
from gkdfast.nn import SAGE


def _bundle(tmp_path):
    data = csbm(num_nodes=600, num_classes=3, feature_dim=16, seed=0)
    path = str(tmp_path / "g.npz")
    save_npz(data, path)
    return data, path


def _run_with_saved_teacher(tmp_path, *args):
    """``gkdfast distill --sampled`` on a 600-node bundle whose teacher stage resumes from saved
    weights (so it needs no neighbour sampler); returns (exit status, out folder)."""
    _, path = _bundle(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    torch.manual_seed(0)
    torch.save(SAGE(16, 16, 3).state_dict(), out / "teacher-SAGE(16)-seed0.pt")
    rc = main(["distill", "--data", path, "--sampled", "--teacher", "sage:16", "--student", "mlp:16",
               "--batch-size", "128", "--chunk-rows", "100", "--epochs", "2", "--out", str(out), "--quiet", *args])
    return rc, out


def test_sampled_run_writes_results_with_stages(tmp_path, capsys):
    rc, out = _run_with_saved_teacher(tmp_path, "--set", "glnn.lamb=0.5")
    assert rc == 0
    printed = capsys.readouterr().out
    assert "inference" in printed and "peak RSS" in printed
    res = json.loads((out / "results.json").read_text())
    assert [s["stage"] for s in res["stages"]] == ["teacher", "inference", "student", "baseline", "evaluate"]
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "glnn"]
    assert (out / "results.png").exists() and "| inference |" in (out / "stages.md").read_text()


def test_sampled_run_with_several_methods(tmp_path):
    """GLNN and GSP in one run: a student stage each, one row each, the --set aimed at its method."""
    rc, out = _run_with_saved_teacher(tmp_path, "--methods", "glnn,gsp", "--set", "gsp.proj_dim=8",
                                      "--min-steps", "9", "--min-patience-steps", "0", "--patience", "50",
                                      "--max-patience-steps", "12")
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["stage"] for s in res["stages"]] == ["teacher", "inference", "student:glnn", "student:gsp",
                                                   "baseline", "evaluate"]
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "glnn", "gsp"]
    # the step floor reaches every student: GSP on labelled_first batches (60 labels, batches of 128)
    # and the baseline take one step per epoch, GLNN 5 per epoch (600 nodes) for its 2 epochs
    st = {s["stage"]: s for s in res["stages"]}
    assert (st["student:gsp"]["batching"], st["student:gsp"]["steps"]) == ("labelled_first", 9)
    assert (st["baseline"]["epochs"], st["baseline"]["steps"]) == (9, 9)
    assert (st["student:glnn"]["epochs"], st["student:glnn"]["steps"]) == (2, 10)
    # patience 50 epochs, at most 12 steps: 3 epochs of GLNN's 5 steps, 12 of the one-step epochs
    assert [st[k]["patience"] for k in ("student:glnn", "student:gsp", "baseline")] == [3, 12, 12]


def test_sampled_run_with_a_gnn_student(tmp_path):
    """``--student gcn:8``: the students train on neighbour-sampled batches (--fanouts) and are
    evaluated by layer-wise inference; the rows name the GCN."""
    rc, out = _run_with_saved_teacher(tmp_path, "--student", "gcn:8", "--fanouts", "3,3", "--methods", "kd",
                                      "--min-steps", "4")
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["model"]) for r in res["rows"]] == [("teacher", "SAGE(16)"), ("none", "GCN(8)"),
                                                                ("kd", "GCN(8)")]
    assert [s["stage"] for s in res["stages"]] == ["teacher", "inference", "student", "baseline", "evaluate"]


@pytest.mark.parametrize("args,needle", [
    (["--fanouts", "15,x"], "--fanouts '15,x'"),
    (["--student", "segcn"], "trains one student"),
    (["--student", "gcn", "--methods", "lsp", "--set", "lsp.batch_edges=induced"], "lsp with a GNN student"),
    (["--methods", "graphmlp"], "runs distinct methods among glnn, kd, nosmog, lsp, gsp, gcrd, kd_gcrd"),
    (["--methods", "glnn,glnn"], "the same recipe (glnn); name it once"),
    (["--methods", "glnn,gsp", "--set", "gsp.nope=1"], "unknown hyperparameter 'nope'"),
    (["--patience", "0"], "--patience must be >= 1"),
    (["--min-steps", "-1"], "--min-steps must be >= 0"),
    (["--max-patience-steps", "-1"], "--max-patience-steps must be >= 0 (0: no ceiling)"),
    (["--chunk-rows", "0"], "--chunk-rows must be >= 1"),
    (["--set", "glnn.nope=1"], "unknown hyperparameter 'nope'"),
    (["--setting", "inductive"], "not supported with --sampled"),
])
def test_bad_large_arguments_give_one_line(tmp_path, capsys, args, needle):
    _, path = _bundle(tmp_path)
    rc = main(["distill", "--data", path, "--sampled", "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1


@pytest.mark.parametrize("args,needle", [
    (["--task", "graph", "--patience", "5"], "--patience: not supported on graph classification"),
    (["--task", "graph", "--max-patience-steps", "5"], "--max-patience-steps: not supported on graph classification"),
    (["--protocol", "published", "--min-steps", "10"], "--protocol published sets the models and setting of each "
                                                       "recipe; drop --min-steps"),
    # --dropout sets the common protocol's students: where a pipeline fixes its own, it is refused, not ignored
    (["--protocol", "published", "--dropout", "0"], "--protocol published sets the models and setting of each "
                                                    "recipe; drop --dropout"),
    (["--task", "graph", "--dropout", "0.2"], "--dropout: not supported on graph classification"),
])
def test_flags_other_pipelines_do_not_honour_stop_the_run(tmp_path, capsys, args, needle):
    """The student schedule flags belong to the out-of-core pipeline, --dropout to the common protocol's and
    the pipeline's students: elsewhere they are refused, not ignored."""
    _, path = _bundle(tmp_path)
    rc = main(["distill", "--data", path, "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1, err


def test_automatic_switch_by_node_count():
    class Args:
        sampled, sampled_above = False, 500

    class Data:
        num_nodes = 600

    assert wants_large(Args, Data)
    Args.sampled_above = 0
    assert not wants_large(Args, Data)
    Args.sampled = True
    assert wants_large(Args, Data)
    assert parse_fanouts("25,10,5") == (25, 10, 5)
    # the pipeline's schedule flags on a full-batch run stop it, naming the per-recipe way
    Args.sampled, Args.patience = False, 10
    with pytest.raises(ValueError, match=r"--patience: the out-of-core pipeline's schedule.*--set METHOD.patience"):
        wants_large(Args, Data)
    Args.sampled = True
    assert wants_large(Args, Data)


def test_sampled_end_to_end_with_the_sampler(tmp_path):
    pytest.importorskip("gkdfast.sampling", reason="gkdfast.sampling (neighbour sampler) not in this tree")
    _, path = _bundle(tmp_path)
    out = str(tmp_path / "out")
    rc = main(["distill", "--data", path, "--sampled-above", "500", "--teacher", "sage:16", "--fanouts", "5,5",
               "--teacher-epochs", "1", "--teacher-batch-size", "128", "--batch-size", "128", "--epochs", "1",
               "--out", out, "--quiet"])
    assert rc == 0
    res = json.loads(open(os.path.join(out, "results.json")).read())
    assert res["stages"][0]["stage"] == "teacher" and res["stages"][0]["seconds"] > 0


def test_memory_error_is_one_line_naming_the_flag(tmp_path, capsys, monkeypatch):
    from gkdfast.distill import memory

    _, path = _bundle(tmp_path)
    monkeypatch.setattr(memory, "mem_available", lambda: 1 << 10)
    rc = main(["distill", "--data", path, "--sampled", "--teacher", "sage:16", "--out", str(tmp_path / "o"),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "error: InsufficientMemory: stage 'teacher' needs about" in err and "--teacher-batch-size (now 1024)" in err


@pytest.mark.parametrize("flag", [["--batch-size", "7"], ["--fanouts", "1,1"], ["--teacher-epochs", "9"],
                                  ["--chunk-rows", "3"], ["--no-memory-check"], ["--teacher-validations", "2"]])
def test_pipeline_flags_on_a_full_batch_run_stop_it_instead_of_being_ignored(tmp_path, capsys, flag):
    _, path = _bundle(tmp_path)  # 600 nodes: full-batch unless --sampled
    rc = main(["distill", "--data", path, "--out", str(tmp_path / "o"), "--quiet", *flag])
    err = capsys.readouterr().err
    assert rc == 2 and f"{flag[0]}: the out-of-core pipeline's schedule" in err and err.count("\n") == 1, err


def test_teacher_auto_is_refused_by_the_pipeline_with_its_reason(tmp_path, capsys):
    _, path = _bundle(tmp_path)
    rc = main(["distill", "--data", path, "--sampled", "--teacher", "auto", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--teacher auto: not available in the out-of-core pipeline" in err


@pytest.mark.parametrize("args,needle", [
    (["--sampled", "--seeds", "2"], "--seeds: the out-of-core pipeline runs one seed per command"),
    (["--sampled", "--teacher", "gcnii"], "which this model does not run on"),
    (["--folds", "5"], "--folds: flags of graph classification"),
    (["--dfad-epochs", "3"], "--dfad-epochs: flags of graph classification"),
    (["--task", "graph", "--seeds", "2"], "--seeds: not supported on graph classification"),
    (["--task", "graph", "--cache-dir", "c"], "--cache-dir: not supported on graph classification"),
])
def test_flags_a_pipeline_would_ignore_are_refused(tmp_path, capsys, args, needle):
    _, path = _bundle(tmp_path)
    rc = main(["distill", "--data", path, "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1, err
