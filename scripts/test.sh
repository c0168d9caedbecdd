#!/usr/bin/env bash
# Set up .venv and run the test suite (library tests, then the chapter execution test).
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export NEUROTUT_PROFILE=quick MPLBACKEND=Agg
python -m pytest "$@"
