#!/usr/bin/env bash
# Check every external link of the book (needs internet, so it is not part of CI).
# Runs Sphinx's linkcheck builder through Jupyter Book with notebook execution switched off (links
# do not depend on cell outputs), using a copy of _config.yml, and writes everything under
# _build/linkcheck, apart from the HTML build and its execution cache. Then checks that the
# notebook behind every Colab badge exists on GitHub (Sphinx does not see links in raw HTML).
# Usage: bash scripts/linkcheck.sh        exit status 1 when a link is broken; Sphinx's report is
#        _build/linkcheck/_build/html/output.txt (and output.json).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
out="_build/linkcheck"
mkdir -p "$out"
# the copy: execution off, local extension paths made absolute (they are resolved relative to the
# config file), and a time limit per link
python - "$out/_config.yml" <<'PY'
import sys
from pathlib import Path

import yaml

config = yaml.safe_load(Path("_config.yml").read_text())
config.setdefault("execute", {})["execute_notebooks"] = "off"
sphinx = config.setdefault("sphinx", {})
sphinx["local_extensions"] = {
    name: str(Path(path).resolve()) for name, path in (sphinx.get("local_extensions") or {}).items()
}
sphinx.setdefault("config", {}).update({"linkcheck_timeout": 30, "linkcheck_retries": 2})
Path(sys.argv[1]).write_text(yaml.safe_dump(config, sort_keys=False))
PY
echo "==> checking external links (notebooks not executed); report: $out/_build/html/output.txt"
status=0
jupyter-book build . --builder linkcheck --config "$out/_config.yml" --path-output "$out" || status=$?
report="$out/_build/html/output.txt"
if [ -s "$report" ]; then
  echo "==> links that are not ok ($report):"
  cat "$report"
fi

echo "==> checking that the notebook of every Colab badge exists on GitHub (Colab opens it from there)"
python - <<'PY' || status=1
import json
import re
import sys
import urllib.request
from pathlib import Path

bad = 0
for path in sorted(Path("chapters").glob("*.ipynb")):
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    for colab in re.findall(r'href="(https://colab\.research\.google\.com/github/[^"]+)"', first):
        github = colab.replace("https://colab.research.google.com/github/", "https://github.com/", 1)
        try:
            with urllib.request.urlopen(urllib.request.Request(github, method="HEAD"), timeout=30) as r:
                result = f"ok ({r.status})"
        except Exception as exc:  # HTTP errors, no network, timeouts: the reader cannot open it
            result, bad = f"broken ({exc})", bad + 1
        print(f"{path}: {github}: {result}")
sys.exit(1 if bad else 0)
PY
exit "$status"
