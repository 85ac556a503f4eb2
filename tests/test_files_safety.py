"""Checkpoints, the teacher cache and output folders under hostile or unlucky conditions (issue 18):
a planted pickle, a BatchNorm teacher, settings that change outputs without changing weights, a
stale cache folder, two writers, a resume whose RNG state must stay on the CPU."""
from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from gkdfast import Graph
from gkdfast._io import DirectoryBusy, atomic_write, exclusive_dir
from gkdfast.data import csbm
from gkdfast.distill import Distiller, teacher_outputs, terms
from gkdfast.distill.teacher_cache import fingerprint
from gkdfast.nn import GCN, MLP, SAGE


@pytest.fixture(scope="module")
def tiny():
    return csbm(num_nodes=200, num_classes=3, feature_dim=8, avg_degree=6, seed=1)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo planted > planted.txt",))


def test_planted_checkpoint_is_refused_without_running_code(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    with open(ckpt / "checkpoint.pt", "wb") as f:
        pickle.dump({"fingerprint": "x", "payload": _Boom()}, f, protocol=2)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        Distiller(MLP(8, 8, 3), [terms.CrossEntropy()], epochs=1, checkpoint_dir=str(ckpt)).fit(tiny)
    assert not (tmp_path / "planted.txt").exists()


def test_resume_loads_rng_state_on_cpu_whatever_the_device(tiny, tmp_path, monkeypatch):
    # A CUDA run used map_location=device, which moved the CPU RNG state to the GPU and made
    # torch.set_rng_state raise.  The checkpoint now always loads to the CPU.
    seen = {}
    real_load = torch.load

    def spy(*a, **kw):
        seen.update(kw)
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    opts = dict(epochs=3, patience=None, checkpoint_dir=str(tmp_path))
    torch.manual_seed(0)
    Distiller(MLP(8, 8, 3), [terms.CrossEntropy()], **{**opts, "epochs": 2}).fit(tiny)
    with pytest.raises(ValueError, match="different run"):  # epochs is part of the fingerprint
        Distiller(MLP(8, 8, 3), [terms.CrossEntropy()], **opts).fit(tiny)
    assert seen["map_location"] == "cpu" and seen["weights_only"] is True


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda(tiny, tmp_path):
    from gkdfast.distill import StopTraining

    def stop(epoch, info):
        if epoch == 2:
            raise StopTraining

    torch.manual_seed(0)
    d = Distiller(MLP(8, 8, 3), [terms.CrossEntropy()], epochs=4, patience=None, device="cuda",
                  checkpoint_dir=str(tmp_path))
    assert d.fit(tiny, callbacks=[stop]).epochs == 2
    d2 = Distiller(MLP(8, 8, 3), [terms.CrossEntropy()], epochs=4, patience=None, device="cuda",
                   checkpoint_dir=str(tmp_path))
    assert d2.fit(tiny).epochs == 4


def test_batchnorm_teacher_is_cached(tiny, tmp_path):
    t = GCN(8, 16, 3, batch_norm=True)  # has a 0-dim num_batches_tracked buffer
    a = teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    b = teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    assert not a.cached and b.cached and torch.equal(a.logits, b.logits)


def test_cache_key_covers_settings_and_edge_weights(tiny):
    torch.manual_seed(0)
    mean = SAGE(8, 16, 3, aggr="mean")
    summ = SAGE(8, 16, 3, aggr="sum")
    summ.load_state_dict(mean.state_dict())  # same weights, different outputs
    assert fingerprint(mean, tiny.x, tiny.graph) != fingerprint(summ, tiny.x, tiny.graph)
    gcn_n, gcn_raw = GCN(8, 16, 3), GCN(8, 16, 3, normalize=False)
    gcn_raw.load_state_dict(gcn_n.state_dict())
    assert fingerprint(gcn_n, tiny.x, tiny.graph) != fingerprint(gcn_raw, tiny.x, tiny.graph)
    ei = tiny.graph.edge_index
    g1 = Graph(ei, tiny.num_nodes, torch.ones(ei.size(1)))
    g2 = Graph(ei, tiny.num_nodes, torch.full((ei.size(1),), 2.0))
    assert fingerprint(mean, tiny.x, g1) != fingerprint(mean, tiny.x, g2)
    assert fingerprint(mean, tiny.x, g1) != fingerprint(mean, tiny.x, tiny.graph)


def test_stale_cache_folder_without_meta_is_replaced_not_mapped(tiny, tmp_path):
    t = MLP(8, 16, 3)
    key = fingerprint(t, tiny.x, None)
    stale = tmp_path / "teachers" / key
    stale.mkdir(parents=True)
    (stale / "logits.f32").write_bytes(b"\0" * 12)  # an older, differently shaped file; no meta.json
    out = teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))
    with torch.no_grad():
        expect = t.eval()(tiny.x)
    assert torch.allclose(out.logits, expect) and (stale / "meta.json").exists()


