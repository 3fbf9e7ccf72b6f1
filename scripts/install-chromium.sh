#!/usr/bin/env bash
# Debian's Chromium for the browser tests (playwright-core drives it; no browser download works here).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "install Debian's chromium (apt-get install chromium) as root" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
/usr/bin/chromium --version
