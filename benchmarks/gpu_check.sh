#!/usr/bin/env bash
# The one check to run wherever a GPU is available (< 9 minutes on one H100/H200):
#   bash benchmarks/gpu_check.sh OUT_DIR [--smoke] [--data-root DIR]
# writes OUT_DIR/gpu_check.md (Markdown table) and OUT_DIR/gpu_check.json; see gpu_check.py.
# Without CUDA (or with --smoke) it runs toy budgets on the CPU in under a minute.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/gpu_check.sh OUT_DIR [--smoke] [--data-root DIR]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
