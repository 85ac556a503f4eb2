#!/usr/bin/env bash
# Sets up .venv (scripts/env.sh) and runs the test suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
# Two cores: keep OpenMP from oversubscribing when pytest itself is single-process.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q "$@"
