"""Worker bodies for tests/test_distributed_train.py, run in spawned gloo processes (a module of its
own so ``torch.multiprocessing`` can import them in the children)."""
from __future__ import annotations

import dataclasses
import datetime
import os

import torch

from _spawn_ranks import assert_group_released


def exact_problem():
    """A small float64 problem where 2-rank DDP must equal one process: GLNN-style pure logit KD
    (no label term, whose per-rank mean over labelled rows would weigh ranks unequally), no dropout,
    a pool of 120 rows and a global batch of 40 (both multiples of 2), fixed teacher logits."""
    from gkdfast.data import csbm
    from gkdfast.distill import TeacherOutputs, terms

    data = csbm(num_nodes=120, num_classes=3, seed=0)
    data = dataclasses.replace(data, x=data.x.double())
    g = torch.Generator().manual_seed(1)
    teacher = TeacherOutputs(torch.randn(120, 3, generator=g, dtype=torch.float64))
    return data, teacher, [terms.CrossEntropy(0.0), terms.LogitKD(1.0, temperature=2.0)]


def make_student(in_dim: int):
    from gkdfast.nn import MLP

    torch.manual_seed(0)
    return MLP(in_dim, 16, 3, num_layers=2, dropout=0.0).double()


def fit_exact(distributed, checkpoint_dir=None, epochs=6):
    """Trains the exact problem; returns (state_dict, FitResult)."""
    from gkdfast.distill import Distiller

    data, teacher, loss_terms = exact_problem()
    student = make_student(data.x.size(1))
    d = Distiller(student, loss_terms, teacher, lr=0.01, weight_decay=5e-4, epochs=epochs, patience=None,
                  batch_size=40, seed=3, distributed=distributed, checkpoint_dir=checkpoint_dir)
    res = d.fit(data, data.x)
    return {k: v.detach().clone() for k, v in student.state_dict().items()}, res


BATCH_ROWS: list = []  # fit_all_pairs("gsp-separate"): rows of each step's GSP call in this process


def fit_peer_group(distributed, graph_students: bool):
    """The exact problem with a student made of three peers (FreeKD's / OAD's PeerGroup), whose
    validation score is its best peer's accuracy.  Returns each epoch's validation accuracy, the
    best epoch and the final weights."""
    from gkdfast.distill import Distiller
    from gkdfast.distill.recipes.peers import PeerGroup
    from gkdfast.nn import GCN, MLP

    data, teacher, loss_terms = exact_problem()
    torch.manual_seed(0)
    cls = GCN if graph_students else MLP
    group = PeerGroup([cls(data.x.size(1), 4 + 4 * i, 3, num_layers=2, dropout=0.0).double() for i in range(3)])
    res = Distiller(group, loss_terms, teacher, lr=0.05, epochs=8, patience=None, batch_size=40, seed=3,
                    distributed=distributed).fit(data, data.x)
    return [h["val_acc"] for h in res.history], res.best_epoch, \
        {k: v.detach().clone() for k, v in group.state_dict().items()}


