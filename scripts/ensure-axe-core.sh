#!/usr/bin/env bash
# Make sure axe-core (the accessibility rules engine the report tests run inside Chromium)
# is in a local cache folder; prints the path of axe.min.js. Uses the machine's npm once,
# then the cached copy. The version is pinned so that results do not drift between runs.
set -euo pipefail

AXE_VERSION="${TRIPWIRE_AXE_VERSION:-4.14.1}"
CACHE="${TRIPWIRE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tripwire}"
DEST="$CACHE/axe-core-$AXE_VERSION"
JS="$DEST/node_modules/axe-core/axe.min.js"

if [ -s "$JS" ]; then
  echo "$JS"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing; install Node.js (Debian: apt-get install -y npm) to fetch axe-core $AXE_VERSION" >&2
  exit 1
fi
mkdir -p "$DEST"
# A private prefix: nothing is installed globally and the project's tree stays untouched.
npm install --prefix "$DEST" --no-save --no-audit --no-fund --loglevel=error "axe-core@$AXE_VERSION" >&2
test -s "$JS"
echo "$JS"