def test_cache_file_of_the_wrong_size_is_a_clear_error(tiny, tmp_path):
    t = MLP(8, 16, 3)
    teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))
    folder = tmp_path / "teachers" / fingerprint(t, tiny.x, None)
    (folder / "logits.f32").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match="delete the folder"):
        teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["logits", "hidden"])
def test_cache_file_damaged_at_its_size_is_a_clear_error(tiny, tmp_path, name):
    # The right size with other bytes passed the size check and was served as the teacher's outputs
    # (a KD student fell from 77 % to 20-44 %).
    t = SAGE(8, 16, 3)
    first = teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    assert teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path)).cached
    path = tmp_path / "teachers" / first.key / f"{name}.f32"
    raw = bytearray(path.read_bytes())
    raw[100:104] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"{name}.f32 does not match the checksum.*delete the folder"):
        teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path))


def test_cache_checksums_are_read_once_and_sample_large_files(tiny, tmp_path, monkeypatch):
    from gkdfast.distill import teacher_cache

    reads = []
    real = teacher_cache._file_digest
    monkeypatch.setattr(teacher_cache, "_file_digest",
                        lambda path, stride, block=None: reads.append(stride) or real(path, stride, block))
    t = SAGE(8, 16, 3)
    first = teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    assert reads == [1, 1]  # written and summed once; the writer does not read its files again
    teacher_outputs(t, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    assert reads == [1, 1]  # this process checked them already
    # A file above the whole-file limit is summed by every STRIDE-th block.
    monkeypatch.setattr(teacher_cache, "_CRC_WHOLE_BYTES", 5000)  # logits: 2,400 bytes
    monkeypatch.setattr(teacher_cache, "_CRC_BLOCK", 256)
    t2 = MLP(8, 16, 3)
    second = teacher_outputs(t2, tiny.x, None, cache_dir=str(tmp_path))  # hidden: 200 x 16 x 4 = 12,800 bytes
    meta = json.loads((tmp_path / "teachers" / second.key / "meta.json").read_text())
    assert meta["crc32"]["hidden"]["stride"] == teacher_cache._CRC_STRIDE and meta["crc32"]["logits"]["stride"] == 1
    teacher_cache._VERIFIED.clear()  # as a new process
    path = tmp_path / "teachers" / second.key / "hidden.f32"
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF  # inside the first block, which is summed
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match the checksum"):
        teacher_outputs(t2, tiny.x, None, cache_dir=str(tmp_path))
    assert first.key != second.key


@pytest.mark.parametrize("text", ['{"logits": [200', "{}", "[1, 2]"])
def test_damaged_cache_meta_is_a_clear_error(tiny, tmp_path, text):
    t = MLP(8, 16, 3)
    key = teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path)).key
    (tmp_path / "teachers" / key / "meta.json").write_text(text)
    with pytest.raises(ValueError, match=r"meta.json is damaged .*delete the folder"):
        teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))


def test_cache_entries_get_the_mode_of_a_plain_folder(tiny, tmp_path):
    # (mkdtemp's 0700 left entries of a cache shared by several users unreadable to the others)
    key = teacher_outputs(MLP(8, 16, 3), tiny.x, None, cache_dir=str(tmp_path)).key
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "teachers" / key).stat().st_mode & 0o777 == 0o777 & ~mask


def test_cache_entry_with_the_first_checksum_format_is_still_read(tiny, tmp_path):
    # (entries of the first checksummed version hold one whole-file CRC-32 per file, an int)
    from gkdfast.distill import teacher_cache

    t = MLP(8, 16, 3)
    first = teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))
    meta_path = tmp_path / "teachers" / first.key / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["crc32"] = {name: v["crc"] for name, v in meta["crc32"].items()}
    meta_path.write_text(json.dumps(meta))
    teacher_cache._VERIFIED.clear()  # as a new process
    again = teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))
    assert again.cached and torch.equal(again.logits, first.logits)


