#!/bin/sh
# Install Debian's headless-capable Chromium for tests/browser/ (idempotent).
# Prints the browser's path on success; exits non-zero with a message if it
# cannot be installed (not root, no apt-get, no network).
set -eu

for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        echo "$candidate"
        exit 0
    fi
done

if [ "$(id -u)" != 0 ]; then
    echo "setup_chromium.sh: /usr/bin/chromium is missing and this is not root:" \
         "install it with 'apt-get install chromium' (or set CHROMIUM=/path/to/chromium)" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_chromium.sh: /usr/bin/chromium is missing and there is no apt-get" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale or absent: refresh them once if the first try fails.
if ! apt-get install -y -q --no-install-recommends chromium >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends chromium >&2
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "setup_chromium.sh: apt-get finished but /usr/bin/chromium is missing" >&2
    exit 1
fi
echo /usr/bin/chromium
