#!/usr/bin/env bash
# Install the Debian packages a test target needs, only those missing: `.ci/debian-packages.sh PKG...`.
# Used by `make test` for the browser and Celery end-to-end tests (Chromium, PostgreSQL, Redis), so a
# clean machine needs nothing installed by hand. Without root (or sudo) and apt-get it installs nothing
# and says which packages to install; the tests that need them then skip with a reason (or fail under CI=true).
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then as_root=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo -n); else
    echo "Missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "Missing packages ${missing[*]} and no apt-get here: install their equivalents by hand." >&2
    exit 0
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >/dev/null
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
