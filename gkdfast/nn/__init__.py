"""PyG-like layers and models built on gkdfast ops (:func:`gkdfast.spmm`, :func:`gkdfast.sddmm`,
:func:`gkdfast.edge_softmax`).

Layers take ``forward(x, graph)`` with a :class:`gkdfast.Graph`; models take
``forward(x, graph=None, return_hidden=False)``.

Example:
    >>> import torch, gkdfast
    >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
    >>> model = gkdfast.nn.build_model("gcn", 8, 16, 3)
    >>> logits, hidden = model(torch.randn(3, 8), g, return_hidden=True)
"""
from gkdfast.nn.gat_conv import GATConv
from gkdfast.nn.gcn_conv import GCNConv
from gkdfast.nn.gcnii import GCNII
from gkdfast.nn.gin_conv import GINConv
from gkdfast.nn.graphmlp_encoder import GraphMLPEncoder
from gkdfast.nn.layerwise import layerwise_inference
from gkdfast.nn.philox_dropout import Dropout
from gkdfast.nn.models import GAT, GCN, GIN, MLP, SAGE, build_model, model_names
from gkdfast.nn.projection import ProjectionHead
from gkdfast.nn.sage_conv import SAGEConv
from gkdfast.nn.se_gcn import SEGCN

__all__ = ["GCNConv", "SAGEConv", "GINConv", "GATConv", "GCN", "SAGE", "GAT", "GIN", "MLP", "GraphMLPEncoder", "SEGCN",
           "GCNII", "ProjectionHead", "Dropout", "build_model", "model_names", "layerwise_inference"]
