"""gkdfast._backend: backend choice, reasons, GKDFAST_BACKEND modes, backend_info, the `gkdfast info`
command, and import without the native extension."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import gkdfast
from gkdfast import _backend
from conftest import HAS_CUDA

CORE_OPS = ["spmm", "spmm_arg_backward", "sddmm", "edge_softmax", "edge_softmax_backward"]
NATIVE = _backend.native_loaded()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not loaded")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@needs_native
def test_every_core_op_has_a_cpu_kernel():
    ops = _backend.registered_ops()
    for op in CORE_OPS:
        assert op in ops
        assert _backend.has_kernel(op, "CPU"), op
    assert not _backend.has_kernel("no_such_op", "CPU")


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_float_uses_cpu_kernel(dtype):
    assert _backend.choose("spmm", torch.device("cpu"), dtype) == "cpu"
    info = gkdfast.explain("spmm", "cpu", dtype)
    assert info["chosen"] == "cpu"
    assert "cuda" in info["not_used"] and info["not_used"]["cuda"]  # says why CUDA was not used
    assert "cpu" not in info["not_used"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_on_cpu_goes_to_reference_with_reason(dtype):
    info = gkdfast.explain("spmm", "cpu", dtype)
    assert info["chosen"] == "reference"
    reasons = " ".join(info["not_used"]["cpu"])
    assert str(dtype).replace("torch.", "") in reasons and "float32" in reasons


def test_reference_mode(monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == "reference"
    info = gkdfast.explain("sddmm", "cpu", torch.float32)
    assert info["chosen"] == "reference"
    assert any("GKDFAST_BACKEND=reference" in r for r in info["not_used"]["cpu"])
    assert gkdfast.backend_info()["mode"] == "reference"
    assert not gkdfast.backend_info()["backends"]["cpu"]["available"]


def test_mode_is_case_insensitive_and_validated(monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", " Reference ")
    assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == "reference"
    monkeypatch.setenv("GKDFAST_BACKEND", "fastest")
    with pytest.raises(ValueError, match="GKDFAST_BACKEND"):
        _backend.choose("spmm", torch.device("cpu"), torch.float32)


def test_native_mode_raises_with_reasons(monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", "native")
    with pytest.raises(NotImplementedError, match="float16"):
        _backend.choose("spmm", torch.device("cpu"), torch.float16)
    assert gkdfast.explain("spmm", "cpu", torch.float16)["chosen"] is None
    if NATIVE:
        assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == "cpu"


def test_unknown_op_is_refused_and_public_names_map_to_their_op():
    if NATIVE:  # a misspelt name was answered "reference" (and "gsp" too, though it runs the kernel)
        with pytest.raises(ValueError, match="unknown op 'does_not_exist'"):
            gkdfast.explain("does_not_exist", "cpu", torch.float32)
        assert gkdfast.explain("gsp", "cpu", torch.float32)["chosen"] == "cpu"
        assert gkdfast.explain("nt_xent", "cpu", torch.float32)["op"] == "gram_lse"
    else:  # without the extension every op runs on the reference
        info = gkdfast.explain("does_not_exist", "cpu", torch.float32)
        assert info["chosen"] == "reference"


def test_backend_info_shape():
    info = gkdfast.backend_info()
    assert sorted(info["backends"]) == ["cpu", "cuda", "reference"]
    for key in ("version", "torch", "mode", "extension_loaded", "compiled_with_cuda", "ops", "openmp_threads"):
        assert key in info
    assert info["extension_loaded"] == NATIVE
    if NATIVE:
        for op in CORE_OPS:
            assert "cpu" in info["ops"][op]
        assert info["backends"]["cpu"]["available"]
    if not HAS_CUDA:
        assert not info["backends"]["cuda"]["available"] and info["backends"]["cuda"]["reasons"]
    json.dumps(info)  # serialisable (the CLI prints it)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_kernels_registered_and_chosen():
    for op in CORE_OPS:
        assert _backend.has_kernel(op, "CUDA"), op
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        assert _backend.choose("spmm", torch.device("cuda"), dtype) == "cuda"


def _run(code: str, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    env.pop("GKDFAST_BACKEND", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


def test_cli_info():
    r = _run("import sys; from gkdfast.cli import main; sys.exit(main(['info']))")
    assert r.returncode == 0, r.stderr
    assert "backend cpu" in r.stdout and "backend reference" in r.stdout
    r = _run("import sys; from gkdfast.cli import main; sys.exit(main(['info', '--json']))")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backends"]["reference"]["available"]


def test_import_without_native_extension_falls_back_to_reference():
    code = (
        "import sys, warnings, torch\n"
        "sys.modules['gkdfast._C'] = None  # makes `from gkdfast import _C` raise ImportError\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import gkdfast\n"
        "hits = [w for w in caught if 'native extension' in str(w.message)]\n"
        "msgs = [str(w.message) for w in hits]\n"
        "assert len(msgs) == 1, msgs\n"
        "# the reason is the missing file (find_spec), not Python's 'circular import' guess; the warning\n"
        "# points at the user's import line, not at the gkdfast module that imported the backend\n"
        "assert 'no compiled gkdfast._C in' in msgs[0] and 'circular' not in msgs[0], msgs\n"
        "assert (hits[0].filename, hits[0].lineno) == ('<string>', 5), (hits[0].filename, hits[0].lineno)\n"
        "assert not gkdfast.backend_info()['extension_loaded']\n"
        "assert gkdfast.explain('spmm', 'cpu', torch.float32)['chosen'] == 'reference'\n"
        "g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))\n"
        "x = torch.tensor([[1.0], [2.0]], requires_grad=True)\n"
        "out = gkdfast.spmm(g, x, 'max')\n"
        "out.sum().backward()\n"
        "assert out.tolist() == [[2.0], [1.0]] and x.grad.tolist() == [[1.0], [1.0]]\n"
        "print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_forced_context_overrides_the_environment_and_restores_it(monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", "auto")
    before = _backend.choose("spmm", torch.device("cpu"), torch.float32)
    with _backend.forced("reference"):
        assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == "reference"
        with _backend.forced("auto"):  # nests
            assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == before
        assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == "reference"
    assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == before
    with pytest.raises(ValueError, match="mode must be auto, reference or native"):
        with _backend.forced("gpu"):
            pass


def test_a_remembered_native_choice_still_follows_the_mode(monkeypatch):
    # choose() keeps native choices (working one out asks the dispatcher about every backend, ~10 us
    # a call); the mode and torch.func transforms are part of what it remembers them by
    from gkdfast import _backend

    if not _backend.native_loaded():
        pytest.skip("the native extension is not loaded")
    cpu = torch.device("cpu")
    assert _backend.choose("spmm", cpu, torch.float32) == "cpu"
    assert _backend.choose("spmm", cpu, torch.float32) == "cpu"  # (remembered)
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    assert _backend.choose("spmm", cpu, torch.float32) == "reference"
    monkeypatch.delenv("GKDFAST_BACKEND")
    with _backend.forced("reference"):
        assert _backend.choose("spmm", cpu, torch.float32) == "reference"
    assert _backend.choose("spmm", cpu, torch.int32) == "reference"  # no int kernel: not the float choice
    with torch.autograd.forward_ad.dual_level():
        assert _backend.choose("spmm", cpu, torch.float32) == "reference"
    assert _backend.choose("spmm", cpu, torch.float32) == "cpu"


def test_explain_names_the_losses_that_run_no_native_op():
    for name in ("rsd", "kd", "relation"):
        with pytest.raises(ValueError, match=f"{name} runs no native op"):
            gkdfast.explain(name)
    assert gkdfast.explain("gsp")["op"] == "gsp_tiled"


def test_choose_reads_the_mode_once(monkeypatch):
    """Another thread's forced() block closing while choose() runs used to store a native choice under
    the "reference" key, so that forced("reference") and GKDFAST_BACKEND=reference ran native for good."""
    reads = []

    def mode_that_changes():  # "reference" on the first read, "auto" afterwards: a block closing mid-call
        reads.append(1)
        return "reference" if len(reads) == 1 else "auto"

    monkeypatch.setattr(_backend, "_mode", mode_that_changes)
    assert _backend.choose("spmm", torch.device("cpu"), torch.float32) == "reference"
    assert ("spmm", "cpu", torch.float32, "reference", False) not in _backend._NATIVE_CHOICES
