"""Graph condensation (GCond, ICLR 2022; DosCond's one-step matching, KDD 2022): a tiny synthetic graph
that trains a GCN almost as well as the real one.

Example:
    >>> from gkdfast.data import csbm
    >>> from gkdfast.condense import condense, published_config
    >>> g = condense(csbm(num_nodes=200, num_classes=2, feature_dim=4), 0.05, config=published_config(epochs=1))
    >>> g.num_nodes
    10
"""
from gkdfast.condense.backbone import Backbone, dense_gcn_norm, propagate_features
from gkdfast.condense.condenser import CondenseConfig, condense, prepare_features, published_config
from gkdfast.condense.evaluate import EvalResult, train_and_test
from gkdfast.condense.experiment import run_condense
from gkdfast.condense.graph import CondensedGraph, load_condensed
from gkdfast.condense.matching import gradient_distance
from gkdfast.condense.pge import PGE
from gkdfast.condense.synthetic import class_counts, synthetic_size

__all__ = ["condense", "CondenseConfig", "published_config", "prepare_features", "CondensedGraph", "load_condensed",
           "PGE", "Backbone", "dense_gcn_norm", "propagate_features", "gradient_distance", "class_counts",
           "synthetic_size", "train_and_test", "EvalResult", "run_condense"]
