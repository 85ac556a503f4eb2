"""What one spmm call costs on a small graph, where the fixed per-call work (checks, dispatch, autograd)
weighs as much as the kernel: the raw op without and with the transposed CSR (what a training step
passes), the public ``gkdfast.spmm`` forward, forward + backward, and torch's CSR product for scale.

Runner:  ``python benchmarks/spmm_call_cost.py [--data ROOT] [--name cora] [--dims 8 16 64] [--loops 9]
[--train-epochs 100] [--device cuda]``

``--train-epochs E`` also times whole full-batch training epochs of GCN(64), SAGE(64), GAT(8x8: 8
heads, attention dropout 0.6) and MLP(128) on the graph (Adam, dropout 0.5, cross-entropy on the training nodes): ms
per epoch, best of 5 runs of E epochs.

Pin it to one core for stable figures (``OMP_NUM_THREADS=1 taskset -c 1 python ...``): one thread, best
of ``--loops`` loops of ``--calls`` calls each, microseconds per call.  The graph is a Planetoid dataset
from ``--data`` (default: ``gkdfast.data.default_root()``/planetoid).  Quoted in docs/ops.md ("Cost")
and docs/spmm-perf.md (sessions 41, 42).  ``--device cuda`` times the same calls on a GPU (each loop
ends with a synchronisation; scripts/device_check.sh runs it), where a small graph's kernels take a few
microseconds and the per-call work is most of a call.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import torch

import gkdfast
from gkdfast.data import default_root, load
from gkdfast.ops import graph_tensors


def per_call_us(fn, calls: int, loops: int, sync=lambda: None) -> float:
    """Best of ``loops`` loops of ``calls`` calls, microseconds per call; ``sync`` waits for queued
    device work (torch.cuda.synchronize on a GPU) before each loop's clock starts and stops."""
    for _ in range(min(calls, 50)):
        fn()
    best = float("inf")
    for _ in range(loops):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(default_root(), "planetoid"), help="Planetoid folder")
    p.add_argument("--name", default="cora")
    p.add_argument("--dims", type=int, nargs="*", default=[8, 16, 64])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--loops", type=int, default=9)
    p.add_argument("--train-epochs", type=int, default=0,
                   help="also time GCN(64) / SAGE(64) / GAT(8x8) training epochs")
    p.add_argument("--device", default="cpu", help="cpu (one thread) or cuda")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("spmm_call_cost.py: --device cuda needs a visible GPU")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.set_num_threads(1)
    data = load(args.data, name=args.name).to(device)
    g = gkdfast.Graph(data.edge_index, num_nodes=data.num_nodes)
    with warnings.catch_warnings():  # torch's "sparse CSR is in beta" / invariant-check notes
        warnings.simplefilter("ignore")
        adj = torch.sparse_coo_tensor(data.edge_index.flip(0), torch.ones(data.edge_index.size(1), device=device),
                                      (data.num_nodes,) * 2).coalesce().to_sparse_csr()
    op = torch.ops.gkdfast.spmm.default
    plain, with_t = graph_tensors(g, False), graph_tensors(g, True)
    where = "one thread" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"{args.name}: {data.num_nodes} nodes, {g.num_edges} edges; {where}, best of {args.loops} x "
          f"{args.calls} calls, us per call")
    print(f"{'d':>4}  {'raw op':>8}  {'raw op + transpose':>18}  {'spmm fwd':>9}  {'spmm fwd+bwd':>12}  "
          f"{'torch CSR fwd':>13}")
    for d in args.dims:
        x = torch.randn(data.num_nodes, d, device=device)
        xg = x.clone().requires_grad_()

        def fwd_bwd():
            out = gkdfast.spmm(g, xg, "sum")
            out.backward(torch.ones_like(out))

        with torch.inference_mode():
            row = [per_call_us(lambda: op(*plain, None, x, "sum"), args.calls, args.loops, sync),
                   per_call_us(lambda: op(*with_t, None, x, "sum"), args.calls, args.loops, sync),
                   per_call_us(lambda: gkdfast.spmm(g, x, "sum"), args.calls, args.loops, sync)]
        row.append(per_call_us(fwd_bwd, max(args.calls // 2, 1), args.loops, sync))
        with torch.inference_mode():
            row.append(per_call_us(lambda: torch.sparse.mm(adj, x), args.calls, args.loops, sync))
        print(f"{d:>4}  {row[0]:>8.1f}  {row[1]:>18.1f}  {row[2]:>9.1f}  {row[3]:>12.1f}  {row[4]:>13.1f}")
    if args.train_epochs > 0:
        for name, ms in train_epoch_ms(data, g, args.train_epochs, sync).items():
            print(f"{name} training epoch (full batch): {ms:.3f} ms")


def train_epoch_ms(data, g, epochs: int, sync=lambda: None) -> dict:
    """ms per full-batch training epoch of GCN(64), SAGE(64), GAT(8x8: 8 heads of 8) and MLP(128) (a
    GLNN-style student), best of 5 runs of ``epochs``."""
    import torch.nn.functional as F

    from gkdfast.nn import GAT, GCN, MLP, SAGE

    x, y, train = data.x, data.y, data.train_mask
    classes = int(y.max()) + 1
    out = {}
    models = (("GCN(64)", lambda: GCN(x.size(1), 64, classes)), ("SAGE(64)", lambda: SAGE(x.size(1), 64, classes)),
              ("GAT(8x8)", lambda: GAT(x.size(1), 64, classes, heads=8, attn_dropout=0.6)),
              ("MLP(128)", lambda: MLP(x.size(1), 128, classes)))
    for name, make in models:
        torch.manual_seed(0)
        model = make().to(x.device)
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)

        def epoch():
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(x, g)[train], y[train]).backward()
            opt.step()

        out[name] = per_call_us(epoch, epochs, 5, sync) / 1e3
    return out


if __name__ == "__main__":
    main()
