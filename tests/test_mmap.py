"""gkdfast.data.save_mmap / load_mmap: round trip, the arrays really are file-backed (no copy),
atomic writes, one-line errors for missing / corrupted members, and load() recognising the layout."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import gkdfast
from gkdfast.data import csbm, dcsbm, load, load_mmap, save_mmap
from gkdfast.data.loader import guess_format
from gkdfast.data.mmap import mapped_file


@pytest.fixture(scope="module")
def data():
    d = dcsbm(num_nodes=2000, avg_degree=12, num_classes=5, feature_dim=16, seed=4)
    d.sensitive = (d.y % 2).clone()
    return d


@pytest.fixture()
def saved(tmp_path, data):
    return save_mmap(data, tmp_path / "g")


def test_round_trip_equal_values(saved, data):
    back = load_mmap(saved)
    for k in ("x", "y", "train_mask", "val_mask", "test_mask", "sensitive"):
        assert torch.equal(getattr(back, k), getattr(data, k)), k
    assert torch.equal(back.graph.rowptr, data.graph.rowptr) and torch.equal(back.graph.col, data.graph.col)
    assert back.graph.index_dtype == torch.int32 and back.num_classes == 5 and back.name == "dcsbm"
    assert back.extras["generator"]["kind"] == "dcsbm" and back.extras["storage"] == "mmap"
    assert back.extras["edge_homophily"] == pytest.approx(data.extras["edge_homophily"])


def test_edge_weight_round_trip_in_csr_order(tmp_path):
    d = csbm(num_nodes=200, seed=1)
    ei = d.graph.edge_index
    w = torch.rand(ei.size(1))
    d.graph = gkdfast.Graph(ei.flip(0), d.num_nodes, w)  # a graph with a permutation (perm is not None)
    back = load_mmap(save_mmap(d, tmp_path / "w"))
    assert torch.equal(back.graph.edge_weight, d.graph.to_csr_order(w))
    assert torch.equal(back.graph.col, d.graph.col)


def test_arrays_are_file_backed_not_copied(saved):
    back = load_mmap(saved)
    for name, t in (("x", back.x), ("col", back.graph.col), ("rowptr", back.graph.rowptr), ("y", back.y),
                    ("train_mask", back.train_mask)):
        where = mapped_file(t)
        assert where is not None and where.endswith(os.path.join("g", name + ".npy")), (name, where)
    assert mapped_file(torch.arange(10)) is None


def test_copy_on_write_never_changes_the_files(saved, data):
    back = load_mmap(saved)
    back.x[0].fill_(123.0)  # copy-on-write: only this process sees it
    assert torch.equal(load_mmap(saved).x, data.x)
    ro = load_mmap(saved, mode="r")
    assert mapped_file(ro.x) is not None and torch.equal(ro.x[5:9], data.x[5:9])


def test_read_only_tensors_work_in_graph_ops_and_models(saved, data):
    ro = load_mmap(saved, mode="r")
    idx = torch.tensor([3, 1, 4, 1, 5])
    assert torch.equal(ro.x[idx], data.x[idx]) and mapped_file(ro.x[idx]) is None  # a gather, not a view
    out = gkdfast.spmm(ro.graph, ro.x)
    assert torch.allclose(out, gkdfast.spmm(data.graph, data.x))
    torch.manual_seed(0)
    sage = gkdfast.nn.SAGE(16, 8, 5)
    logits = sage(ro.x, ro.graph)
    logits.sum().backward()  # gradients flow to the weights; x needs none
    assert logits.shape == (2000, 5) and mapped_file(ro.x) is not None


def test_load_recognises_the_layout(saved):
    assert guess_format(saved)[0] == "mmap"
    assert guess_format(os.path.join(saved, "meta.json"))[0] == "mmap"
    assert load(saved).extras["storage"] == "mmap"
    assert load(saved, format="mmap").num_nodes == 2000


def test_atomic_write_and_overwrite(tmp_path, data):
    path = save_mmap(data, tmp_path / "g")
    with pytest.raises(FileExistsError, match="already exists"):
        save_mmap(data, path)
    small = csbm(num_nodes=100)
    save_mmap(small, path, overwrite=True)
    assert load_mmap(path).num_nodes == 100
    assert sorted(os.listdir(tmp_path)) == ["g"]  # no temporary or old directory left behind

    class Boom(Exception):
        pass

    bad = csbm(num_nodes=100)
    bad.x = _Exploding(bad.x, Boom)
    with pytest.raises(Boom):
        save_mmap(bad, tmp_path / "h")
    assert sorted(os.listdir(tmp_path)) == ["g"]  # a failed write leaves nothing


class _Exploding:
    """Stands in for x and fails half way through a write (after other members were written)."""

    def __init__(self, x, exc):
        self._x, self._exc = x, exc

    def detach(self):
        return self

    def cpu(self):
        return self

    def to(self, *a, **k):
        return self

    def contiguous(self):
        raise self._exc("killed")

    @property
    def shape(self):
        return self._x.shape

    def numpy(self):
        return self._x.numpy()


def _edit_meta(path, fn):
    mp = os.path.join(path, "meta.json")
    with open(mp) as f:
        meta = json.load(f)
    fn(meta)
    with open(mp, "w") as f:
        json.dump(meta, f)


@pytest.mark.parametrize("breakage, message", [
    (lambda p: os.remove(os.path.join(p, "col.npy")), "col.npy: missing"),
    (lambda p: np.save(os.path.join(p, "x.npy"), np.zeros((2000, 3), np.float32)), "x.npy: is float32 [2000, 3]"),
    (lambda p: open(os.path.join(p, "y.npy"), "wb").write(b"junk"), "y.npy: not a readable .npy"),
    (lambda p: np.save(os.path.join(p, "rowptr.npy"), np.zeros(2001, np.int32)), "rowptr.npy: must start at 0 and end"),
    (lambda p: os.remove(os.path.join(p, "meta.json")), "no meta.json"),
    (lambda p: open(os.path.join(p, "meta.json"), "w").write("{"), "meta.json: not readable JSON"),
    (lambda p: _edit_meta(p, lambda m: m.update(version=99)), "version 99"),
    (lambda p: _edit_meta(p, lambda m: m["arrays"].pop("y")), "required array 'y'"),
])
def test_broken_members_give_one_line_errors(saved, breakage, message):
    breakage(saved)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_mmap(saved)
    assert "\n" not in str(info.value)


def test_out_of_range_index_and_bad_rowptr(saved):
    col = np.load(os.path.join(saved, "col.npy"))
    col[7] = 5000
    np.save(os.path.join(saved, "col.npy"), col)
    with pytest.raises(ValueError, match=r"col.npy: has a node index outside \[0, 2000\)"):
        load_mmap(saved)
    rp = np.load(os.path.join(saved, "rowptr.npy"))
    rp[10], rp[11] = rp[11] + 1, rp[10]
    np.save(os.path.join(saved, "rowptr.npy"), rp)
    with pytest.raises(ValueError, match="rowptr.npy: is not non-decreasing"):
        load_mmap(saved, check_indices=False)


def test_overlapping_masks_are_refused(saved):
    tr = np.load(os.path.join(saved, "train_mask.npy"))
    va = np.load(os.path.join(saved, "val_mask.npy"))
    va[np.flatnonzero(tr)[0]] = True
    np.save(os.path.join(saved, "val_mask.npy"), va)
    with pytest.raises(ValueError, match="masks overlap"):
        load_mmap(saved)
