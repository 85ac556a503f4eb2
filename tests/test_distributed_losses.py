"""gsp / crd / nt_xent / ncontrast with ``process_group=``: two gloo processes on the CPU, each with a
row shard (unequal sizes, an empty shard too), must give the single-process value on the
concatenated rows and, for their shard, the single-process gradient rows.

All checks run inside one spawn (process start-up dominates); each worker records mismatches
instead of asserting, so that a failing check cannot leave the other rank waiting in a collective,
and the parent asserts on what both ranks wrote.
"""
from __future__ import annotations

import datetime
import importlib
import os
import pathlib
import traceback

import pytest
import torch
import torch.distributed as dist

import gkdfast
from _spawn_ranks import assert_group_released, spawn_ranks
from gkdfast import distributed as gdist

WORLD = 2
N = 13


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)


def _graph():
    # ring plus chords; node 12 isolated (no positives) so P is a strict subset
    src = list(range(11)) + [0, 3, 6]
    dst = [(i + 1) % 11 for i in range(11)] + [5, 9, 2]
    ei = torch.tensor([src + dst, dst + src])
    return gkdfast.Graph(ei, num_nodes=N)


def _cases():
    """(name, shard sizes, dtype, indices of the inputs used, loss(inputs, group) -> scalar or rows)."""
    L = gkdfast.losses
    g = _graph()
    cases = []
    for dtype in (torch.float64, torch.float32):
        for split in ((5, 8), (13, 0)):
            cases += [
                ("gsp rbf/kl", split, dtype, (0, 1), lambda x, pg: L.gsp(x[0], x[1], "rbf", "kl", 0.7, 0.3,
                                                                     process_group=pg)),
                ("gsp cosine/mse", split, dtype, (0, 1), lambda x, pg: L.gsp(x[0], x[1], "cosine", "mse",
                                                                         process_group=pg)),
                ("gsp l2/mse", split, dtype, (0, 1), lambda x, pg: L.gsp(x[0], x[1], "l2", "mse", process_group=pg)),
                ("crd exact", split, dtype, (0, 2), lambda x, pg: L.crd(x[0], x[2], 0.5, process_group=pg)),
            ]
        split = (6, 7)
        cases += [
            ("gsp linear/mse", split, dtype, (0, 1),
             lambda x, pg: L.gsp(x[0], x[1], "linear", "mse", process_group=pg)),
            ("gsp laplace/kl", split, dtype, (0, 1), lambda x, pg: L.gsp(x[0], x[1], "laplace", "kl", 1.3, 0.2,
                                                                     process_group=pg)),
            ("rsd", split, dtype, (0, 1), lambda x, pg: L.rsd(x[0], x[1], process_group=pg)),
            ("gsp poly/mse nodes", split, dtype, (0, 1),
             lambda x, pg: L.gsp(x[0], x[1], "poly", "mse", nodes=torch.arange(0, x[0].size(0), 2),
                                 process_group=pg)),
            ("crd symmetric", split, dtype, (0, 2),
             lambda x, pg: L.crd(x[0], x[2], 0.5, symmetric=True, process_group=pg)),
            ("crd sampled", split, dtype, (0, 2), lambda x, pg: L.crd(x[0], x[2], 0.5, num_negatives=4, seed=11,
                                                                   process_group=pg)),
            ("crd sampled symmetric sum", split, dtype, (0, 2),
             lambda x, pg: L.crd(x[0], x[2], 0.5, num_negatives=3, seed=5, symmetric=True, reduction="sum",
                                 process_group=pg)),
            ("crd none", split, dtype, (0, 2),
             lambda x, pg: L.crd(x[0], x[2], 0.5, reduction="none", process_group=pg)),
            ("nt_xent", split, dtype, (0, 2), lambda x, pg: L.nt_xent(x[0], x[2], 0.4, process_group=pg)),
            ("nt_xent sum", (13, 0), dtype, (0, 2), lambda x, pg: L.nt_xent(x[0], x[2], 0.4, reduction="sum",
                                                                         process_group=pg)),
            ("ncontrast hops=2", split, dtype, (0,), lambda x, pg: L.ncontrast(g, x[0], 0.6, hops=2, process_group=pg)),
            ("ncontrast sampled", split, dtype, (0,), lambda x, pg: L.ncontrast(g, x[0], 0.6, num_negatives=4, seed=3,
                                                                             process_group=pg)),
            ("ncontrast sum (8, 5)", (8, 5), dtype, (0,),
             lambda x, pg: L.ncontrast(g, x[0], 0.6, hops=1, reduction="sum", process_group=pg)),
            ("ncontrast none", split, dtype, (0,),
             lambda x, pg: L.ncontrast(g, x[0], 0.6, hops=2, reduction="none", process_group=pg)),
        ]
        for split in ((6, 7), (13, 0), (2, 11)):  # mini-batches: each rank its shard of BATCH
            cases += [
                (f"ncontrast batch hops={h}", split, dtype, (0,),
                 lambda x, pg, h=h: L.ncontrast(g, x[0], 0.6, hops=h, nodes=_batch(x[0], pg), process_group=pg))
                for h in (1, 2, 3)
            ]
        split = (6, 7)
        cases += [
            ("ncontrast batch sampled", split, dtype, (0,),
             lambda x, pg: L.ncontrast(g, x[0], 0.6, hops=2, num_negatives=4, seed=3, nodes=_batch(x[0], pg),
                                       process_group=pg)),
            ("ncontrast batch sum", split, dtype, (0,),
             lambda x, pg: L.ncontrast(g, x[0], 0.6, hops=2, reduction="sum", nodes=_batch(x[0], pg),
                                       process_group=pg)),
            ("ncontrast batch none", split, dtype, (0,),
             lambda x, pg: L.ncontrast(g, x[0], 0.6, hops=2, reduction="none", nodes=_batch(x[0], pg),
                                       process_group=pg)),
            ("NContrast term, mini-batch", split, dtype, (0,), lambda x, pg: _ncontrast_term(g, x[0], pg)),
        ]
    return cases


