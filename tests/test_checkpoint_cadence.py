"""Checkpoint cadence: slow saves are spaced out, and a run killed between saves still resumes to the
exact end of an uninterrupted run.  Time is a fake clock here: nothing is timed."""
import io
import os

import pytest
import torch

import gkdfast.distill.distiller as distiller_mod
from gkdfast._io import save_checkpoint_file
from gkdfast.data import csbm
from gkdfast.distill import Distiller, StopTraining, terms
from gkdfast.distill.checkpoint_cadence import ALWAYS_WRITE_SECONDS, CheckpointCadence
from gkdfast.nn import MLP


class _Clock:
    """Advances by ``step`` seconds at every reading."""

    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_cheap_saves_are_written_every_epoch():
    c = CheckpointCadence(0.05, clock=_Clock(ALWAYS_WRITE_SECONDS / 4))  # each save "takes" 1/4 of the floor
    for _ in range(5):
        assert c.due()
        with c.timed():
            pass


def test_slow_saves_keep_to_their_share_of_the_time():
    clock = _Clock(1.0)  # every reading 1 s later: a save "takes" 1 s, each due() check is 1 s on
    c = CheckpointCadence(0.25, clock=clock)
    written = []
    for epoch in range(1, 13):
        if c.due():
            with c.timed():
                written.append(epoch)
    # after a 1 s save the next is due 1 / 0.25 = 4 s later: every fourth check
    assert written == [1, 5, 9]


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_overhead_outside_its_range_is_refused(bad):
    with pytest.raises(ValueError, match="checkpoint_overhead"):
        CheckpointCadence(bad)
    with pytest.raises(ValueError, match="checkpoint_overhead"):
        Distiller(MLP(4, 4, 2), [terms.CrossEntropy()], checkpoint_overhead=bad)


def test_none_means_every_epoch():
    c = CheckpointCadence(None, clock=_Clock(100.0))
    for _ in range(3):
        assert c.due()
        with c.timed():
            pass


def test_checkpoint_file_has_no_crc_and_loads():
    import zipfile

    import torch.serialization as ser

    get = getattr(ser, "get_crc32_options", None)  # (not in torch 2.4, which always writes the CRC)
    before = get() if get else None
    buf = io.BytesIO()
    save_checkpoint_file({"w": torch.arange(6.0)}, buf)
    if get is not None:
        assert get() == before  # the process-wide setting is restored
        buf.seek(0)
        assert zipfile.ZipFile(buf).testzip() is not None  # records carry no CRC (a plain torch.save passes)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=True)["w"], torch.arange(6.0))


# -- the Distiller with a slow-save clock --------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return csbm(num_nodes=200, num_classes=3, feature_dim=12, avg_degree=6, seed=5)


@pytest.fixture
def slow_saves(monkeypatch):
    """Every Distiller in the test spaces its saves as if each took 1 s and each check came 1 s later,
    with a 25 % share: epochs 1, 5, 9, ... are written (and the last).  Records what was written."""
    written = []

    class Cadence(CheckpointCadence):
        def __init__(self, overhead):
            super().__init__(None if overhead is None else 0.25, clock=_Clock(1.0))

    real_save = Distiller._save

    def save(self, state, ddp=None):
        if self.checkpoint_dir:
            written.append(state["epoch"])
        real_save(self, state, ddp)

    monkeypatch.setattr(distiller_mod, "CheckpointCadence", Cadence)
    monkeypatch.setattr(Distiller, "_save", save)
    return written


def _run(tiny, ckpt, callbacks=(), epochs=10):
    torch.manual_seed(1)
    student = MLP(tiny.num_features, 16, tiny.num_classes, dropout=0.5)
    return Distiller(student, [terms.CrossEntropy()], epochs=epochs, patience=None, batch_size=64,
                     checkpoint_dir=ckpt).fit(tiny, callbacks=list(callbacks), select_best=False)


class _Kill(RuntimeError):
    pass


