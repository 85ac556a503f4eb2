#!/usr/bin/env bash
# Builds gkdfast against another torch and runs the test suite with it: the check behind the torch
# versions README.md lists as tested.  Not part of CI (each version is a multi-GB download).
#
#   bash scripts/check_torch_version.sh 2.11.0            # the GPU machine's torch, CPU kernels
#   GKDFAST_CUDA=1 bash scripts/check_torch_version.sh 2.11.0   # also compile the CUDA kernels (sm_90)
#   bash scripts/check_torch_version.sh 2.4.1 -k spmm     # extra arguments go to pytest
#
# 1. .venv-torch-<VERSION> (gitignored) with that torch, setuptools >= 77 and requirements-dev.txt
#    (GKDFAST_TORCH_VENV points at an existing environment instead);
# 2. a detached git worktree of HEAD in a temporary folder, gkdfast._C built in place there (CPU kernels;
#    with GKDFAST_CUDA=1 the CUDA kernels too, through scripts/cuda_home.sh);
# 3. pytest in that worktree (CI=true: a missing dataset fails), OMP_NUM_THREADS=1 unless set, with the
#    worktree on PYTHONPATH.
# Log: build/torch-<VERSION>-tests.log.  Exit status: pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VERSION=${1:?usage: scripts/check_torch_version.sh TORCH_VERSION [pytest args...]}
shift
VENV=${GKDFAST_TORCH_VENV:-$REPO/.venv-torch-$VERSION}
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
say() { echo "check_torch_version: $*"; }
pipq() {  # quiet pip, minus this machine's "Location ... is ignored" notes; pip's own exit status
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }
  return "${PIPESTATUS[0]}"
}

if [ -z "${GKDFAST_TORCH_VENV:-}" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  say "installing torch==$VERSION and the test dependencies into $VENV (a CUDA build of torch is several GB)"
  pipq "torch==$VERSION" -r requirements-dev.txt wheel
  pipq -U "setuptools>=77"
fi
say "$("$VENV/bin/python" -c "import torch, setuptools as s
print('torch', torch.__version__, '| setuptools', s.__version__)")"

TREE=$(mktemp -d)
cleanup() { git -C "$REPO" worktree remove --force "$TREE" 2>/dev/null || rm -rf "$TREE"; }
trap cleanup EXIT
git worktree add -q --detach "$TREE" HEAD
say "worktree of $(git rev-parse --short HEAD) in $TREE"

mkdir -p build
LOG=$REPO/build/torch-$VERSION-tests.log
CUDA=${GKDFAST_CUDA:-0}
if [ "$CUDA" = "1" ]; then
  CUDA_HOME=$(bash scripts/cuda_home.sh) || { say "FAILED: GKDFAST_CUDA=1 but no CUDA toolkit found"; exit 1; }
  export CUDA_HOME GKDFAST_CUDA_ARCH_LIST=${GKDFAST_CUDA_ARCH_LIST:-9.0}
fi
say "building gkdfast._C (GKDFAST_CUDA=$CUDA)"
if ! (cd "$TREE" && PATH="$VENV/bin:$PATH" GKDFAST_CUDA=$CUDA MAX_JOBS=${MAX_JOBS:-2} \
      "$VENV/bin/python" setup.py -q build_ext --inplace > "$LOG" 2>&1); then
  grep -E "error|Error" "$LOG" | head -n 30
  say "FAILED: build (log: $LOG)"
  exit 1
fi

say "running the tests (log: $LOG)"
set +e
# PYTHONPATH: the tests that run scripts in a fresh process import gkdfast from the worktree (nothing is
# installed into the environment)
(cd "$TREE" && CI=true OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} GKDFAST_DATA=${GKDFAST_DATA:-$REPO/../shared/data} \
   PYTHONPATH="$TREE" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@") >> "$LOG" 2>&1
rc=$?
set -e
tail -n 15 "$LOG"
say "torch $VERSION: pytest exit status $rc"
exit $rc