def fit_all_pairs(distributed, which: str):
    """The exact problem with an all-pairs term beside its logit KD (``"ncontrast"``: Graph-MLP's
    neighbour contrast on the student's hidden layer, the whole graph's Â² restricted to each batch;
    ``"gsp"``: GSP against fixed teacher embeddings, every batch row, no projection heads;
    ``"ncontrast-labelled_first"``: NContrast and a label term on Graph-MLP's batches).  Every
    rank computes the global batch's loss; DDP must still give the single-process gradient of it.
    Returns (state_dict, FitResult)."""
    from gkdfast.distill import Distiller, TeacherOutputs, terms

    data, teacher, loss_terms = exact_problem()
    g = torch.Generator().manual_seed(2)
    teacher = TeacherOutputs(teacher.logits, torch.randn(120, 5, generator=g, dtype=torch.float64))
    kw = dict(batch_size=40)
    if which == "ce-uneven":
        # no pair term: a label term whose rows fall unevenly on the ranks (the 60 training nodes in a
        # random order) and soft labels on 118 observed rows (last batches of 19 + 19 rows)
        observed = torch.ones(120, dtype=torch.bool)
        observed[[7, 50]] = False
        student = make_student(data.x.size(1))
        d = Distiller(student, [terms.CrossEntropy(0.7), loss_terms[1]], teacher, lr=0.01, epochs=3, patience=None,
                      seed=3, distributed=distributed, batch_size=40, observed=observed)
        res = d.fit(data, data.x)
        return {k: v.detach().clone() for k, v in student.state_dict().items()}, res
    if which in ("lsp-gcn", "lsp-mlp", "lsp-neighbours"):
        # LSP over the global batch's edges: a GNN student from every rank's full-graph forward, a
        # graph-free one from the batch rows gathered from the ranks; on neighbourhood batches each
        # rank expands its own shard and the mean is over the global batch's centres
        from gkdfast.nn import GCN

        torch.manual_seed(0)
        student = GCN(data.x.size(1), 16, 3, dropout=0.0).double() if which == "lsp-gcn" else \
            make_student(data.x.size(1))
        d = Distiller(student, loss_terms + [terms.LSP(1.0, kernel="rbf", gamma=0.5)], teacher, lr=0.01, epochs=3,
                      patience=None, seed=3, distributed=distributed, batch_size=40,
                      batch_edges="neighbours" if which == "lsp-neighbours" else "induced")
        res = d.fit(data, data.x)
        return {k: v.detach().clone() for k, v in student.state_dict().items()}, res
    if which in ("gsp", "gsp-separate"):
        term = terms.GSP(1.0, proj_dim=None, max_samples=None)
    elif which == "rsd":  # NOSMOG's term, with its learned map (a head DDP averages with the student)
        term = terms.RSD(1.0)
    else:
        term = terms.NContrast(1.0, tau=0.5, hops=2)
    if which == "ncontrast-labelled_first":
        # Graph-MLP's batches: the 60 training nodes, then 20 drawn; each rank takes every other
        # position (30 labelled rows each), so the ranks' mean cross-entropies average to the batch's
        kw = dict(batch_size=80, batching="labelled_first")
        loss_terms = [terms.CrossEntropy(0.5)] + loss_terms[1:]
    if which == "gsp-separate":
        # GLNN's reference schedule: a pass over the 60 training nodes (one global batch of 40, the
        # remainder dropped), then 3 batches of the pool with the KD and GSP terms; each rank every
        # other row of each global batch
        kw = dict(batch_size=40, passes="separate")
        loss_terms = [terms.CrossEntropy(0.5)] + loss_terms[1:]
    if which == "gsp-separate":  # the rows each step of this process sees (its shard under DDP)
        real, BATCH_ROWS[:] = term.forward, []
        term.forward = lambda ctx: (BATCH_ROWS.append(int(ctx.hidden.size(0))), real(ctx))[1]
    student = make_student(data.x.size(1))
    d = Distiller(student, loss_terms + [term], teacher, lr=0.01, epochs=3, patience=None, seed=3,
                  distributed=distributed, **kw)
    res = d.fit(data, data.x)  # RSD's map is built in fit, in the student's float64
    return {k: v.detach().clone() for k, v in student.state_dict().items()}, res


def fit_with_rank_cadence(rank: int, checkpoint_dir: str, epochs: int = 10) -> list:
    """Trains the exact problem under DDP with a fake-clock cadence per rank: on rank 0 every save
    "takes" 1 s and the next is due 4 s later (epochs 1, 5, 9, then the last), on the other ranks every
    epoch is due.  Returns the epochs this rank took part in saving."""
    import gkdfast.distill.distiller as distiller_mod
    from gkdfast.distill import Distiller
    from gkdfast.distill.checkpoint_cadence import CheckpointCadence

    class Clock:
        def __init__(self):
            self.t = 0.0

        def __call__(self):
            self.t += 1.0
            return self.t

    class RankCadence(CheckpointCadence):
        def __init__(self, overhead):
            super().__init__(0.25 if rank == 0 else None, clock=Clock())

    written = []
    real_cadence, real_save = distiller_mod.CheckpointCadence, Distiller._save

    def save(self, state, ddp=None):
        written.append(state["epoch"])
        real_save(self, state, ddp)

    distiller_mod.CheckpointCadence, Distiller._save = RankCadence, save
    try:
        fit_exact("auto", checkpoint_dir=checkpoint_dir, epochs=epochs)
    finally:
        distiller_mod.CheckpointCadence, Distiller._save = real_cadence, real_save
    return written


