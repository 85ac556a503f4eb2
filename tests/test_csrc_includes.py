"""Build-time hygiene of csrc/: the kernels include only the torch headers they use.

Parsing torch's headers is most of the build (docs/adding-an-op.md, "Build time"). setup.py and
CMakeLists.txt define AT_PER_OPERATOR_HEADERS and TORCH_ASSERT_ONLY_METHOD_OPERATORS, so including
<ATen/ATen.h> or <ATen/Functions.h> is a compile error; these checks name the file and the fix before
a 20-minute build does, and cover the headers the compiler never reaches on a CPU-only build.
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
SOURCES = sorted(p for p in CSRC.rglob("*") if p.suffix in {".h", ".cuh", ".cpp", ".cu", ".inc"})

# Umbrella headers: each pulls in every operator's declaration (or the whole C++ frontend).
UMBRELLAS = {"ATen/ATen.h", "ATen/Functions.h", "torch/types.h", "torch/torch.h", "torch/all.h",
             "torch/extension.h", "torch/python.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def _includes():
    return {str(p.relative_to(CSRC)): set(INCLUDE.findall(p.read_text())) for p in SOURCES}


def test_sources_found():
    names = set(_includes())
    assert {"gkdfast.cpp", "cpu/spmm_cpu.cpp", "cuda/spmm_cuda.cu", "cuda/cuda_utils.cuh",
            "ops/graph_checks.h"} <= names


def test_no_umbrella_torch_header():
    bad = {f: sorted(h & UMBRELLAS) for f, h in _includes().items() if h & UMBRELLAS}
    assert not bad, (f"{bad}: include <ATen/core/Tensor.h> and the <ATen/ops/<name>.h> header of each "
                     "at:: function the file calls (<ATen/TensorOperators.h> for a + b on tensors)")


def test_torch_library_only_where_ops_are_registered():
    # <torch/library.h> costs 9 s per file; only the schema file and the three registration tables
    # (CPU kernels, CUDA kernels, C++ autograd kernels) need it.
    users = {f for f, h in _includes().items() if "torch/library.h" in h}
    assert users == {"gkdfast.cpp", "cpu/register_cpu.cpp", "cuda/register_cuda.cu", "autograd/register_autograd.cpp"}
