"""Worker bodies for tests/test_distributed_large.py, run in spawned gloo processes (a module of its
own so ``torch.multiprocessing`` can import them in the children)."""
from __future__ import annotations

import os

import torch

from _spawn_ranks import assert_group_released


def problem():
    """A 301-node graph (row blocks of 37 do not divide it) with 60 training nodes (a multiple of 2)."""
    from gkdfast.data import csbm

    return csbm(num_nodes=301, num_classes=3, feature_dim=12, seed=1)


def models():
    """The teachers layer-wise inference runs (fixed weights, dropout 0 so sampled training is exact)."""
    from gkdfast.nn import GAT, GCN, MLP, SAGE

    torch.manual_seed(0)
    return {"gcn": GCN(12, 16, 3, dropout=0.0), "sage": SAGE(12, 16, 3, dropout=0.0),
            "gat": GAT(12, 8, 3, heads=2, dropout=0.0), "mlp1": MLP(12, 16, 3, num_layers=1, dropout=0.0)}


def fit_sampled_problem(distributed):
    """fit_sampled of a SAGE without dropout: 60 seeds, global batch 20 (both multiples of 2).
    Returns (weights, stats, seeds this process sampled: training and validation)."""
    from gkdfast.nn import SAGE
    from gkdfast.sampling import NeighborLoader, fit_sampled

    data = problem()
    torch.manual_seed(0)
    model = SAGE(12, 16, 3, dropout=0.0)
    sampled, real = [0], NeighborLoader.sample

    def counting(self, seeds, epoch=None):
        sampled[0] += seeds.numel()
        return real(self, seeds, epoch)

    NeighborLoader.sample = counting
    try:
        stats = fit_sampled(model, data, fanouts=(4, 3), batch_size=20, epochs=3, lr=0.01, seed=5, progress=False,
                            distributed=distributed)
    finally:
        NeighborLoader.sample = real
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, stats, sampled[0]