def test_cache_entry_without_checksums_is_still_read(tiny, tmp_path):
    # entries written before the checksums existed are checked by size only
    t = MLP(8, 16, 3)
    first = teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))
    meta_path = tmp_path / "teachers" / first.key / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert set(meta.pop("crc32")) == {"logits", "hidden"}
    meta_path.write_text(json.dumps(meta))
    again = teacher_outputs(t, tiny.x, None, cache_dir=str(tmp_path))
    assert again.cached and torch.equal(again.logits, first.logits)


def _full_disk(monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 0))


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3200"),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_a_write_that_fills_the_disk_says_so(tmp_path, monkeypatch, error):
    _full_disk(monkeypatch)

    def write(f):
        f.write(b"partial")
        raise error

    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError, match="no space left on the file system of .* while writing checkpoint.pt") as e:
        atomic_write(str(target), write)
    assert e.value.errno == errno.ENOSPC and e.value.__cause__ is error
    assert os.listdir(tmp_path) == []  # the temporary file is gone


def test_other_write_errors_pass_through(tmp_path, monkeypatch):
    def write(f):
        raise RuntimeError("not about space")

    with pytest.raises(RuntimeError, match="not about space"):  # plenty of space left here
        atomic_write(str(tmp_path / "x"), write)
    _full_disk(monkeypatch)
    with pytest.raises(RuntimeError, match="not about space"):  # a full disk, but not a failed write
        atomic_write(str(tmp_path / "x"), write)


def test_a_teacher_cache_write_that_fills_the_disk_says_so(tiny, tmp_path, monkeypatch):
    from gkdfast.distill import teacher_cache

    def short_write(path, t):
        raise OSError("64000 requested and 48128 written")  # numpy's tofile on a full disk

    monkeypatch.setattr(teacher_cache, "_write", short_write)
    _full_disk(monkeypatch)
    with pytest.raises(OSError, match="no space left on the file system of"):
        teacher_outputs(MLP(8, 16, 3), tiny.x, None, cache_dir=str(tmp_path))
    assert [n for n in os.listdir(tmp_path / "teachers") if n.startswith(".tmp-")] == []


def test_atomic_write_uses_unique_temporaries_and_leaves_none(tmp_path):
    target = tmp_path / "results.json"
    names = []

    def writer(f):
        names.extend(n for n in os.listdir(tmp_path) if n != "results.json")  # the temporary, mid-write
        f.write(b"{}")

    atomic_write(str(target), writer)
    atomic_write(str(target), writer)
    assert target.read_bytes() == b"{}" and len(names) == 2 and names[0] != names[1]
    assert all(n.startswith(".results.json.") and n.endswith(".tmp") for n in names)
    assert sorted(os.listdir(tmp_path)) == ["results.json"]

    def broken(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(str(target), broken)
    assert target.read_bytes() == b"{}" and sorted(os.listdir(tmp_path)) == ["results.json"]


def test_second_run_into_a_busy_out_folder_fails_clearly(tmp_path):
    code = ("import sys, time; from gkdfast._io import exclusive_dir\n"
            "with exclusive_dir(sys.argv[1]):\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryBusy, match="another gkdfast run is using this"):
            with exclusive_dir(str(tmp_path)):
                pass
        with exclusive_dir(str(tmp_path), enabled=False):  # a non-zero rank does not take the lock
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_dir(str(tmp_path)):  # released with the process
        pass


def test_an_interrupt_as_the_temporary_file_is_created_leaves_no_file(tmp_path, monkeypatch):
    """The temporary's name is chosen before the file exists and the file is made inside the clean-up's
    try: mkstemp made it first, so a Ctrl-C landing right after (inside mkstemp, before its name reached
    us) left an empty temporary behind (helper 102: 12 from 300 Ctrl-Cs)."""
    import gkdfast._io as io_mod

    real_open = os.open

    def open_then_interrupt(path, flags, mode=0o777):
        os.close(real_open(path, flags, mode))  # the file exists ...
        raise KeyboardInterrupt  # ... and the interrupt lands before its descriptor is handed back

    monkeypatch.setattr(io_mod.os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(tmp_path / "results.json"), lambda f: f.write(b"{}"))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
    atomic_write(str(tmp_path / "results.json"), lambda f: f.write(b"{}"))
    assert os.listdir(tmp_path) == ["results.json"]
    assert os.stat(tmp_path / "results.json").st_mode & 0o777 == 0o666 & ~io_mod._UMASK  # a plain open()'s mode
