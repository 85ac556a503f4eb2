"""Forward + backward time of the all-pairs losses, one process vs P gloo processes on the CPU.

Each rank holds a near-equal row shard (gkdfast.distributed.shard_range) and calls the loss with
process_group=; the table shows the slowest rank's median time per step (every rank runs with
--threads threads) next to the single-process time on all rows, and checks that the distributed
value equals the single-process one.  On a shared machine the timings are noisy.

    python scripts/dist_losses_timing.py --nodes 4096 --dim 64 --ranks 2 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import gkdfast
from gkdfast.distributed import shard_range

LOSSES = {
    "gsp rbf/kl": lambda s, t, g: gkdfast.losses.gsp(s, t[:, :s.size(1)], "rbf", "kl", gamma=0.05, process_group=g),
    "gsp cosine/mse (Gram)": lambda s, t, g: gkdfast.losses.gsp(s, t, "cosine", "mse", process_group=g),
    "crd exact": lambda s, t, g: gkdfast.losses.crd(s, t, process_group=g),
    "crd K=64": lambda s, t, g: gkdfast.losses.crd(s, t, num_negatives=64, seed=0, process_group=g),
    "nt_xent": lambda s, t, g: gkdfast.losses.nt_xent(s, t, process_group=g),
}


def _data(n, d):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)


def _time(fn, s, t, group, repeats):
    times, value = [], None
    for _ in range(repeats):
        x = s.clone().requires_grad_()
        if group is not None:
            dist.barrier(group)
        t0 = time.perf_counter()
        loss = fn(x, t, group)
        loss.backward()
        times.append(time.perf_counter() - t0)
        value = float(loss.detach())
    return statistics.median(times), value


def _rank(rank, world, init, args, out):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    s, t = _data(args.nodes, args.dim)
    b, e = shard_range(args.nodes, world, rank)
    rows = []
    for name, fn in LOSSES.items():
        sec, value = _time(fn, s[b:e], t[b:e], dist.group.WORLD, args.repeats)
        worst = torch.tensor([sec])
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        rows.append(f"{name}\t{float(worst):.4f}\t{value!r}")
    if rank == 0:
        with open(out, "w") as f:
            f.write("\n".join(rows))
    dist.destroy_process_group()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4096)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    s, t = _data(args.nodes, args.dim)
    single = {name: _time(fn, s, t, None, args.repeats) for name, fn in LOSSES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.tsv")
        mp.spawn(_rank, args=(args.ranks, os.path.join(tmp, "init"), args, out), nprocs=args.ranks, join=True)
        with open(out) as f:
            dist_rows = [line.split("\t") for line in f.read().splitlines()]
    print(f"N={args.nodes} d={args.dim}, {args.threads} thread(s) per process, median of {args.repeats} "
          f"forward+backward steps")
    print(f"{'loss':24s} {'1 process s':>12s} {f'{args.ranks} ranks s':>12s} {'speed-up':>9s}  same value")
    all_same = True
    for name, sec, value in dist_rows:
        s1, v1 = single[name]
        same = abs(float(value) - v1) <= 1e-5 * max(1.0, abs(v1))
        all_same &= same
        print(f"{name:24s} {s1:12.4f} {float(sec):12.4f} {s1 / float(sec):8.2f}x  {same}")
    return all_same


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
