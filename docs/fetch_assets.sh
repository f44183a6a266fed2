#!/usr/bin/env bash
# Fetch the JavaScript the site serves itself (not committed): mermaid, which draws docs/architecture.md.
# Without a local copy mkdocs-material loads mermaid from a CDN when a page is viewed, so an offline
# site shows the diagrams as text. Pinned; from the npm registry. Needs npm.
set -euo pipefail
cd "$(dirname "$0")"
MERMAID=11.17.2
target=javascripts/mermaid.min.js
if [ -f "$target" ] && grep -q "$MERMAID" javascripts/.mermaid-version 2>/dev/null; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack -q "mermaid@$MERMAID" >/dev/null && tar xzf mermaid-*.tgz)
mkdir -p javascripts
cp "$tmp/package/dist/mermaid.min.js" "$target"
echo "$MERMAID" > javascripts/.mermaid-version