def few_rows_step(rank: int) -> list:
    """GSP's and CRD's values on a step where this rank holds ``1`` (rank 0) or ``3`` observed rows."""
    import torch.distributed as dist

    from gkdfast.distill import terms

    rows = 1 if rank == 0 else 3
    g = torch.Generator().manual_seed(rank)
    ctx = terms.StepContext(nodes=torch.arange(rows), logits=torch.randn(rows, 2, generator=g),
                            hidden=torch.randn(rows, 3, generator=g, requires_grad=True), teacher_logits=None,
                            teacher_hidden=torch.randn(rows, 3, generator=g), y=torch.zeros(rows, dtype=torch.long),
                            labelled=torch.zeros(rows, dtype=torch.bool), observed=torch.ones(rows, dtype=torch.bool),
                            inputs=None, forward=None, full_batch=False, process_group=dist.group.WORLD)
    out = []
    for term in (terms.GSP(1.0, proj_dim=4, max_samples=None), terms.CRD(1.0, proj_dim=4, max_samples=None)):
        term.setup(terms.Dims(student_hidden=3, teacher_hidden=3, num_classes=2))
        out.append(float(term(ctx).detach()))
    return out


def _init(rank: int, world: int, init_file: str):
    import torch.distributed as dist

    torch.set_num_threads(1)
    # a collective one rank never reaches fails after 5 minutes instead of hanging the suite
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))


