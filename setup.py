"""Builds the single native module ``gkdfast._C``.

The C++/OpenMP kernels are always built.  The CUDA kernels are added when the
installed torch is a CUDA build *and* a CUDA toolkit is found (``CUDA_HOME``),
or when ``GKDFAST_CUDA=1`` forces them (the build then fails loudly if the
toolkit is missing).  ``GKDFAST_CUDA=0`` disables them.  Architectures come
from ``GKDFAST_CUDA_ARCH_LIST`` (e.g. "9.0"), else ``TORCH_CUDA_ARCH_LIST``,
else torch's own default.  ``DEBUG=1`` builds with -O0 -g.
"""
import glob
import os

import setuptools
from setuptools import setup

# pyproject.toml's license is an SPDX string (PEP 639), which setuptools reads from 77 on; an older one
# stops with a schema dump about `project.license` that names neither the cause nor the fix.
_SETUPTOOLS = tuple(int(p) if p.isdigit() else 0 for p in setuptools.__version__.split(".")[:2])
if _SETUPTOOLS < (77, 0):
    raise SystemExit(
        f"gkdfast needs setuptools >= 77 to build (found {setuptools.__version__}): "
        "`pip install -U \"setuptools>=77\"`, then build again without isolation "
        "(`pip install --no-build-isolation .`).")

try:
    from torch.utils import cpp_extension
except ImportError as exc:  # pip's own message would only say that metadata generation failed
    raise SystemExit(
        f"gkdfast builds its extension against the installed torch, and importing torch failed ({exc}). "
        "Install torch and the build tools first (`pip install torch ninja \"setuptools>=77\" wheel`), then build "
        "without isolation: "
        "`pip install --no-build-isolation .` (an isolated build compiles against another torch).") from exc

HERE = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def _want_cuda():
    flag = os.environ.get("GKDFAST_CUDA", "auto").lower()
    if flag in ("0", "false", "no", "off"):
        return False
    available = bool(torch_cuda_version()) and cpp_extension.CUDA_HOME is not None
    if flag in ("1", "true", "yes", "on"):
        if not available:
            raise RuntimeError(
                "GKDFAST_CUDA=1 but torch.version.cuda=%r and CUDA_HOME=%r: install a CUDA build "
                "of torch and point CUDA_HOME at the toolkit root (the folder whose lib64 holds "
                "libcudart)." % (torch_cuda_version(), cpp_extension.CUDA_HOME))
        return True
    return available


def torch_cuda_version():
    import torch

    return torch.version.cuda


# Per-operator ATen headers only: torch's umbrella headers (<ATen/ATen.h>, <ATen/Functions.h>)
# declare all ~2,500 operators and were most of the build time.  With these two macros a source
# includes <ATen/core/Tensor.h> and the <ATen/ops/<name>.h> of each at:: function it calls, and
# including an umbrella header is a compile error (docs/adding-an-op.md, "Build time").
LEAN_ATEN = [("AT_PER_OPERATOR_HEADERS", None), ("TORCH_ASSERT_ONLY_METHOD_OPERATORS", None)]


def make_extension():
    debug = os.environ.get("DEBUG", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    # -ffp-contract=off: g++ fuses `x = a * b; y = x - c` into one fma even in -std=c++17 mode, skipping
    # the rounding of x.  The kernels rely on every product rounding as written: a backward that
    # recomputes a logit k / tau must get the number the forward reduced into its log-sum-exp (a fused
    # multiply-subtract cost GSP's float32 gradient up to 2% at tau = 0.05), and the AVX2 and baseline
    # clones must give the same bits (docs/adding-an-op.md, "Floating-point contraction").
    cxx = opt + ["-fopenmp", "-Wno-unused-function", "-ffp-contract=off"]
    # GKDFAST_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer on the CPU kernels
    # (scripts/sanitize.sh builds that way in its own tree and runs the op tests under it).
    sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"] \
        if os.environ.get("GKDFAST_SANITIZE", "0") == "1" else []
    if sanitize:
        cxx = ["-O1", "-g"] + cxx[2:] + sanitize
    sources = (_sources("csrc/*.cpp") + _sources("csrc/common/*.cpp") + _sources("csrc/ops/*.cpp")
               + _sources("csrc/cpu/*.cpp") + _sources("csrc/autograd/*.cpp"))
    include_dirs = [os.path.join(HERE, "csrc")]
    extra_link = ["-fopenmp"] + sanitize
    if _want_cuda():
        arch = os.environ.get("GKDFAST_CUDA_ARCH_LIST")
        if arch:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch
        # nvcc has no -g0: pass only the optimisation level to it.
        nvcc = (["-O0", "-g"] if debug else ["-O3"]) + ["--expt-relaxed-constexpr", "-lineinfo" if debug else "-DNDEBUG",
                      "-Xcompiler", "-fopenmp", "-Xcompiler", "-ffp-contract=off"]  # device code: common/rounding.h
        return cpp_extension.CUDAExtension(
            "gkdfast._C",
            sources + _sources("csrc/cuda/*.cu"),
            include_dirs=include_dirs,
            define_macros=LEAN_ATEN + [("GKDFAST_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=extra_link,
        )
    return cpp_extension.CppExtension(
        "gkdfast._C",
        sources,
        include_dirs=include_dirs,
        define_macros=LEAN_ATEN,
        extra_compile_args={"cxx": cxx},
        extra_link_args=extra_link,
    )


setup(
    ext_modules=[make_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
