"""The CPU gives the same bits for any thread count and from run to run (README, "Determinism"), also
where the Python around the kernels reduces or gathers: scalar losses over more than 32,768 rows (torch
splits such a sum across its threads) and gradients of repeated rows (``t[idx]``'s backward added them
with atomics on several threads: ``topk_similar``'s keys, ``gsp(nodes=)`` with repeats)."""
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = r"""
import sys, torch, gkdfast
from gkdfast import losses
threads, out = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
n = 40_000  # above torch's 32,768-element grain
s, t = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
ei = torch.randint(0, n, (2, 160_000), generator=g)
graph = gkdfast.Graph(ei, n)
nodes = torch.randint(-3_000, 3_000, (6_000,), generator=g)  # repeats, and negative ids (counted from the end)

def grads(fn, *xs):
    xs = [x.clone().requires_grad_() for x in xs]
    value = fn(*xs)
    return [value.detach()] + list(torch.autograd.grad(value, xs))

def keys_grad(q, k):
    return gkdfast.topk_similar(q, k, 16)[0].sum()

from gkdfast._rows import ordered_sum
values = torch.randn(100_000, generator=g)  # a plain float32 sum of these differs between 1 and 2 threads
res = {
    "ordered_sum": [ordered_sum(values)],
    "lsp_sum_f64": grads(lambda a: losses.lsp(graph, a, t.double(), kernel="rbf", gamma=0.5, reduction="sum"),
                         s.double()),
    "crd_sampled": grads(lambda a: losses.crd(a, t, num_negatives=8, seed=1), s),
    "lsp": grads(lambda a: losses.lsp(graph, a, t, kernel="rbf", gamma=0.5), s),
    "gsp_nodes": grads(lambda a: losses.gsp(a, t[:3_000], kernel="rbf", nodes=nodes), s[:3_000]),
}
res["topk_keys"] = [grads(keys_grad, s[:2_000], s[:4_000]) for _ in range(3)]  # repeats within the run
torch.save(res, out)
"""


def _run(threads, path):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", _PROBE, str(threads), str(path)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return torch.load(path)


def test_losses_and_gathers_give_the_same_bits_on_one_and_two_threads(tmp_path):
    one, two = _run(1, tmp_path / "one.pt"), _run(2, tmp_path / "two.pt")
    for name in ("ordered_sum", "lsp_sum_f64", "crd_sampled", "lsp", "gsp_nodes"):
        for a, b in zip(one[name], two[name]):
            assert torch.equal(a, b), name
    for run in (one, two):  # run to run inside one process, and across the thread counts
        for rep in run["topk_keys"]:
            for a, b in zip(rep, one["topk_keys"][0]):
                assert torch.equal(a, b), "topk_similar keys gradient"
