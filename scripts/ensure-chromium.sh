#!/usr/bin/env bash
# Make sure headless Chromium is available for the report browser tests (marker: browser).
# Reports must render and print identically in a real browser, so the tests use Debian's
# chromium package rather than a bundled browser build (which cannot be downloaded here).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing; install it with: sudo apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
