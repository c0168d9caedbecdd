# Sourced by book.sh and test.sh: create .venv and install neurotut with its book and test extras.
# Idempotent: reinstalls only when pyproject.toml changed. Needs Python 3.11+ (set PYTHON to choose).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "neurotut needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.neurotut-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing neurotut and its dependencies into .venv"
  python -m pip install -q --upgrade pip
  # torch first, pinned, so that nothing pulls a different build; keep one that is already there
  python -c 'import torch' 2>/dev/null || python -m pip install -q "torch==${NEUROTUT_TORCH_VERSION:-2.13.0}"
  python -m pip install -q -e ".[book,dev]"
  echo "$want" > "$stamp"
fi
