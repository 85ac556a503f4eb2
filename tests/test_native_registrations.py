"""gkdfast/_native/: one registration module per csrc/ops/ family, run by _backend after _C loads.
Every op registered in C++ has a fake kernel from Python (torch.compile and meta tensors need it),
every differentiable op an autograd formula, and no public module imports a private losses module."""
import ast
import pathlib

import pytest
import torch

from gkdfast import _backend, _native

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Ops whose outputs carry no gradient (indices, counts, parsed numbers).
NO_GRAD = {"sample_negatives", "sample_neighbors", "ppr_topk", "deepwalk", "symmetric_csr", "cdf_guide",
           "cdf_search", "parse_numbers"}


def test_one_module_per_csrc_family():
    # graph_checks / csr_validation: argument checks; gsp_tiles / lse_tiles: tile drivers shared by
    # the gsp and infonce / gram_lse families, no ops of their own.
    headers = {p.stem for p in (ROOT / "csrc" / "ops").glob("*.h")} - {"graph_checks", "csr_validation", "gsp_tiles",
                                                                        "lse_tiles"}
    assert set(_native.FAMILIES) == headers
    for family in _native.FAMILIES:
        assert (ROOT / "gkdfast" / "_native" / f"{family}.py").is_file(), family


def test_registered_once_at_import():
    assert _native.registered()
    _native.register_all()  # a second call must not re-register (torch.library would raise)


@pytest.mark.parametrize("op", _backend.registered_ops())
def test_every_op_has_a_fake_kernel(op):
    # The Meta dispatch key is what register_fake fills in: without it torch.compile cannot trace the op.
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"gkdfast::{op}", "Meta"), op


@pytest.mark.parametrize("op", sorted(set(_backend.registered_ops()) - NO_GRAD))
def test_every_differentiable_op_has_an_autograd_formula(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"gkdfast::{op}", "Autograd"), op


def test_no_module_outside_losses_imports_a_private_losses_module():
    offenders = []
    for path in (ROOT / "gkdfast").rglob("*.py"):
        if path.parent.name == "losses":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gkdfast.losses"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                offenders += [f"{path.name}: {n}" for n in names if any(p.startswith("_") for p in n.split(".")[2:])]
    assert not offenders, offenders
