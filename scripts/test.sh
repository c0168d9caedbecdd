#!/usr/bin/env bash
# Set up .venv and run the test suite (library tests, then the chapter execution test).
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export NEUROTUT_PROFILE=quick MPLBACKEND=Agg
# one worker per core, each test file on one worker (its module fixtures are built once)
python -m pytest -n "${NEUROTUT_TEST_WORKERS:-auto}" --dist loadfile "$@"
