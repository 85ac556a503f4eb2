"""Distiller under torch.distributed: row shards, DDP equal to one process on the same global batches,
sharded teacher inference, all-pairs terms, ``gkdfast distill --distributed`` and a torchrun restart."""
import inspect
import math
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import _ddp_workers
from _spawn_ranks import spawn_ranks
from gkdfast.distill import Distiller, teacher_outputs
from gkdfast.distill.ddp import Dist, fail_once_for_test, local_batches, resolve, shard_order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = 2


# -- shards (pure) -------------------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (1, 2), (2, 4)])
def test_shards_are_equal_sized_and_cover_the_pool(n, world):
    order = torch.randperm(n) + 100
    shards = [shard_order(order, world, r) for r in range(world)]
    assert len({s.numel() for s in shards}) == 1 and shards[0].numel() == -(-n // world)
    assert set(torch.cat(shards).tolist()) == set(order.tolist())  # padding only repeats rows


def test_union_of_local_batches_is_the_single_process_batch():
    order = torch.randperm(120)
    batch = 40
    single = list(order.split(batch))
    per_rank = [local_batches(shard_order(order, WORLD, r), batch, WORLD) for r in range(WORLD)]
    assert all(len(b) == len(single) for b in per_rank)
    for k, expected in enumerate(single):
        got = torch.cat([per_rank[r][k] for r in range(WORLD)])
        assert sorted(got.tolist()) == sorted(expected.tolist())


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        shard_order(torch.arange(4), 2, 2)
    with pytest.raises(ValueError, match="distributed"):
        Distiller(torch.nn.Linear(2, 2), [_ddp_workers.exact_problem()[2][1]], distributed="yes")
    with pytest.raises(ValueError, match="init_process_group"):
        resolve(True)
    assert resolve("auto") is None and resolve(False) is None


def test_fail_once_hook_is_off_without_its_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("GKDFAST_TEST_FAIL_ONCE_AT_EPOCH", raising=False)
    fail_once_for_test(Dist(1, 2), 1, str(tmp_path))  # would exit the test process if it fired
    monkeypatch.setenv("GKDFAST_TEST_FAIL_ONCE_AT_EPOCH", "3")
    fail_once_for_test(Dist(0, 2), 3, str(tmp_path))  # only the last rank fails
    fail_once_for_test(Dist(1, 2), 2, str(tmp_path))  # only at epoch 3
    assert os.listdir(tmp_path) == []


# -- two gloo processes ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = spawn_ranks(_ddp_workers.worker, WORLD, str(tmp_path_factory.mktemp("ddp")),
                      lambda init, out: (WORLD, init, out))
    return out, [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


def test_ddp_equals_one_process_on_the_same_global_batches(ranks):
    """Pool (120) and global batch (40) are multiples of the world size, so each step's global batch
    is the single-process batch and the DDP-averaged gradient of the per-rank batchmean KD is the
    single-process gradient: in float64 the weights after 18 Adam steps agree to rounding."""
    _, res = ranks
    weights, single = _ddp_workers.fit_exact(False)
    for r in range(WORLD):
        for name, w in weights.items():
            assert torch.equal(res[r]["weights"][name], res[0]["weights"][name])  # ranks identical, bit for bit
            torch.testing.assert_close(res[r]["weights"][name], w, rtol=0, atol=1e-12)
        assert res[r]["val_acc"] == [h["val_acc"] for h in single.history]  # counts summed over ranks
        assert res[r]["best_epoch"] == single.best_epoch
        torch.testing.assert_close(res[r]["loss"], [h["loss"] for h in single.history], rtol=1e-12, atol=0)


@pytest.mark.parametrize("graph_students", [False, True])
def test_a_student_of_peers_scores_its_best_peer_over_all_ranks_as_in_one_process(ranks, graph_students):
    """FreeKD's and OAD's groups: the validation score (and so the best epoch) is the best peer's
    accuracy, counted over every rank's validation rows, not the peers' mean."""
    _, res = ranks
    val, best, weights = _ddp_workers.fit_peer_group(False, graph_students)
    for r in range(WORLD):
        got_val, got_best, got_weights = res[r]["peers_gcn" if graph_students else "peers_mlp"]
        assert got_val == val and got_best == best
        for name, w in weights.items():
            torch.testing.assert_close(got_weights[name], w, rtol=0, atol=1e-12)


def test_label_rows_falling_unevenly_on_the_ranks_give_the_single_process_gradient(ranks):
    """Cross-entropy and KD average over the *global* batch's rows (counts all-reduced, times W), not
    per rank, so the training rows' uneven split over the ranks does not reweigh them."""
    _, res = ranks
    single, _ = _ddp_workers.fit_all_pairs(False, "ce-uneven")
    for r in range(WORLD):
        for name, w in single.items():
            torch.testing.assert_close(res[r]["pairs_ce-uneven"][name], w, rtol=0, atol=1e-10)


@pytest.mark.parametrize("which", ["ncontrast", "gsp", "rsd", "ncontrast-labelled_first", "lsp-gcn", "lsp-mlp",
                                   "lsp-neighbours", "gsp-separate"])
def test_pair_terms_under_ddp_give_the_single_process_gradient(ranks, which):
    """Every rank computes the global batch's all-pairs loss L and back-propagates it into its own
    rows only, so the ranks' gradients sum to ∇L; DDP averages them, so the Distiller scales such a
    term by the world size.  LSP: every rank computes the loss over the global batch's edges, from
    its full-graph forward (GNN student) or the gathered batch rows (MLP student), and DDP averages
    the identical gradients.  Pool 120, global batch 40: the DDP weights after 9 Adam steps equal the
    single-process ones (the union of the ranks' batches is the single-process batch, and both losses
    are invariant to the order of its rows)."""
    _, res = ranks
    single, _ = _ddp_workers.fit_all_pairs(False, which)
    for r in range(WORLD):
        for name, w in single.items():
            torch.testing.assert_close(res[r][f"pairs_{which}"][name], w, rtol=0, atol=1e-10)


def test_a_rank_with_one_row_makes_every_rank_skip_the_all_pairs_terms(ranks):
    """Rank 0 holds one row, rank 1 three: GSP and CRD return 0 on both (the fewest rows over the
    ranks decides), where rank 1 alone used to enter the loss's collective and wait for rank 0."""
    _, res = ranks
    assert res[0]["few_rows"] == res[1]["few_rows"] == [0.0, 0.0]


def test_separate_passes_split_each_global_batch_over_the_ranks(ranks):
    """GLNN's two-pass schedule under DDP: each rank's GSP step sees its half of the global batch of
    40 (a rank computing the whole batch would give the same weights, as these losses are invariant
    to duplicated rows, at W times the work)."""
    _, res = ranks
    for r in range(WORLD):
        assert res[r]["separate_rows"] == [20] * 9  # 3 pool batches per epoch, 3 epochs


def test_ddp_ranks_end_identical_with_batchnorm_dropout_and_padding(ranks):
    _, res = ranks
    assert res[0]["bn_history"] == res[1]["bn_history"]
    for name, w in res[0]["bn_weights"].items():
        assert torch.equal(res[1]["bn_weights"][name], w), name
    assert any("running_mean" in name for name in res[0]["bn_weights"])


def test_ddp_with_float16_autocast_ends_identical_on_every_rank(ranks):
    """Distiller(autocast="fp16") under DDP: each rank's steps run in float16 with a GradScaler; the
    averaged gradients make the ranks take the same steps (also the same skipped ones), so weights,
    history and the checkpointed scaler agree."""
    _, res = ranks
    assert res[0]["amp_history"] == res[1]["amp_history"]
    assert all(math.isfinite(h["loss"]) for h in res[0]["amp_history"])
    for name, w in res[0]["amp_weights"].items():
        assert w.dtype == torch.float32 and torch.equal(res[1]["amp_weights"][name], w), name
    assert res[0]["amp_scaler"]["scale"] > 0 and res[0]["amp_scaler"] == res[1]["amp_scaler"]


def test_ddp_checkpoints_follow_rank_0s_cadence(ranks):
    """Rank 1's cadence would write every epoch, rank 0's spaces its slow saves: both ranks save at
    rank 0's epochs (1, 5, 9 and the last), and the run ends instead of hanging in a collective."""
    _, res = ranks
    assert [res[r]["cadence_written"] for r in range(WORLD)] == [[1, 5, 9, 10]] * WORLD


def test_ddp_checkpoint_refuses_another_world_size(ranks):
    out, _ = ranks
    ckpt = os.path.join(out, "ckpt")
    assert sorted(os.listdir(ckpt)) == ["checkpoint.pt"]  # rank 0 wrote it; no temp file left
    state = torch.load(os.path.join(ckpt, "checkpoint.pt"), weights_only=False)
    assert state["world_size"] == WORLD and len(state["rng_ranks"]) == WORLD
    with pytest.raises(ValueError, match="2-process run"):
        _ddp_workers.fit_exact(False, checkpoint_dir=ckpt)


@pytest.mark.parametrize("name", ["mlp", "sage"])
def test_sharded_teacher_cache_equals_one_process(ranks, name, tmp_path):
    from gkdfast.data import csbm
    from gkdfast.nn import MLP, SAGE

    _, res = ranks
    data = csbm(num_nodes=101, num_classes=3, seed=0)
    logits0, hidden0, cached, again, state = res[0][f"teacher_{name}"]
    model = (MLP if name == "mlp" else SAGE)(data.num_features, 8, 3)
    model.load_state_dict(state)
    ref = teacher_outputs(model, data.x, data.graph, cache_dir=str(tmp_path))
    assert not cached and again  # written by the ranks the first time, mapped the second
    for r in range(WORLD):
        logits, hidden = res[r][f"teacher_{name}"][:2]
        assert torch.equal(logits, logits0) and torch.equal(hidden, hidden0)
        torch.testing.assert_close(logits, ref.logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(hidden, ref.hidden, rtol=1e-5, atol=1e-6)


def test_all_pairs_term_under_ddp_needs_process_group_support(ranks):
    from gkdfast.losses import gsp

    _, res = ranks
    if "process_group" in inspect.signature(gsp).parameters:
        assert res[0]["gsp"] == "ran"
    else:
        assert "'gsp'" in res[0]["gsp"] and "process_group" in res[0]["gsp"]


def test_a_student_with_its_own_regularization_is_refused_under_ddp(ranks):
    _, res = ranks
    for r in range(WORLD):
        assert "regularization()" in res[r]["regularized"] and "one process" in res[r]["regularized"]


def test_glnns_two_passes_and_graphmlps_batches_run_under_ddp(ranks):
    _, res = ranks
    for r in range(WORLD):
        assert res[r]["passes"] == "ran" and res[r]["batching"] == "ran"


# -- the command ---------------------------------------------------------------------------------
def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GKDFAST_DEBUG"):
        env.pop(k, None)
    env.update(extra)
    return env


def test_recipes_say_before_training_whether_they_run_data_parallel():
    """``gkdfast distill --distributed`` asks every recipe first, so a run cannot stop halfway (SAIL's
    terms cannot run across processes)."""
    from gkdfast.distill import recipes

    assert "process_group" in recipes.get("sail").distributed_problem()
    for name in ("kd", "glnn", "nosmog", "graphmlp", "lsp", "gsp", "gcrd", "kd_gcrd", "oad", "gsdn", "t2gnn",
                 "freekd"):
        assert recipes.get(name).distributed_problem() is None, name
    assert recipes.get("glnn", passes="separate").distributed_problem() is None


def test_published_settings_that_cannot_run_data_parallel_are_refused_first():
    from gkdfast.cli_protocol import _check_distributable
    from gkdfast.distill.protocols import published_settings

    with pytest.raises(ValueError, match="regularization"):  # Cold Brew's SE-GCN teacher
        _check_distributable(published_settings("cora", ["coldbrew"]), {})
    with pytest.raises(ValueError, match="'sail' in the published sail setting"):
        _check_distributable(published_settings("cora", ["sail"]), {})
    _check_distributable(published_settings("cora", ["glnn"]), {"glnn": {"passes": "separate"}})  # an ablation's
    _check_distributable(published_settings("cora", ["glnn", "nosmog", "graphmlp", "gsp", "gcrd", "freekd"]), {})


def test_published_protocol_under_torchrun(tmp_path):
    """Graph-MLP's published batches (labelled rows first, the whole graph's Â² restricted to the batch)
    and the CPF setting, data-parallel on two ranks; rank 0 alone prints and writes."""
    out = tmp_path / "out"
    cmd = _torchrun() + ["--standalone", "--nproc_per_node=2", "-m", "gkdfast.cli", "distill", "--distributed",
                         "--protocol", "published", "--nodes", "600", "--methods", "graphmlp,glnn", "--epochs", "3",
                         "--no-progress", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("wrote ") == 1 and "2 processes (gloo)" in r.stderr
    res = json.loads((out / "results.json").read_text())
    assert [s["key"] for s in res["protocol"]["settings"]] == ["cpf", "graphmlp"]
    assert {(row["method"], row["model"]) for row in res["rows"]} >= {("graphmlp", "GMLP(256)"), ("glnn", "MLP(128)")}


def test_distributed_outside_torchrun_is_a_one_line_error():
    r = subprocess.run([sys.executable, "-m", "gkdfast.cli", "distill", "--distributed", "--methods", "glnn"],
                       capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "torchrun" in lines[0] and "RANK" in lines[0], r.stderr


def test_distributed_refuses_all_pairs_methods_before_training():
    from gkdfast.losses import gsp

    r = subprocess.run([sys.executable, "-m", "gkdfast.cli", "distill", "--distributed", "--methods", "glnn,gsp"],
                       capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    # once gsp accepts process_group= (distributed losses), the check passes and torchrun is what is missing
    assert ("torchrun" if "process_group" in inspect.signature(gsp).parameters else "'gsp'") in lines[0]


def _torchrun():
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def test_torchrun_restart_resumes_to_the_uninterrupted_result(tmp_path):
    """Rank 1 exits after epoch 5 of the first training run (the teacher's); torchrun restarts the
    group once, every rank resumes from rank 0's checkpoint, and the results equal an uninterrupted
    2-process run's.  Only rank 0 prints the table and writes results.json."""
    args = ["-m", "gkdfast.cli", "distill", "--distributed", "--nodes", "500", "--seeds", "1", "--epochs", "12",
            "--student", "mlp:16", "--teacher", "gcn:16", "--methods", "glnn", "--quiet"]
    runs = {}
    for tag in ("plain", "killed"):
        out = str(tmp_path / tag)
        extra = {"GKDFAST_TEST_FAIL_ONCE_AT_EPOCH": "5",
                 "GKDFAST_TEST_FAIL_ONCE_MARKER": str(tmp_path / "marker")} if tag == "killed" else {}
        # Restarts beyond the one the hook causes absorb a gloo abort ("terminate called without an active
        # exception") that a restarted rank sometimes hits while the group re-forms on a loaded 2-core
        # machine; measured with the code of 2026-12-05 too (1 in about 6 runs beside a build).  Each
        # restart resumes from the checkpoint, so the comparison below is unchanged.  (Session 36 found
        # one cause of such aborts, a group that torch kept past destroy_process_group, fixed in
        # gkdfast.distributed.unpin_default_group; whether it was this one was not measured.)
        r = subprocess.run([*_torchrun(), "--standalone", "--nproc_per_node", str(WORLD), "--max-restarts", "3",
                            *args, "--out", out], capture_output=True, text=True, env=_env(**extra), cwd=ROOT,
                           timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.count("wrote ") == 1  # one rank reports
        with open(os.path.join(out, "results.json")) as f:
            runs[tag] = json.load(f)
    assert (tmp_path / "marker").exists()  # the failure happened
    assert [row["test_acc"] for row in runs["killed"]["rows"]] == [row["test_acc"] for row in runs["plain"]["rows"]]