def test_a_kill_between_saves_resumes_from_the_last_one_and_ends_identical(tiny, tmp_path, slow_saves):
    full = _run(tiny, None)
    ref = {k: v.clone() for k, v in full.student.state_dict().items()}

    def kill_at_7(epoch, info):
        if epoch == 7:
            raise _Kill

    ckpt = str(tmp_path / "run")
    with pytest.raises(_Kill):
        _run(tiny, ckpt, [kill_at_7])
    assert slow_saves == [1, 5]  # epoch 7 was not due
    assert torch.load(os.path.join(ckpt, "checkpoint.pt"), weights_only=True)["epoch"] == 5

    seen = []
    torch.manual_seed(999)  # the checkpoint restores every RNG state
    res = _run(tiny, ckpt, [lambda e, i: seen.append(e)])
    assert seen == [6, 7, 8, 9, 10]  # epochs 6-7 repeated, nothing else
    assert slow_saves[-1] == 10  # the last epoch is always written
    assert [h["loss"] for h in res.history] == [h["loss"] for h in full.history]
    for k, v in res.student.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_stop_at_an_epoch_that_was_not_due_writes_it(tiny, tmp_path, slow_saves):
    def stop_at_3(epoch, info):
        if epoch == 3:
            raise StopTraining

    ckpt = str(tmp_path / "run")
    assert _run(tiny, ckpt, [stop_at_3]).epochs == 3
    assert slow_saves == [1, 3]
    assert torch.load(os.path.join(ckpt, "checkpoint.pt"), weights_only=True)["epoch"] == 3
    seen = []
    assert _run(tiny, ckpt, [lambda e, i: seen.append(e)]).epochs == 10
    assert seen[0] == 4


def test_best_epoch_snapshot_reuses_its_tensors_and_stays_a_copy():
    from gkdfast.distill.distiller import _snapshot

    m = torch.nn.Linear(3, 2)
    first = _snapshot(None, m.state_dict())
    ptr = first["weight"].data_ptr()
    with torch.no_grad():
        m.weight.add_(1.0)
    assert not torch.equal(first["weight"], m.weight)  # a copy, not a view of the live weights
    again = _snapshot(first, m.state_dict())
    assert again is first and again["weight"].data_ptr() == ptr  # written in place
    assert torch.equal(again["weight"], m.weight)
    other = _snapshot(first, torch.nn.Linear(4, 2).state_dict())  # another shape: a fresh copy
    assert other is not first and other["weight"].shape == (2, 4)


def test_a_checkpoint_that_is_no_dict_is_a_clear_error(tmp_path):
    """helper 118: a tensor or list saved where a checkpoint belongs gave an AttributeError traceback."""
    from gkdfast.distill.checkpoint_file import read_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="holds a Tensor, not a gkdfast checkpoint; delete it"):
        read_checkpoint(str(path), "Distiller")


def test_a_checkpoint_missing_a_key_names_the_file(tiny, tmp_path):
    """helper 118: a checkpoint with the right fingerprint but no 'rng_gen' said only "missing 'rng_gen'"."""
    ckpt = str(tmp_path / "run")
    _run(tiny, ckpt, epochs=2)
    path = next(p for p in (tmp_path / "run").rglob("*.pt"))
    state = torch.load(path, weights_only=True)
    del state["rng_gen"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"does not fit this run.*delete it to start over"):
        _run(tiny, ckpt, epochs=2)


def test_the_armed_restart_hook_writes_every_epoch(tiny, tmp_path, slow_saves, monkeypatch):
    """With the restart-test hook armed, every epoch is written whatever the cadence: the hook fires
    right after epoch k's checkpoint, and a skipped epoch k moved the kill into a later stage."""
    monkeypatch.setenv("GKDFAST_TEST_FAIL_ONCE_AT_EPOCH", "999")  # armed, at an epoch never reached
    _run(tiny, str(tmp_path / "run"), epochs=6)
    assert slow_saves == [1, 2, 3, 4, 5, 6]
