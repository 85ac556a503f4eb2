"""Neighbour-sampled mini-batch training (GraphSAGE-style) for graphs too large for full-batch.

* :func:`sample_neighbors` — the native, seeded, deterministic uniform sampler (one hop);
* :func:`sample_blocks` / :class:`Block` — multi-hop blocks with local relabelling;
* :class:`NeighborLoader` — mini-batches of seed nodes (``n_id``, blocks, seed count);
* :func:`fit_sampled` / :func:`predict_sampled` — train / infer a gkdfast.nn model on them
  (``model.forward_blocks``).
"""
from gkdfast.sampling.blocks import Block, NodeMap, full_in_degree, sample_blocks
from gkdfast.sampling.loader import Batch, NeighborLoader, mix_seed
from gkdfast.sampling.sampler import sample_neighbors
from gkdfast.sampling.train import fit_sampled, gather_rows, predict_sampled

__all__ = ["sample_neighbors", "sample_blocks", "Block", "NodeMap", "full_in_degree", "NeighborLoader", "Batch",
           "mix_seed", "fit_sampled", "predict_sampled", "gather_rows"]
