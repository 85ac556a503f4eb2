#!/usr/bin/env bash
# Incremental in-place build of gkdfast._C for development (CPU kernels), serialised with a lock so
# several people (or agents) working in one tree never run two builds at once.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/gkdfast-build.lock env MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python setup.py -q build_ext --inplace 2>&1 \
  | grep -vE "Wc\+\+20-extensions|bit-fields only available|^\s+[0-9]+ \||^\s+\||In file included|from /|^\s*\^|BuildBackendWarning|corresp|^\s*!!|\*\*\*\*|Please use|By 2027|See https|^\s*$" || true
