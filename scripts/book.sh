#!/usr/bin/env bash
# Set up .venv, build the book with every chapter executed (quick profile unless NEUROTUT_PROFILE
# says otherwise), and open it. Usage: bash scripts/book.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export NEUROTUT_PROFILE="${NEUROTUT_PROFILE:-quick}"
export NEUROTUT_STATIC=1   # viewers render as JavaScript players in the static pages
# the full profile keeps its own execution cache and HTML, so quick outputs are never served as full
out="."
[ "$NEUROTUT_PROFILE" = "quick" ] || out="_build_${NEUROTUT_PROFILE}"
echo "==> building the book (profile: $NEUROTUT_PROFILE)"
start=$(date +%s)
jupyter-book build . --path-output "$out" -W --keep-going
html="$(pwd)/${out#./}/_build/html/index.html"
html="${html/\/.\//\/}"
echo "==> book built in $(( $(date +%s) - start )) s: $html"
if [ -z "${CI:-}" ] && { [ -n "${DISPLAY:-}" ] || [ "$(uname)" = "Darwin" ]; }; then
  python -m webbrowser -t "file://$html" >/dev/null 2>&1 || true
fi
