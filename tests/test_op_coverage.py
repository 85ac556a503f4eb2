"""Every operator registered under torch.ops.gkdfast is opcheck-ed somewhere in the suite and has a
CPU kernel: a new op without either fails here, by name."""
import pathlib
import re

import pytest

import gkdfast
from gkdfast import _backend

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")

TESTS = pathlib.Path(__file__).parent


def _opchecked_ops():
    names = set()
    for path in TESTS.glob("test_*.py"):
        text = path.read_text()
        names.update(re.findall(r"opcheck\(\s*torch\.ops\.gkdfast\.([a-z_0-9]+)\.default", text))
    return names


def test_every_op_is_opchecked():
    ops = set(_backend.registered_ops())
    assert ops, "no gkdfast ops registered"
    missing = sorted(ops - _opchecked_ops())
    assert not missing, f"ops without a torch.library.opcheck test: {missing}"


def test_every_op_has_a_cpu_kernel():
    info = gkdfast.backend_info()["ops"]
    assert info, "backend_info lists no ops"
    missing = sorted(op for op, keys in info.items() if "cpu" not in keys)
    assert not missing, f"ops without a CPU kernel: {missing}"
