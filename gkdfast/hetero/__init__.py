"""Heterogeneous graphs: :class:`HeteroGraph`, readers (HeCo and MAGNN layouts), R-GCN / HAN
(:mod:`gkdfast.hetero.models`) and HGT (:mod:`gkdfast.hetero.hgt`) models and the HIRE distillation recipe.

Example:
    >>> from gkdfast.hetero import HeteroGraph
    >>> HeteroGraph.toy().num_classes
    2
"""
from gkdfast.hetero.graph import HeteroGraph, compose_metapath, relation_spmm
from gkdfast.hetero.hgt import HGT
from gkdfast.hetero.models import HAN, RGCN

__all__ = ["HeteroGraph", "compose_metapath", "relation_spmm", "RGCN", "HAN", "HGT"]
