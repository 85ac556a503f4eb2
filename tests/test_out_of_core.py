"""Out-of-core pieces: the teacher cache filled by layer-wise inference, and mini-batch training of a
graph-free student that never copies the whole feature matrix or the teacher outputs."""
import hashlib

import torch

from gkdfast.data import csbm
from gkdfast.distill import TeacherOutputs, recipes, teacher_outputs
from gkdfast.distill.teacher_cache import fingerprint, hash_tensor
from gkdfast.nn import MLP, SAGE


class _NoFullCopy(torch.Tensor):
    """A tensor that records every op result at least as large as itself that is not a view of its
    own storage: a full copy of the matrix (``x.clone()``, ``x[arange(N)]``, ``x * 1`` ...)."""

    copies: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        mine = [a for a in args if isinstance(a, _NoFullCopy)]
        if mine and isinstance(out, torch.Tensor) and out.numel() >= mine[0].numel() > 0:
            if out.untyped_storage().data_ptr() != mine[0].untyped_storage().data_ptr():
                cls.copies.append(getattr(func, "__name__", str(func)))
        return out


def _watch(t):
    return t.as_subclass(_NoFullCopy)


def test_layerwise_teacher_cache_matches_in_memory(tmp_path):
    data = csbm(num_nodes=300, num_classes=3, feature_dim=16, seed=0)
    torch.manual_seed(0)
    teacher = SAGE(16, 32, 3, num_layers=3)
    ref = teacher_outputs(teacher, data.x, data.graph)
    out = teacher_outputs(teacher, data.x, data.graph, cache_dir=str(tmp_path), chunk_rows=37)
    assert out.key == fingerprint(teacher, data.x, data.graph) and not out.cached
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.hidden, ref.hidden, atol=1e-5, rtol=1e-4)
    again = teacher_outputs(teacher, data.x, data.graph, cache_dir=str(tmp_path))  # same key, mapped back
    assert again.cached and again.key == out.key
    torch.testing.assert_close(again.logits, out.logits)
    assert list((tmp_path / "teachers" / out.key).iterdir())  # the files live in the cache folder
    assert sorted(p.name for p in (tmp_path / "teachers" / out.key).iterdir()) == \
        ["hidden.f32", "logits.f32", "meta.json"]


def test_hash_tensor_streams_the_same_digest():
    t = torch.randn(1000, 7)
    a, b = hashlib.sha256(), hashlib.sha256()
    hash_tensor(a, t)
    b.update(f"{t.dtype}{tuple(t.shape)}".encode())
    b.update(t.numpy().tobytes())
    assert a.hexdigest() == b.hexdigest()  # cache keys of earlier versions stay valid


def test_minibatch_mlp_student_never_copies_features_or_teacher(tmp_path):
    data = csbm(num_nodes=400, num_classes=3, feature_dim=16, seed=1)
    torch.manual_seed(0)
    teacher = SAGE(16, 32, 3)
    cached = teacher_outputs(teacher, data.x, data.graph, cache_dir=str(tmp_path / "cache"), chunk_rows=64)
    _NoFullCopy.copies = []
    watched = TeacherOutputs(_watch(cached.logits), _watch(cached.hidden), cached.key, cached.cached)
    data.x = _watch(data.x)
    recipe = recipes.get("glnn", epochs=2, batch_size=64, lamb=0.5)
    d = recipe.distiller(MLP(16, 32, 3), watched, progress=False, checkpoint_dir=str(tmp_path / "ckpt"))
    result = d.fit(data)
    assert result.epochs == 2 and 0.0 <= result.best_val_acc <= 1.0
    assert _NoFullCopy.copies == []


def test_watcher_sees_a_copy():
    _NoFullCopy.copies = []
    x = _watch(torch.randn(10, 3))
    x[torch.arange(4)]  # a gather of some rows is fine
    assert _NoFullCopy.copies == []
    x.clone()
    assert _NoFullCopy.copies
