"""The out-of-core pipeline under torch.distributed: layer-wise inference sharing its row blocks,
the teacher cache on that path, sampled teacher training data-parallel (equal to one process on the
same global batches), the whole ``distill_large`` and ``gkdfast distill --distributed --sampled``."""
import json
import os
import subprocess

import pytest
import torch
import torch.distributed as dist

import _ddp_large_workers as workers
from _spawn_ranks import spawn_ranks
from test_distributed_train import ROOT, _env, _torchrun

WORLD = 2
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = spawn_ranks(workers.worker, WORLD, str(tmp_path_factory.mktemp("ddp-large")),
                      lambda init, out: (WORLD, init, out))
    return out, [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "mlp1"])
def test_layerwise_inference_shared_by_two_ranks_equals_the_full_forward(ranks, name):
    _, res = ranks
    data = workers.problem()
    model = workers.models()[name].eval()
    with torch.no_grad():
        want_logits, want_hidden = model(data.x, data.graph, return_hidden=True)
    for r in range(WORLD):
        logits, hidden, files = res[r][f"lw_{name}"]
        torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hidden, want_hidden, rtol=1e-5, atol=1e-5)
        assert files == ["hidden.f32", "logits.f32"]  # every rank's pre-transform and the layers in between removed


def test_teacher_cache_layerwise_under_ddp_equals_one_process(ranks, tmp_path):
    """Ranks on one machine share the layers' row blocks; ranks on two machines exchange them, and only
    the finished entry's files stay in the cache."""
    from gkdfast.distill import teacher_outputs

    _, res = ranks
    data = workers.problem()
    want = teacher_outputs(workers.models()["gcn"], data.x, data.graph, cache_dir=str(tmp_path), chunk_rows=50)
    for r, key in [(r, key) for r in range(WORLD) for key in ("cache", "cache_apart")]:
        logits, hidden, cached = res[r][key][:3]
        assert not cached
        torch.testing.assert_close(logits, want.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hidden, want.hidden, rtol=1e-5, atol=1e-5)


    for r in range(WORLD):
        assert res[r]["cache_apart"][3] == ["hidden.f32", "logits.f32", "meta.json"]


@pytest.fixture(scope="module")
def apart(tmp_path_factory):
    out = spawn_ranks(workers.apart_worker, 3, str(tmp_path_factory.mktemp("ddp-apart")),
                      lambda init, out: (3, init, out))
    return [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(3)]


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "mlp1"])
def test_layerwise_inference_across_two_machines_equals_the_full_forward(apart, name):
    """Ranks 0, 1 on machine 0 share files; rank 2 alone on machine 1 holds its own copies, filled by
    the exchange (9 blocks of 37 rows: every rank owns blocks of every layer)."""
    data = workers.problem()
    model = workers.models()[name].eval()
    with torch.no_grad():
        want_logits, want_hidden = model(data.x, data.graph, return_hidden=True)
    for r in range(3):
        assert apart[r]["machines"] == [0, 0, 1]
        logits, hidden, files, scratch = apart[r][name]
        torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hidden, want_hidden, rtol=1e-5, atol=1e-5)
        assert files == ["hidden.f32", "logits.f32"]  # machine 1's copies (".machine1") deleted
    # Machine 1 kept its copies in the run's folder, or in its GKDFAST_SCRATCH folder (sage, mlp1),
    # and deleted them at the end either way.
    i = list(workers.models()).index(name)
    folder, listing = apart[2]["copies"][i]
    assert listing == ["hidden.f32", "logits.f32"]
    if i % 2:
        assert os.path.basename(os.path.dirname(folder)) == "scratch-machine1"
        assert os.path.basename(folder).startswith("gkdfast-layers-") and apart[2][name][3] == []
    else:
        assert os.path.basename(folder) == ".machine1" and os.path.basename(os.path.dirname(folder)) == f"lw-{name}"


def test_fit_sampled_under_ddp_equals_one_process(ranks):
    """60 seeds and a global batch of 20: each step's global batch is the single-process batch, with
    the same sampled neighbourhoods, so the DDP-averaged gradient is the single-process one."""
    _, res = ranks
    want, stats, sampled = workers.fit_sampled_problem(False)
    for r in range(WORLD):
        weights, got, mine = res[r]["fit"]
        assert mine == sampled // WORLD  # each rank samples its half of the training and validation seeds
        for name, w in want.items():
            torch.testing.assert_close(weights[name], w, rtol=1e-5, atol=1e-6)
        assert got["best_epoch"] == stats["best_epoch"] and got["best_val_acc"] == stats["best_val_acc"]
        for a, b in zip(got["history"], stats["history"]):
            assert a["val_acc"] == b["val_acc"]
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_fit_sampled_under_ddp_keeps_batch_norm_statistics_equal_on_every_rank(ranks):
    """Each rank's last forward of an epoch updates BatchNorm's running statistics from its own rows;
    the epoch ends by copying rank 0's buffers, so every rank validates and keeps the same model."""
    _, res = ranks
    first = res[0]["fit_bn"]
    assert any("running_mean" in name for name in first)
    for r in range(1, WORLD):
        for name, w in first.items():
            assert torch.equal(res[r]["fit_bn"][name], w), name


