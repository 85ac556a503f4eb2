"""The positions file of the out-of-core pipeline (gkdfast.distill.large_positions): joined rows,
the key, and the data-parallel protocol (the first rank computes, the others poll for the file or for
the first rank's error) with a stand-in process group."""
import os

import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill import large_positions as lp

SETTINGS = dict(dim=4, walk_length=5, walks_per_node=1, window=2, negative=2, lr=0.1, seed=0)


class _Group:
    """The three Dist methods position_inputs uses, for one rank of a pretend group."""

    def __init__(self, main):
        self.is_main, self.barriers = main, 0

    def broadcast_object(self, obj):
        return obj

    def barrier(self):
        self.barriers += 1


def _data():
    return csbm(num_nodes=120, num_classes=2, feature_dim=6, seed=0)


def test_joined_rows_and_key(tmp_path):
    data = _data()
    path = lp.positions_path(data, str(tmp_path), SETTINGS)
    x, computed = lp.position_inputs(data, path, SETTINGS)
    assert computed and x.shape == (120, 10) and torch.equal(x[:, :6], data.x) and torch.isfinite(x).all()
    again, computed = lp.position_inputs(data, path, SETTINGS)
    assert not computed and torch.equal(again, x)
    assert lp.positions_path(data, str(tmp_path), {**SETTINGS, "seed": 1}) != path
    other = csbm(num_nodes=120, num_classes=2, feature_dim=6, seed=1)
    assert lp.positions_path(other, str(tmp_path), SETTINGS) != path
    assert sorted(os.listdir(os.path.dirname(path))) == ["inputs.f32", "meta.json"]


def test_other_ranks_stop_with_the_first_ranks_error(tmp_path):
    data = _data()
    path = lp.positions_path(data, str(tmp_path), SETTINGS)
    os.makedirs(os.path.dirname(path))
    with open(os.path.join(os.path.dirname(path), "error.txt"), "w") as fh:
        fh.write("MemoryError: out of memory")
    with pytest.raises(RuntimeError, match="the first rank failed computing .*MemoryError: out of memory"):
        lp.position_inputs(data, path, SETTINGS, group=_Group(main=False))


def test_the_first_rank_leaves_its_error_and_removes_a_stale_one(tmp_path, monkeypatch):
    data = _data()
    path = lp.positions_path(data, str(tmp_path), SETTINGS)
    error = os.path.join(os.path.dirname(path), "error.txt")

    def fail(*a, **k):
        raise MemoryError("no room for the embeddings")

    monkeypatch.setattr("gkdfast.distill.positional.streaming_deepwalk", fail)
    with pytest.raises(MemoryError):
        lp.position_inputs(data, path, SETTINGS, group=_Group(main=True))
    assert open(error).read() == "MemoryError: no room for the embeddings"
    monkeypatch.undo()
    group = _Group(main=True)
    x, computed = lp.position_inputs(data, path, SETTINGS, group=group)
    assert computed and x.shape == (120, 10) and not os.path.exists(error) and group.barriers == 2


def test_a_rank_that_cannot_see_the_file_says_so(tmp_path):
    data = _data()
    path = lp.positions_path(data, str(tmp_path), SETTINGS)

    class Done(_Group):  # the first rank says it is computed, but this rank's folder has nothing
        def broadcast_object(self, obj):
            return False

    with pytest.raises(FileNotFoundError, match="every rank must see the cache folder"):
        lp.position_inputs(data, path, SETTINGS, group=Done(main=False))