def fit_sampled_batch_norm_problem(distributed):
    """fit_sampled of a SAGE with BatchNorm: each rank's last step of an epoch updates the running
    statistics from its own rows.  Returns the weights and buffers."""
    from gkdfast.nn import SAGE
    from gkdfast.sampling import fit_sampled

    data = problem()
    torch.manual_seed(0)
    model = SAGE(12, 16, 3, dropout=0.0, batch_norm=True)
    fit_sampled(model, data, fanouts=(4, 3), batch_size=20, epochs=2, lr=0.01, seed=5, progress=False,
                distributed=distributed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


DISTIL_CASES = (("partition", "sampled"), ("labelled_first", "sampled"), ("partition", "neighbours"),
                ("labelled_first", "neighbours"))


def fit_sampled_distil_problem(distributed, batching="partition", edges="sampled"):
    """fit_sampled distilling a SAGE without dropout with a label term, KD and GSP's all-pairs term:
    300 seeds in global batches of 20, or labelled_first batches of 100 (60 training nodes first); with
    ``edges="neighbours"`` each step's seeds are centres whose in-neighbours join the batch, and LSP
    runs beside the other terms.  Returns the weights."""
    from gkdfast.distill import TeacherOutputs, terms
    from gkdfast.nn import SAGE
    from gkdfast.sampling import fit_sampled

    data = problem()
    torch.manual_seed(0)
    model = SAGE(12, 16, 3, dropout=0.0)
    g = torch.Generator().manual_seed(4)
    teacher = TeacherOutputs(torch.randn(301, 3, generator=g), torch.randn(301, 5, generator=g))
    fit_sampled(model, data, fanouts=(4, 3), batch_size=20 if batching == "partition" else 100, epochs=2, lr=0.01,
                seed=5, progress=False, terms=[terms.CrossEntropy(0.5), terms.LogitKD(1.0, temperature=2.0),
                                               terms.GSP(1.0, proj_dim=None, max_samples=None)]
                + ([terms.LSP(1.0)] if edges == "neighbours" else []),
                teacher=teacher, nodes=torch.arange(300), batching=batching, batch_edges=edges,
                distributed=distributed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker(rank: int, world: int, init_file: str, out_dir: str):
    """Runs every check of the test file on one rank; writes ``rank<r>.pt``."""
    import torch.distributed as dist

    from gkdfast.distill import teacher_outputs
    from gkdfast.distill.ddp import resolve
    from gkdfast.distill.large import distill_large
    from gkdfast.nn import layerwise_inference

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    group = resolve("auto")
    data = problem()
    results = {}
    # 1. layer-wise inference: the ranks share the row blocks of every layer through shared files
    for name, model in models().items():
        logits, hidden = layerwise_inference(model, data.x, data.graph, chunk_rows=37, progress=False,
                                             out_dir=os.path.join(out_dir, f"lw-{name}"), group=group)
        files = sorted(os.listdir(os.path.join(out_dir, f"lw-{name}")))
        results[f"lw_{name}"] = (logits.clone(), hidden.clone(), files)
        dist.barrier()
    # 2. the teacher cache through the layer-wise path
    out = teacher_outputs(models()["gcn"], data.x, data.graph, cache_dir=os.path.join(out_dir, "cache"),
                          chunk_rows=50)
    results["cache"] = (out.logits.clone(), out.hidden.clone(), out.cached)
    # 2b. ranks on different machines (torchrun's GROUP_RANK differs): each machine keeps its own layer
    # files and the machines exchange row blocks by messages
    os.environ["GROUP_RANK"] = str(rank)
    try:
        out = teacher_outputs(models()["gcn"], data.x, data.graph, cache_dir=os.path.join(out_dir, "cache-apart"),
                              chunk_rows=50)
        results["cache_apart"] = (out.logits.clone(), out.hidden.clone(), out.cached,
                                  sorted(os.listdir(os.path.join(out_dir, "cache-apart", "teachers", out.key))))
    finally:
        del os.environ["GROUP_RANK"]
    # 3. sampled teacher training, data-parallel
    results["fit"] = fit_sampled_problem("auto")
    results["fit_bn"] = fit_sampled_batch_norm_problem("auto")
    results["distil"] = {case: fit_sampled_distil_problem("auto", *case) for case in DISTIL_CASES}
    # 4. the whole pipeline: sampled teacher, layer-wise inference, students (GLNN, G-CRD's all-pairs term
    # across the ranks, LSP on each rank's neighbourhood batches, NOSMOG on the positions file rank 0
    # writes, and the baseline)
    res = distill_large(data, teacher="sage", hidden=16, fanouts=(4, 3), teacher_epochs=2, teacher_min_steps=4,
                        batch_size=64, chunk_rows=50, student_epochs=2, student_min_steps=6,
                        out_dir=os.path.join(out_dir, "large"), method=["glnn", "gcrd", "lsp", "nosmog"],
                        overrides={"nosmog.pos_dim": 4, "nosmog.walk_length": 5, "nosmog.adv_steps": 1},
                        progress=False)
    results["large"] = res
    # 5. the same with a GNN student: sampled batches data-parallel, layer-wise inference shared
    results["large_gnn"] = distill_large(data, teacher="sage", hidden=16, fanouts=(4, 3), teacher_epochs=2,
                                         teacher_min_steps=4, batch_size=64, chunk_rows=50, student="gcn",
                                         student_hidden=8, student_epochs=2, student_min_steps=6,
                                         out_dir=os.path.join(out_dir, "large"), method=["kd", "gsp", "lsp"],
                                         progress=False)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    assert_group_released(rank)


def apart_worker(rank: int, world: int, init_file: str, out_dir: str):
    """Three ranks on two "machines" (GROUP_RANK 0, 0, 1): layer-wise inference of every model, with
    the third rank's layer copies in a folder of its own, so only the block exchange can fill them."""
    import torch.distributed as dist

    from gkdfast.distill.ddp import resolve
    from gkdfast.nn import layerwise, layerwise_inference

    torch.set_num_threads(1)
    os.environ["GROUP_RANK"] = "0" if rank < 2 else "1"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    group = resolve("auto")
    data = problem()
    results = {"machines": group.machines(), "copies": []}
    # the second machine's leader records where its layer copies are and what is there at the end
    real_results = layerwise._Machines.results

    def spy(self, shapes):
        if self.mine != 0 and self.is_leader:
            results["copies"].append((self.folder, sorted(os.listdir(self.folder))))
        return real_results(self, shapes)

    layerwise._Machines.results = spy
    for i, (name, model) in enumerate(models().items()):
        folder = os.path.join(out_dir, f"lw-{name}")
        # every other model: the second machine keeps its copies on its "local disk"
        scratch = os.path.join(out_dir, f"scratch-machine{group.machines()[rank]}")
        if i % 2:
            os.environ["GKDFAST_SCRATCH"] = scratch
        logits, hidden = layerwise_inference(model, data.x, data.graph, chunk_rows=37, progress=False,
                                             out_dir=folder, group=group)
        os.environ.pop("GKDFAST_SCRATCH", None)
        results[name] = (logits.clone(), hidden.clone())
        del logits, hidden
        dist.barrier()
        results[name] += (sorted(os.listdir(folder)),
                          sorted(os.listdir(scratch)) if os.path.isdir(scratch) else None)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    assert_group_released(rank)