def worker(rank: int, world: int, init_file: str, out_dir: str):
    """Runs every distributed check of the test file on one rank; writes ``rank<r>.pt`` results."""
    import torch.distributed as dist

    from gkdfast.data import csbm
    from gkdfast.distill import Distiller, teacher_outputs, terms
    from gkdfast.nn import MLP, SAGE

    _init(rank, world, init_file)
    results = {}
    # 1. exactness: DDP over the ranks vs the same global batches in one process (the parent).
    weights, res = fit_exact("auto", checkpoint_dir=os.path.join(out_dir, "ckpt"))
    results["weights"] = weights
    results["val_acc"] = [h["val_acc"] for h in res.history]
    results["loss"] = [h["loss"] for h in res.history]
    results["best_epoch"] = res.best_epoch
    # 1a. all-pairs terms: the global batch's loss on every rank, the single-process gradient
    for which in ("ncontrast", "gsp", "rsd", "ncontrast-labelled_first", "ce-uneven", "lsp-gcn", "lsp-mlp",
                  "lsp-neighbours", "gsp-separate"):
        results[f"pairs_{which}"] = fit_all_pairs("auto", which)[0]
    results["separate_rows"] = list(BATCH_ROWS)
    # 1a''. a student of peers scores its best peer over every rank's validation rows
    results["peers_mlp"] = fit_peer_group("auto", False)
    results["peers_gcn"] = fit_peer_group("auto", True)
    # 1a'. a step where rank 0 holds one row and rank 1 three: both skip the all-pairs terms alike (a
    # rank returning early alone would leave the other in the loss's collective)
    results["few_rows"] = few_rows_step(rank)
    # 1b. BatchNorm + dropout + a label term, odd pool (padding): not equal to one process, but the
    # final weights and running statistics must be identical on every rank.
    data_bn, teacher_bn, _ = exact_problem()
    torch.manual_seed(rank)  # different RNG per rank: DDP must still end with one set of weights
    bn = MLP(data_bn.x.size(1), 16, 3, dropout=0.5, batch_norm=True).double()
    observed = torch.ones(120, dtype=torch.bool)
    observed[-1] = False  # 119 rows: not a multiple of 2
    res_bn = Distiller(bn, [terms.CrossEntropy(0.5), terms.LogitKD(0.5)], teacher_bn, epochs=4, patience=None,
                       batch_size=32, observed=observed).fit(data_bn, data_bn.x)
    results["bn_weights"] = {k: v.detach().clone() for k, v in bn.state_dict().items()}
    results["bn_history"] = res_bn.history
    # 1c. mixed precision under DDP: float16 with its GradScaler and a GSP head (all-pairs term), float32
    # weights; the ranks must end with one set of weights and one scaler state.
    data_amp = dataclasses.replace(data_bn, x=data_bn.x.float())
    teacher_amp = dataclasses.replace(teacher_bn, logits=teacher_bn.logits.float(),
                                      hidden=torch.randn(120, 6, generator=torch.Generator().manual_seed(2)))
    torch.manual_seed(0)
    amp = MLP(data_amp.x.size(1), 16, 3, dropout=0.0)
    res_amp = Distiller(amp, [terms.CrossEntropy(0.5), terms.LogitKD(0.5), terms.GSP(1.0, proj_dim=4)], teacher_amp,
                        epochs=4, patience=None, batch_size=40, autocast="fp16",
                        checkpoint_dir=os.path.join(out_dir, "ckpt-amp")).fit(data_amp, data_amp.x)
    results["amp_weights"] = {k: v.detach().clone() for k, v in amp.state_dict().items()}
    results["amp_history"] = res_amp.history
    results["amp_scaler"] = torch.load(os.path.join(out_dir, "ckpt-amp", "checkpoint.pt"), weights_only=True)["scaler"]
    # 2. sharded teacher inference into a shared cache: a graph-free and a graph teacher.
    data = csbm(num_nodes=101, num_classes=3, seed=0)  # 101 rows: ranks get unequal row ranges
    torch.manual_seed(0)
    mlp, sage = MLP(data.num_features, 8, 3), SAGE(data.num_features, 8, 3)
    cache = os.path.join(out_dir, "cache")
    for name, model in (("mlp", mlp), ("sage", sage)):
        out = teacher_outputs(model, data.x, data.graph, cache_dir=cache)
        again = teacher_outputs(model, data.x, data.graph, cache_dir=cache)
        results[f"teacher_{name}"] = (out.logits.clone(), out.hidden.clone(), out.cached, again.cached,
                                      {k: v.clone() for k, v in model.state_dict().items()})
    # 3. an all-pairs term: an error until its loss accepts process_group=, a run afterwards.
    gsp_term = terms.GSP(1.0, proj_dim=8, max_samples=None)
    try:
        torch.manual_seed(0)
        Distiller(MLP(data.num_features, 8, 3), [terms.CrossEntropy(1.0), gsp_term],
                  teacher_outputs(sage, data.x, data.graph, distributed=False), epochs=2, patience=None).fit(data)
        results["gsp"] = "ran"
    except ValueError as exc:
        results["gsp"] = str(exc)
    # 3b. a student with its own regularization() (SE-GCN) cannot be data-parallel: a clear error on
    # every rank before any collective.
    from gkdfast.nn import SEGCN

    try:
        Distiller(SEGCN(data.num_features, 8, 3, num_nodes=101, se_reg=1.0), [terms.CrossEntropy(1.0)],
                  epochs=1, patience=None).fit(data)
        results["regularized"] = "ran"
    except ValueError as exc:
        results["regularized"] = str(exc)
    # 3c. GLNN's reference two-pass schedule and Graph-MLP's batches run sharded (each global batch's
    # rows spread over the ranks)
    for key, kw in (("passes", dict(passes="separate", batch_size=32)),
                    ("batching", dict(batching="labelled_first", batch_size=64))):
        try:
            Distiller(MLP(data.num_features, 8, 3), [terms.CrossEntropy(1.0)], epochs=1, patience=None, **kw).fit(data)
            results[key] = "ran"
        except ValueError as exc:
            results[key] = str(exc)
    # 4. checkpoint cadence: the ranks' cadences disagree (rank 0 spaces slow saves, rank 1 would
    # write every epoch); rank 0's decision must hold on both, or the save's collectives hang.
    results["cadence_written"] = fit_with_rank_cadence(rank, os.path.join(out_dir, "ckpt-cadence"))
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    assert_group_released(rank)
