#!/usr/bin/env bash
# Build the documentation site into site/ (or --site-dir DIR); warnings fail the build.
#   bash docs/build.sh            # then open site/index.html via `python -m http.server -d site`
#   bash docs/build.sh --site-dir /tmp/site
# Needs the docs extra (pip install -e ".[docs]"). No venv needs to be active: the Python is
# $PYTHON, else .venv/bin/python of this checkout, else python3. The site's copy of mermaid
# (docs/javascripts/, not committed) is fetched first when missing; that needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=$(command -v python3 || command -v python)
fi
if ! "$py" -c "import mkdocs, material, mkdocstrings" 2>/dev/null; then
  echo "docs/build.sh: $py lacks the docs tooling; run: $py -m pip install -e \".[docs]\"" >&2
  exit 1
fi
if [ ! -f docs/javascripts/mermaid.min.js ]; then
  echo "docs/build.sh: fetching the site's copy of mermaid first (docs/fetch_assets.sh, needs npm)"
  command -v npm >/dev/null 2>&1 || { echo "docs/build.sh: npm is missing; install it (apt-get install npm) or copy mermaid.min.js into docs/javascripts/" >&2; exit 1; }
  bash docs/fetch_assets.sh
fi
export NO_MKDOCS_2_WARNING=1
exec "$py" -m mkdocs build --strict "$@"
