#!/usr/bin/env bash
# Creates (or refreshes) .venv with everything gkdfast needs and builds the native extension.
# Idempotent: a second run only re-checks the packages and rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v "is ignored" || true
# torch 2.13.0 CPU wheel (lies on this kind of machine's disk); then the rest.
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -r requirements-dev.txt 2>&1 | grep -v "is ignored" || true
# Build against the torch in .venv (no build isolation: isolation would pull a different torch).
MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python setup.py -q build_ext --inplace 2>&1 | grep -E "error|Error" || true
.venv/bin/python -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import gkdfast, sys; i = gkdfast.backend_info(); print('gkdfast', i['version'], '| native extension:', 'loaded' if i['extension_loaded'] else 'NOT loaded: %s' % i['load_error']); sys.exit(0 if i['extension_loaded'] else 1)"
