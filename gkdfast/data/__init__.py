"""Readers for real graph formats, synthetic generators and splits.

Every node-classification reader returns a :class:`GraphData` (graph, ``x`` float32 [N, F],
``y`` int64 [N] with ``-1`` = unlabelled, bool masks, ``num_classes``, ``name``, optional
``sensitive``).  Undirected data is stored with both directions of every edge, without duplicates
or self-loops.  See :func:`load` for the formats and each reader module for its exact rules.

Example:
    >>> from gkdfast.data import load, csbm, random_split, inductive_split
    >>> d = load("../shared/data/planetoid", name="cora")      # public split
    >>> s = inductive_split(csbm(), test_fraction=0.2, seed=0)     # GLNN inductive setting
"""
from gkdfast.data._root import default_root
from gkdfast.data._util import DataFormatError
from gkdfast.data.graphdata import GraphData
from gkdfast.data.dcsbm import dcsbm
from gkdfast.data.fairness import FAIRNESS_SETS, fairness_split, load_fairness
from gkdfast.data.geom_splits import geom_gcn_split, with_split_files
from gkdfast.data.loader import FORMATS, guess_format, load
from gkdfast.data.matlab import load_mat
from gkdfast.data.isolation import cold_start_masks, isolation_split
from gkdfast.data.missing import mask_missing
from gkdfast.data.mmap import load_mmap, save_mmap
from gkdfast.data.musae import load_musae
from gkdfast.data.npz import load_gnn_benchmark, load_npz_bundle, save_npz
from gkdfast.data.ogb import load_ogb
from gkdfast.data.planetoid import load_planetoid
from gkdfast.data.splits import InductiveSplit, cpf_split, fraction_split, inductive_split, random_split, subgraph
from gkdfast.data.synthetic import csbm, edge_homophily, power_law_graph
from gkdfast.data.tu import GraphDataset, TUGraph, load_tu
from gkdfast.data.graph_json import load_graph_json
from gkdfast.data.text_tables import parse_numbers, read_numbers

__all__ = [
    "default_root", "GraphData", "GraphDataset", "TUGraph", "DataFormatError", "FORMATS",
    "load", "guess_format", "save_npz", "save_mmap", "load_mmap",
    "load_fairness", "fairness_split", "FAIRNESS_SETS",
    "load_planetoid", "load_gnn_benchmark", "load_npz_bundle", "load_musae", "load_mat", "load_tu", "load_graph_json", "load_ogb",
    "random_split", "cpf_split", "fraction_split", "inductive_split", "geom_gcn_split", "with_split_files",
    "mask_missing", "InductiveSplit",
    "isolation_split",
    "cold_start_masks",
    "subgraph",
    "csbm", "dcsbm", "power_law_graph", "edge_homophily",
    "read_numbers", "parse_numbers",
]