# A global mini-batch of N positions over the graph's nodes: node 3 twice, the isolated node 12 twice
# (its two positions are each other's positives, through the self-loop), node 6 left out.
BATCH = torch.tensor([3, 12, 0, 5, 3, 7, 1, 9, 10, 2, 12, 4, 8])


def _batch(x, pg):
    """The node ids of the rows ``x`` holds: the whole BATCH in one process, this rank's shard under pg."""
    if pg is None:
        return BATCH
    counts = gdist.row_counts(x.size(0), pg)
    begin = sum(counts[:gdist.group_rank(pg)[0]])
    return BATCH[begin:begin + x.size(0)]


def _ncontrast_term(g, z, pg):
    """The Distiller's NContrast term on a mini-batch step (under pg: this rank's shard of the step)."""
    from gkdfast.distill.terms import NContrast, StepContext

    nodes = _batch(z, pg)
    ctx = StepContext(nodes=nodes, logits=z, hidden=z, teacher_logits=None, teacher_hidden=None,
                      y=torch.zeros_like(nodes), labelled=torch.zeros_like(nodes, dtype=torch.bool),
                      observed=torch.ones_like(nodes, dtype=torch.bool), inputs=z, forward=None, full_graph=g,
                      full_batch=False, process_group=pg)
    return NContrast(1.0, tau=0.6, hops=2)(ctx)


def _freekd_memory(x, rows, pg):
    """FreeKD's agent (two GNN peers, whose last forward covered all N nodes: ``x`` by node id) after
    one step on the batch ``rows`` (under pg: this rank's shard of it): its per-node memory of states
    and losses, which every rank must hold for every rank's rows (a node's next batch may fall on
    another rank)."""
    from gkdfast.distill.recipes.freekd import FreeKDAgent
    from gkdfast.distill.recipes.peers import PeerGroup
    from gkdfast.distill.terms import StepContext
    from gkdfast.nn import GCN

    peers = PeerGroup([GCN(6, 4, 3), GCN(6, 4, 3)])
    peers.last = [(x[0][:, :3], x[0]), (x[2][:, :3], x[2])]
    agent = FreeKDAgent(peers, structure_weight=0.0).bind(_graph(), "cpu")
    ones = torch.ones(rows.numel(), dtype=torch.bool)
    ctx = StepContext(nodes=rows, logits=x[0][rows, :3], hidden=x[0][rows], teacher_logits=None, teacher_hidden=None,
                      y=rows % 3, labelled=rows % 2 == 0, observed=ones, inputs=x[0], forward=None,
                      full_graph=_graph(), full_batch=False, process_group=pg)
    agent(ctx)
    return torch.cat([agent.prev_state.flatten(), agent.prev_ce.flatten(), agent.has_prev.to(x[0].dtype)])


