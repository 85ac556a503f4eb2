#!/usr/bin/env bash
# Prints the CUDA toolkit root (the folder holding bin/nvcc and include/cuda_runtime.h).
# CUDA_HOME wins when set.  The nvcc on PATH may be a wrapper script (`exec /usr/local/cuda-13.0/bin/nvcc
# "$@"`), so a script is read for the binary it runs; otherwise /usr/local/cuda, /usr/local/cuda-*.
# Usage: CUDA_HOME=$(bash scripts/cuda_home.sh) || exit 1
set -euo pipefail
ok() { [ -x "$1/bin/nvcc" ] && [ -f "$1/include/cuda_runtime.h" ]; }
if [ -n "${CUDA_HOME:-}" ] && ok "$CUDA_HOME"; then echo "$CUDA_HOME"; exit 0; fi
if nvcc=$(command -v nvcc 2>/dev/null); then
  real=$(readlink -f "$nvcc")
  if head -c 2 "$real" | grep -q '#!'; then
    target=$(grep -oE '/[^" ]*/bin/nvcc' "$real" | head -n 1 || true)
    [ -n "$target" ] && real=$(readlink -f "$target")
  fi
  d=$(dirname "$(dirname "$real")")
  if ok "$d"; then echo "$d"; exit 0; fi
fi
for d in /usr/local/cuda /usr/local/cuda-*; do
  if ok "$d"; then readlink -f "$d"; exit 0; fi
done
echo "cuda_home.sh: no CUDA toolkit found (nvcc on PATH, CUDA_HOME or /usr/local/cuda*)" >&2
exit 1
