#!/usr/bin/env bash
# Builds the CPU kernels with -fsanitize=address,undefined in a private copy of the tree and runs the
# native-op tests under the sanitizers (issue 18's sanitizer job).  Any out-of-bounds access, use
# after free or undefined behaviour in a kernel aborts the test run with a report.
#
#   bash scripts/sanitize.sh [pytest args...]   # default: the op and malformed-input tests
#
# CI runs it last (.ci/run); run it yourself after touching csrc/.  On the 2-core machine the tests
# under the sanitizers took 72 s in session 27's CI replica, after an -O1 build of the CPU kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh >/dev/null
ROOT=$PWD
WORK=${GKDFAST_SANITIZE_DIR:-$ROOT/build-sanitize}
echo "gkdfast sanitize: copying the tree to $WORK and building with ASan+UBSan (a few minutes)" >&2
mkdir -p "$WORK"
# Sources only: the copy gets its own build/ and _C*.so.
rm -rf "$WORK/gkdfast" "$WORK/csrc" "$WORK/tests"
tar --exclude=./.git --exclude=./.venv --exclude='./.venv-*' --exclude=./build --exclude='./build-*' \
  --exclude='*.so' --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -xf - -C "$WORK"
cd "$WORK"
GKDFAST_SANITIZE=1 GKDFAST_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} "$ROOT/.venv/bin/python" setup.py -q build_ext --inplace \
  > sanitize-build.log 2>&1 || { tail -n 30 sanitize-build.log; exit 1; }
ASAN_LIB=$(g++ -print-file-name=libasan.so)
UBSAN_LIB=$(g++ -print-file-name=libubsan.so)
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  TESTS=(tests/test_spmm.py tests/test_spmm_gcn.py tests/test_csr_mm.py tests/test_sddmm_softmax.py tests/test_lsp.py tests/test_gsp_tiled_cpu.py
         tests/test_crd.py tests/test_gram_lse.py tests/test_topk.py tests/test_row_range_ops.py
         tests/test_native_safety.py tests/test_sample_neighbors.py tests/test_pooling.py tests/test_ppr.py
         tests/test_symmetric_csr.py tests/test_inverse_cdf.py tests/test_streaming_deepwalk.py
         tests/test_tile_drivers.py tests/test_dropout.py tests/test_text_tables.py tests/test_cpp_autograd.py
         -k "not cuda")
fi
# The tests must load the instrumented module, not an in-place build elsewhere on the path.
PYTHONPATH="$WORK" LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" ASAN_OPTIONS=detect_leaks=0 "$ROOT/.venv/bin/python" -c \
  "import gkdfast._C as c, sys; sys.exit(0 if c.__file__.startswith('$WORK') else 'loaded ' + c.__file__)"
echo "gkdfast sanitize: running ${TESTS[*]} under ASan+UBSan" >&2
# detect_leaks=0: CPython and torch keep allocations alive until exit by design.
# The preload puts the sanitizer runtimes ahead of the (uninstrumented) interpreter.
# GKDFAST_DATA: the copy's "beside the repository" is $ROOT, not the repository's parent (real-data tests).
GKDFAST_DATA="${GKDFAST_DATA:-$(dirname "$ROOT")/shared/data}" PYTHONPATH="$WORK" LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:protect_shadow_gap=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  OMP_NUM_THREADS=2 "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