def _inputs(dtype):
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(N, 6, generator=gen, dtype=dtype)
    t = torch.randn(N, 9, generator=gen, dtype=dtype)
    t2 = torch.randn(N, 6, generator=gen, dtype=dtype)  # crd / nt_xent partner (same width)
    return s, t, t2


def _check_all(rank: int, group) -> list:
    problems = []
    for name, split, dtype, used, fn in _cases():
        label = f"{name} {split} {dtype}"
        try:
            full = [x.clone().requires_grad_() for x in _inputs(dtype)]
            b = sum(split[:rank])
            e = b + split[rank]
            shard = [x.detach()[b:e].clone().requires_grad_() for x in full]
            want = fn(full, None)
            got = fn(shard, group)
            if want.dim() == 1:  # reduction="none": this rank's rows; differentiate the global sum
                _close(problems, label + " rows", got, want[b:e], dtype)
                want, got = want.sum(), gdist.all_reduce_sum(got.sum(), group)
            _close(problems, label + " value", got, want, dtype)
            gw = torch.autograd.grad(want, [full[k] for k in used])
            gg = torch.autograd.grad(got, [shard[k] for k in used])
            for k, a, w in zip(used, gg, gw):
                _close(problems, f"{label} grad[{k}]", a, w[b:e], dtype)
        except Exception:  # noqa: BLE001  (recorded, reported by the parent)
            problems.append(f"{label}: {traceback.format_exc()}")
    # FreeKD's agent: after a step on shards of one batch every rank holds the memory of all its rows
    try:
        x = _inputs(torch.float32)  # the agent's state and policy are float32
        batch = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:11]  # 2 nodes not in it
        b, e = gdist.shard_range(batch.numel(), WORLD, rank)
        want = _freekd_memory(x, batch, None)
        _close(problems, "freekd memory", _freekd_memory(x, batch[b:e], group), want, torch.float32)
    except Exception:  # noqa: BLE001
        problems.append(f"freekd memory: {traceback.format_exc()}")
    # inputs of other widths or dtypes on one rank: the same ValueError on both ranks (the collectives
    # aborted the process with a gloo size error, or, with widths swapped, computed garbage)
    L = gkdfast.losses
    gen = torch.Generator().manual_seed(rank)
    w6, w9 = torch.randn(4, 6, generator=gen, dtype=torch.float64), torch.randn(4, 9, generator=gen,
                                                                             dtype=torch.float64)
    swapped = (w6, w9) if rank == 0 else (w9, w6)
    other_width = torch.randn(4, 6 + rank, generator=gen, dtype=torch.float64)
    other_dtype = w6.float() if rank else w6
    for label, call in (("gsp rbf/kl swapped widths", lambda: L.gsp(*swapped, "rbf", "kl", process_group=group)),
                        ("gsp linear/mse swapped widths", lambda: L.gsp(*swapped, process_group=group)),
                        ("crd dtype", lambda: L.crd(other_dtype, other_dtype, process_group=group)),
                        ("nt_xent width", lambda: L.nt_xent(other_width, other_width, process_group=group)),
                        ("ncontrast width", lambda: L.ncontrast(_graph(), torch.randn(6 + rank * 7, 4 + rank,
                                                                                       dtype=torch.float64),
                                                                process_group=group))):
        try:
            call()
            problems.append(f"{label}: no error")
        except ValueError as err:
            if "different widths or dtypes" not in str(err):
                problems.append(f"{label}: {err}")
        except Exception:  # noqa: BLE001
            problems.append(f"{label}: {traceback.format_exc()}")
    problems += _check_second_derivatives(rank, group)
    # seed=None: every rank must use rank 0's draw, so the value is the same on both ranks
    s, _, t2 = _inputs(torch.float64)
    b, e = gdist.shard_range(N, WORLD, rank)
    v = gkdfast.losses.crd(s[b:e], t2[b:e], 0.5, num_negatives=3, process_group=group).reshape(1)
    both = [torch.empty_like(v) for _ in range(WORLD)]
    dist.all_gather(both, v, group=group)
    if both[0].item() != both[1].item():
        problems.append(f"crd seed=None differs across ranks: {both}")
    return problems


def _hvp(fn, x, t, v, pg):
    """``H v`` rows of ``fn(x, t)`` w.r.t. ``x``: the second backward goes through the first one."""
    x = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(x, t, pg), x, create_graph=True)
    return torch.autograd.grad((g * v).sum(), x)[0]


