#!/usr/bin/env bash
# Creates (or refreshes) .venv with everything gkdfast needs and builds the native extension.
# Idempotent: a second run only re-checks the packages and rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { echo "gkdfast setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv (first run only)"
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip install, quiet, minus the "Location ... is ignored" notes this machine's pip config prints;
# keeps pip's own exit status.
pipq() { .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }; return "${PIPESTATUS[0]}"; }
pipq --upgrade pip setuptools wheel
# torch 2.13.0 CPU wheel (lies on this kind of machine's disk); then the rest.
say "checking/installing torch 2.13.0 (CPU) and the test dependencies (about 1 minute the first time)"
pipq "torch==2.13.0"
pipq -r requirements-dev.txt
# Build against the torch in .venv (no build isolation: isolation would pull a different torch).
# First time: an editable install (builds _C and installs the `gkdfast` command); afterwards an
# incremental in-place build that only recompiles what changed.
export MAX_JOBS=${MAX_JOBS:-2}
if .venv/bin/python -c "import importlib.metadata as m; m.version('gkdfast')" >/dev/null 2>&1; then
  say "rebuilding the native module gkdfast._C if sources changed (seconds; a few minutes after C++ edits)"
  flock /tmp/gkdfast-build.lock .venv/bin/python setup.py -q build_ext --inplace > .venv/build.log 2>&1 \
    || { tail -n 40 .venv/build.log; echo "gkdfast: build failed (full log: .venv/build.log)"; exit 1; }
else
  say "building the native module gkdfast._C (first run: about 2-4 minutes on 2 cores; log: .venv/build.log)"
  flock /tmp/gkdfast-build.lock .venv/bin/python -m pip install --no-build-isolation --no-deps -e . \
    > .venv/build.log 2>&1 \
    || { tail -n 40 .venv/build.log; echo "gkdfast: build failed (full log: .venv/build.log)"; exit 1; }
fi
.venv/bin/python -c "import gkdfast, sys; i = gkdfast.backend_info(); print('gkdfast', i['version'], '| native extension:', 'loaded' if i['extension_loaded'] else 'NOT loaded: %s' % i['load_error']); sys.exit(0 if i['extension_loaded'] else 1)"
