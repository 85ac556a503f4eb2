"""Cold Brew's isolation split: the lowest-degree nodes lose every edge, nothing else changes."""
import numpy as np
import pytest
import torch

from conftest import need_data
from gkdfast.data import csbm, isolation_split, load
from gkdfast.data.isolation import median_cuts


def _numpy_cuts(arr, cuts, low):
    """The reference's successive median cuts, written with NumPy (each cut on the kept values)."""
    idx = np.arange(arr.size)
    for _ in range(cuts):
        m = np.median(arr[idx])
        idx = np.where(arr <= m)[0] if low else np.where(arr >= m)[0]
    return idx


@pytest.mark.parametrize("cuts", [1, 2, 4, 5])
@pytest.mark.parametrize("low", [True, False])
def test_median_cuts_match_numpy(cuts, low):
    rng = np.random.default_rng(cuts)
    for _ in range(5):
        arr = rng.zipf(2.0, size=rng.integers(5, 300)).clip(max=200)
        got = median_cuts(torch.from_numpy(arr), cuts, low).nonzero().flatten().numpy()
        assert np.array_equal(got, _numpy_cuts(arr, cuts, low))
    with pytest.raises(ValueError, match="cuts must be >= 0"):
        median_cuts(torch.ones(3), -1)


@pytest.mark.parametrize("source", ["csbm", "cora"])
def test_isolated_nodes_lose_every_edge_and_nothing_else_changes(source):
    data = csbm(num_nodes=600, num_classes=3, seed=0) if source == "csbm" else \
        load(need_data("planetoid"), name="cora")
    before = data.graph.edge_index.clone()
    s = isolation_split(data)
    iso, tail, head = s.extras["isolated_mask"], s.extras["tail_mask"], s.extras["head_mask"]
    deg = torch.bincount(before[1], minlength=data.num_nodes)
    # the tail is ordered by degree: every isolated node is at most as connected as the rest of the tail
    assert iso.any() and tail.any() and int(deg[iso].max()) <= int(deg[tail].min())
    assert int(iso.sum()) == (int(iso.sum()) + int(tail.sum())) // 2
    assert not (iso & head).any() and not (iso & tail).any()
    ei = s.graph.edge_index
    off = ei[0] != ei[1]
    assert not (iso[ei[0][off]] | iso[ei[1][off]]).any()  # nothing but self-loops touches them
    touching = (iso[before[0]] | iso[before[1]]) & (before[0] != before[1])
    assert ei.size(1) == before.size(1) - int(touching.sum())  # exactly those edges removed
    assert torch.equal(data.graph.edge_index, before)  # the input is untouched
    assert torch.equal(s.x, data.x) and torch.equal(s.test_mask, data.test_mask)
    assert s.extras.get("split") == data.extras.get("split")  # a per-seed split rule stays as it was
    if source == "cora":  # Cora's tail is every node of degree <= 2 (ties); its lower half is cut off
        assert int(iso.sum()) == 534 and s.graph.num_edges == data.graph.num_edges - 1040
