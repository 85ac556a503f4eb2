#!/usr/bin/env bash
# Proves, without a GPU, that gkdfast's CUDA code compiles and links and that every operator in the
# gkdfast namespace has a CUDA kernel registered.  CI runs it after the tests.
#
#   1. .venv-cuda (gitignored) with torch 2.14.1+cu130, created or refreshed; GKDFAST_CUDA_VENV
#      points at an existing environment instead (local development: a venv beside the checkout).
#   2. The real CUDA toolkit root (scripts/cuda_home.sh: the nvcc on PATH may be a wrapper script,
#      which is read for the binary it execs; else /usr/local/cuda*; CUDA_HOME, when set, wins).
#   3. gkdfast._C built with GKDFAST_CUDA=1 for sm_90 into build/cuda-lib (never in place: the CPU
#      build in gkdfast/ belongs to .venv).
#   4. A temporary copy of the package with that build, imported with the CUDA environment; checks
#      _C.compiled_with_cuda() and the CUDA dispatch key of every gkdfast op.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ARCH=${GKDFAST_CUDA_ARCH_LIST:-9.0}
TORCH_SPEC=${GKDFAST_CUDA_TORCH:-torch==2.14.1}
VENV=${GKDFAST_CUDA_VENV:-$REPO/.venv-cuda}
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
t_start=$(date +%s)
say() { echo "check_cuda_build: $*"; }

# ---- 1. environment -------------------------------------------------------------------------
if [ -z "${GKDFAST_CUDA_VENV:-}" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  say "installing $TORCH_SPEC numpy ninja setuptools>=77 wheel into $VENV"
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" numpy ninja "setuptools>=77" wheel 2>&1 | { grep -v "is ignored" || true; }
  [ "${PIPESTATUS[0]}" -eq 0 ] || { say "FAILED: pip install"; exit 1; }
fi
[ -x "$VENV/bin/python" ] || { say "FAILED: no python in $VENV"; exit 1; }
TORCH_INFO=$("$VENV/bin/python" -c "import torch; print(torch.__version__, torch.version.cuda)")
say "torch $TORCH_INFO in $VENV"
case "$TORCH_INFO" in *None) say "FAILED: $VENV holds a CPU-only torch"; exit 1 ;; esac
export PATH="$VENV/bin:$PATH"  # ninja

# ---- 2. CUDA toolkit ------------------------------------------------------------------------
CUDA_HOME=$(bash scripts/cuda_home.sh) || { say "FAILED: no CUDA toolkit found"; exit 1; }
export CUDA_HOME
say "CUDA toolkit $CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | grep -oE 'release [0-9.]+' || echo '?'))"

# ---- 3. build -------------------------------------------------------------------------------
mkdir -p build
LOG=build/cuda-build.log
t_build=$(date +%s)
say "building gkdfast._C with CUDA for sm_${ARCH/./} (log: $LOG)"
# The lock serialises builds when several people share one machine; on CI it is free.
if ! flock /tmp/gkdfast-cuda-build.lock env GKDFAST_CUDA=1 GKDFAST_CUDA_ARCH_LIST="$ARCH" \
    MAX_JOBS="${MAX_JOBS:-2}" "$VENV/bin/python" setup.py -q build_ext \
    --build-lib build/cuda-lib --build-temp build/cuda-temp > "$LOG" 2>&1; then
  grep -E "error|FAILED" "$LOG" | head -n 40 || true
  tail -n 20 "$LOG"
  say "FAILED: CUDA build (full log: $LOG)"
  exit 1
fi
build_s=$(( $(date +%s) - t_build ))
SO=$(ls build/cuda-lib/gkdfast/_C*.so 2>/dev/null | head -n 1)
[ -n "$SO" ] || { say "FAILED: build produced no build/cuda-lib/gkdfast/_C*.so"; exit 1; }
say "built $SO in ${build_s}s"

# ---- 4. import and check the registrations -------------------------------------------------
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp -r gkdfast "$TMP/gkdfast"
find "$TMP/gkdfast" -name '_C*.so' -delete  # the in-place CPU build must not shadow the CUDA one
find "$TMP/gkdfast" -name '__pycache__' -prune -exec rm -rf {} +
cp "$SO" "$TMP/gkdfast/"
cd "$TMP"
env -u GKDFAST_BACKEND PYTHONPATH="$TMP" "$VENV/bin/python" - "$build_s" "$t_start" <<'EOF'
import sys, time

import torch

import gkdfast
from gkdfast import _backend

build_s, t_start = sys.argv[1], int(sys.argv[2])
mod = _backend._C
if mod is None:
    print("check_cuda_build: FAILED: gkdfast._C did not load:", _backend._LOAD_ERROR)
    sys.exit(1)
if not mod.__file__.startswith(gkdfast.__path__[0]):
    print("check_cuda_build: FAILED: loaded", mod.__file__, "instead of the CUDA build")
    sys.exit(1)
problems = []
if not mod.compiled_with_cuda():
    problems.append("_C.compiled_with_cuda() is False")
ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("gkdfast::"))
if not ops:
    problems.append("no operator is registered in the gkdfast namespace")
missing = [n for n in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
if missing:
    problems.append("no CUDA kernel for: " + ", ".join(m.split("::", 1)[1] for m in missing))
total = int(time.time()) - t_start
status = "FAILED" if problems else "OK"
print(f"check_cuda_build: {status}: torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"{len(ops) - len(missing)}/{len(ops)} gkdfast ops have CUDA kernels, "
      f"build {build_s}s, total {total}s")
for p in problems:
    print("check_cuda_build:   -", p)
sys.exit(1 if problems else 0)
EOF
