#!/usr/bin/env bash
# Build the documentation site into site/ (or --site-dir DIR); warnings fail the build.
#   bash docs/build.sh            # then open site/index.html via `python -m http.server -d site`
#   bash docs/build.sh --site-dir /tmp/site
# Needs the docs extra: pip install -e ".[docs]".
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_MKDOCS_2_WARNING=1
exec "${PYTHON:-python}" -m mkdocs build --strict "$@"
