"""Ablation: NOSMOG's published (CPF) setting with the position features its own code computes
(gensim word2vec on DeepWalk walks) instead of gkdfast's, to tell whether the position features are
what separates our NOSMOG numbers from the paper's (docs/results-published.md, "NOSMOG: the gap").

gensim is not a gkdfast dependency: install it in a separate environment and point GENSIM_PYTHON at
that interpreter.  The word2vec part runs there (``--w2v`` mode); the rest runs gkdfast's CLI with
``position_features`` replaced, once per graph (NOSMOG's code computes the transductive embedding
once and reuses it for every seed).

As NOSMOG's position encoder: uniform random walks of ``walk_length`` nodes, ``walks_per_node``
rounds over the shuffled nodes, then ``Word2Vec(sg=1, hs=1, min_count=0, workers=1, window,
vector_size, epochs=ITER)`` with gensim's other defaults (negative=5, sample=1e-3, alpha=0.025).

Usage:
    python -m venv gs && gs/bin/pip install gensim
    GENSIM_PYTHON=gs/bin/python python scripts/ablation_gensim_positions.py ITER -- distill \\
        --protocol published --seeds 5 --device cpu --data DIR/gnn_benchmark_npz/cora.npz --methods nosmog --out OUT
(ITER: NOSMOG's dw_iter, 1 for Cora, 5 for CiteSeer.)  GENSIM_HS=0 trains with negative sampling
alone (``hs=0``), the ablation of the hierarchical softmax.
"""
import hashlib
import os
import random
import subprocess
import sys
import tempfile


def word2vec(edges_path, n, walk_length, num_walks, window, iters, dim, out, hs="1"):  # runs under GENSIM_PYTHON
    import numpy as np
    from gensim.models import Word2Vec

    n, walk_length, num_walks, window, iters, dim = map(int, (n, walk_length, num_walks, window, iters, dim))
    neighbours = [set() for _ in range(n)]
    for s, d in np.load(edges_path).T.tolist():
        if s != d:
            neighbours[s].add(d)
    neighbours = [sorted(x) for x in neighbours]
    random.seed(0)
    walks, nodes = [], list(range(n))
    for _ in range(num_walks):
        random.shuffle(nodes)
        for v in nodes:
            walk = [v]
            while len(walk) < walk_length and neighbours[walk[-1]]:
                walk.append(random.choice(neighbours[walk[-1]]))
            walks.append([str(x) for x in walk])
    model = Word2Vec(sentences=walks, vector_size=dim, window=window, min_count=0, sg=1, hs=int(hs), workers=1,
                     epochs=iters)
    np.save(out, np.stack([model.wv[str(i)] for i in range(n)]).astype(np.float32))


def main(argv):
    import numpy as np
    import torch

    import gkdfast.distill.positional as positional
    from gkdfast.cli import main as cli_main

    iters, rest = argv[0], argv[2:]
    python = os.environ["GENSIM_PYTHON"]
    folder = tempfile.mkdtemp(prefix="gensim-positions-")
    cache = {}

    def gensim_positions(graph, dim=64, walk_length=30, walks_per_node=5, window=5, negative=1.0, seed=0,
                         method="svd"):
        dst = torch.repeat_interleave(torch.arange(graph.num_nodes), graph.rowptr[1:] - graph.rowptr[:-1])
        edges = torch.stack([graph.col.long(), dst]).numpy()
        key = (hashlib.sha1(edges.tobytes()).hexdigest(), dim, walk_length, walks_per_node, window)
        if key not in cache:
            edges_path, out = os.path.join(folder, "edges.npy"), os.path.join(folder, "emb.npy")
            np.save(edges_path, edges)
            subprocess.run([python, os.path.abspath(__file__), "--w2v", edges_path, str(graph.num_nodes),
                            str(walk_length), str(walks_per_node), str(window), iters, str(dim), out,
                            os.environ.get("GENSIM_HS", "1")], check=True)
            cache[key] = torch.from_numpy(np.load(out))
        return cache[key]

    positional.position_features = gensim_positions
    return cli_main(rest)


if __name__ == "__main__":
    if sys.argv[1] == "--w2v":
        word2vec(*sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