@pytest.mark.parametrize("case", workers.DISTIL_CASES, ids="-".join)
def test_sampled_distillation_under_ddp_equals_one_process(ranks, case):
    """A GNN student distilled on sampled batches (label term, KD, GSP across the ranks; on
    neighbourhood batches also LSP, each rank expanding its own centres): each rank takes its positions
    of the global batch, whose sampled neighbourhoods are the single-process ones, so the DDP weights
    equal one process's."""
    _, res = ranks
    want = workers.fit_sampled_distil_problem(False, *case)
    for r in range(WORLD):
        for name, w in want.items():
            torch.testing.assert_close(res[r]["distil"][case][name], w, rtol=1e-5, atol=1e-6)


def test_distill_large_under_ddp_gives_every_rank_the_same_results(ranks):
    out, res = ranks
    rows = [{r["method"]: r for r in res[k]["large"]["rows"]} for k in range(WORLD)]
    assert set(rows[0]) == {"teacher", "none", "glnn", "gcrd", "lsp", "nosmog"}
    positions = [s for s in res[0]["large"]["stages"] if s["stage"] == "positions"][0]
    assert positions["cached"] is False  # rank 0 computed it, every rank mapped the same file
    lsp = [s for s in res[0]["large"]["stages"] if s["stage"] == "student:lsp"][0]
    assert lsp["batch_edges"] == "neighbours"
    for method, row in rows[0].items():
        assert rows[1][method]["test_acc_mean"] == row["test_acc_mean"], method
    assert rows[0]["teacher"]["test_acc_mean"] > 0.5  # a 3-class CSBM: well above chance
    gnn = [{r["method"]: r for r in res[k]["large_gnn"]["rows"]} for k in range(WORLD)]
    assert set(gnn[0]) == {"teacher", "none", "kd", "gsp", "lsp"} and gnn[0]["kd"]["model"] == "GCN(8)"
    for method, row in gnn[0].items():
        assert gnn[1][method]["test_acc_mean"] == row["test_acc_mean"], method
    assert os.listdir(os.path.join(out, "large", "cache", "teachers"))  # one cache entry, written together


def test_distill_sampled_command_under_torchrun_and_its_restart_mid_teacher(tmp_path):
    """The whole --sampled pipeline under torchrun; then again with rank 1 killed after the sampled
    teacher's second epoch: torchrun restarts the group, the teacher resumes from its partial checkpoint
    (fit_sampled(checkpoint=)), and every result equals the uninterrupted run's."""
    res = {}
    for tag in ("plain", "killed"):
        out = tmp_path / tag
        extra = {"GKDFAST_TEST_FAIL_ONCE_AT_EPOCH": "2",
                 "GKDFAST_TEST_FAIL_ONCE_MARKER": str(tmp_path / "marker")} if tag == "killed" else {}
        # --max-restarts beyond the hook's one: a restart (resuming from --out) absorbs the gloo abort a rank
        # sometimes hits while the group forms on a loaded 2-core machine (see
        # test_torchrun_restart_resumes_to_the_uninterrupted_result)
        cmd = _torchrun() + ["--standalone", "--nproc_per_node=2", "--max-restarts", "3", "-m", "gkdfast.cli",
                             "distill", "--distributed",
                             "--sampled", "--nodes", "3000", "--features", "16", "--classes", "3", "--teacher",
                             "sage:16", "--fanouts", "5,5", "--teacher-epochs", "3", "--epochs", "2", "--batch-size",
                             "512", "--chunk-rows", "700", "--no-progress", "--out", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env(**extra), cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert r.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
        res[tag] = json.loads((out / "results.json").read_text())
        assert not list(out.glob("*.partial.pt"))  # the teacher's partial checkpoint goes with its weights
    assert (tmp_path / "marker").exists()  # the failure happened
    assert {row["method"] for row in res["plain"]["rows"]} == {"teacher", "none", "glnn"}
    assert [s["stage"] for s in res["plain"]["stages"]] == ["teacher", "inference", "student", "baseline", "evaluate"]
    assert [r["test_acc"] for r in res["killed"]["rows"]] == [r["test_acc"] for r in res["plain"]["rows"]]
    assert res["killed"]["stages"][0]["best_epoch"] == res["plain"]["stages"][0]["best_epoch"]
    assert res["killed"]["stages"][0]["resumed_after_epoch"] == 2
    assert res["plain"]["stages"][0]["resumed_after_epoch"] == 0


def test_layerwise_inference_with_a_group_needs_a_shared_folder():
    from gkdfast.distill.ddp import Dist
    from gkdfast.nn import layerwise_inference

    data = workers.problem()
    with pytest.raises(ValueError, match="pass out_dir"):
        layerwise_inference(workers.models()["gcn"], data.x, data.graph, chunk_rows=50, group=Dist(0, 2))
