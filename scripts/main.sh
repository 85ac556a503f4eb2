#!/usr/bin/env bash
# Sets up .venv (scripts/env.sh) and runs the main job: `gkdfast distill` on the built-in
# synthetic graph.  Extra arguments go to `gkdfast distill`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
exec .venv/bin/gkdfast distill "$@"
