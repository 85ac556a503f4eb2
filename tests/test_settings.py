"""gkdfast.settings: statement and with-block forms, nesting, and with-blocks of two threads that close
out of order (each restoring the value it had seen left a setting stuck for the rest of the process)."""
from __future__ import annotations

import os
import threading

import pytest

from gkdfast import settings

VAR = "GKDFAST_DROPOUT"


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    yield
    assert not settings._STATE.get(VAR, {}).get("open"), "a test left a with-block open"


def test_statement_block_and_nesting():
    settings.dropout_impl("torch")  # a statement: stays
    assert os.environ[VAR] == "torch"
    with settings.dropout_impl("philox"):
        assert os.environ[VAR] == "philox"
        with settings.dropout_impl("torch"):
            assert os.environ[VAR] == "torch"
        assert os.environ[VAR] == "philox"
    assert os.environ[VAR] == "torch"
    os.environ.pop(VAR)
    with settings.dropout_impl("torch"):
        pass
    assert VAR not in os.environ  # unset before: unset after


def test_a_statement_inside_a_block_outlives_the_block():
    with settings.dropout_impl("torch"):
        settings.dropout_impl("philox")
        assert os.environ[VAR] == "philox"
    assert os.environ[VAR] == "philox"


def test_blocks_closing_out_of_order_leave_nothing_stuck():
    # Two threads' blocks, interleaved by hand: A opens, B opens, A closes, B closes.
    a, b = settings.dropout_impl("torch"), None
    a.__enter__()
    b = settings.dropout_impl("philox")
    b.__enter__()
    a.__exit__(None, None, None)
    assert os.environ[VAR] == "philox"  # B's block is still open
    b.__exit__(None, None, None)
    assert VAR not in os.environ  # the value from before both (the old code left "torch" here)


def test_threads_with_overlapping_blocks_end_with_the_value_from_before():
    settings.dropout_impl("philox")
    opened, first_closed = threading.Barrier(2), threading.Event()

    def first():
        with settings.dropout_impl("torch"):
            opened.wait()
        first_closed.set()

    def second():
        with settings.dropout_impl("torch"):
            opened.wait()
            first_closed.wait()  # the block opened second closes last

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert os.environ[VAR] == "philox"


def test_forced_backend_blocks_closing_out_of_order_leave_nothing_stuck():
    from gkdfast import _backend

    a, b = _backend.forced("reference"), _backend.forced("native")
    a.__enter__()
    b.__enter__()
    assert _backend._mode() == "native"
    a.__exit__(None, None, None)
    assert _backend._mode() == "native"
    b.__exit__(None, None, None)
    assert _backend._FORCED is None  # (the old code left "reference" forced here)