def _check_second_derivatives(rank: int, group) -> list:
    """Hessian-vector products through the row gather (the reference losses, which are twice
    differentiable): each rank's rows equal the single process's.  The gather's backward used an
    untracked all-reduce, which create_graph took for the identity: rows off by up to 40 %."""
    L = gkdfast.losses
    s, t, t2 = _inputs(torch.float64)
    v = torch.randn(s.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    b, e = 6 * rank, 6 + 7 * rank  # shards (6, 7)
    problems = []
    with gkdfast._backend.forced("reference"):
        for label, fn, partner in (
                ("gsp rbf/kl", lambda x, y, pg: L.gsp(x, y, "rbf", "kl", 0.7, 0.3, process_group=pg), t),
                ("gsp l2/mse", lambda x, y, pg: L.gsp(x, y, "l2", "mse", process_group=pg), t),
                ("crd", lambda x, y, pg: L.crd(x, y, 0.5, process_group=pg), t2),
                ("nt_xent", lambda x, y, pg: L.nt_xent(x, y, 0.4, process_group=pg), t2),
                ("ncontrast", lambda x, y, pg: L.ncontrast(_graph(), x, 0.6, hops=2, process_group=pg), t2)):
            try:
                want = _hvp(fn, s, partner, v, None)[b:e]
                _close(problems, f"{label} Hessian-vector product", _hvp(fn, s[b:e], partner[b:e], v[b:e], group),
                       want, torch.float64)
            except Exception:  # noqa: BLE001
                problems.append(f"{label} Hessian-vector product: {traceback.format_exc()}")
        try:  # the all-reduced Grams: refused in one line, not wrong
            _hvp(lambda x, y, pg: L.rsd(x, y, process_group=pg), s[b:e], t[b:e], v[b:e], group)
            problems.append("rsd second derivative with process_group: no error")
        except RuntimeError as err:
            if "not supported" not in str(err):
                problems.append(f"rsd second derivative: {err}")
    return problems


def _close(problems, label, got, want, dtype):
    try:
        if got is None:
            raise AssertionError("no gradient")
        torch.testing.assert_close(got.to(want.dtype), want, **_tol(dtype))
    except AssertionError as err:
        problems.append(f"{label}: {err}")


def _worker(rank: int, init_file: str, out_dir: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    try:
        problems = _check_all(rank, dist.group.WORLD)
    except Exception:  # noqa: BLE001
        problems = [traceback.format_exc()]
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write("\n".join(problems))
    dist.barrier()
    dist.destroy_process_group()
    assert_group_released(rank)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_gloo_ranks_match_the_single_process_losses(tmp_path):
    out = pathlib.Path(spawn_ranks(_worker, WORLD, str(tmp_path), lambda init, out: (init, out)))
    report = [(out / f"rank{r}.txt").read_text() for r in range(WORLD)]
    assert report == ["", ""], "\n\n".join(f"rank {r}:\n{t}" for r, t in enumerate(report) if t)


# ------------------------------------------------------------------------------ single-process parts
def test_shard_range_covers_the_rows_in_order():
    for n in (0, 1, 7, 13):
        for world in (1, 2, 3, 5):
            ranges = [gdist.shard_range(n, world, r) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [e - b for b, e in ranges]
            assert max(sizes) - min(sizes) <= 1


def test_shard_range_and_group_errors():
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        gdist.shard_range(5, 2, 2)
    with pytest.raises(TypeError, match="n must be an int"):
        gdist.shard_range(5.0, 2, 0)
    if not dist.is_initialized():
        s = torch.randn(4, 3)
        with pytest.raises(RuntimeError, match="init_process_group"):
            gkdfast.losses.crd(s, s, process_group=object())


def test_without_a_group_the_collectives_are_the_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gdist.all_gather_rows(x) is x and gdist.all_reduce_sum(x) is x
    assert gdist.row_counts(3) == [3] and gdist.broadcast_int(9) == 9 and gdist.group_rank(None) == (0, 1)


def test_timing_script_runs_and_agrees(capsys, monkeypatch):
    # importable by name: the spawned ranks unpickle its worker function by module name
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parent.parent / "scripts"))
    mod = importlib.import_module("dist_losses_timing")
    assert mod.main(["--nodes", "40", "--dim", "8", "--ranks", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "gsp rbf/kl" in out and "nt_xent" in out
