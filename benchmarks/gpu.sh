#!/usr/bin/env bash
# Everything neurotut measures on a GPU, in one run (a few minutes), into one JSON file.
# Usage (on a machine with CUDA, from the repository root): bash benchmarks/gpu.sh [OUT.json]
# Sets up .venv like the README's commands (a CUDA build of torch must already be in it or be
# chosen with NEUROTUT_TORCH_VERSION), then runs benchmarks/gpu.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
out="${1:-results/gpu-$(date +%Y%m%d-%H%M%S).json}"
mkdir -p "$(dirname "$out")"
NEUROTUT_PROFILE=full timeout 480 python benchmarks/gpu.py --device cuda --out "$out"
echo "==> wrote $out"
