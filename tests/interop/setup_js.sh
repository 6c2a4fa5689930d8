#!/usr/bin/env bash
# Install the grpc-js interop peers' dependencies (tests/interop/js/node_modules)
# from tests/interop/js/package-lock.json with `npm ci`, unless they are already
# installed from this very lock file. Idempotent and safe to run concurrently.
# Needs node >= 18 and npm; as root without them, installs Debian's nodejs and
# npm. Exits non-zero with a one-line reason on failure.
# Run by the interop tests' session fixture (tests/integration/test_interop_js.py).
set -euo pipefail

js_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/js" && pwd)"

fail() {
    echo "setup_js.sh: $*" >&2
    exit 1
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup_js.sh: node or npm missing; installing Debian's nodejs and npm" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 || fail "apt-get update failed"
        apt-get install -y -qq nodejs npm >&2 || fail "apt-get install nodejs npm failed"
    fi
fi
command -v node >/dev/null 2>&1 || fail "node not found on PATH (install Node.js >= 18)"
command -v npm >/dev/null 2>&1 || fail "npm not found on PATH (install npm)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || fail "node $(node --version) is too old: need >= 18"

# One installer at a time (pytest sessions in parallel); the stamp records the
# lock file and node version that node_modules was installed from.
exec 9>"$js_dir/.setup_js.lock"
flock -w 300 9 || fail "another setup_js.sh held the lock for 300 s"

stamp_file="$js_dir/node_modules/.setup_js.stamp"
stamp="$(cat "$js_dir/package.json" "$js_dir/package-lock.json" | sha256sum | cut -d' ' -f1) node-$node_major"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && [ -d "$js_dir/node_modules/@grpc/grpc-js" ]; then
    exit 0
fi

echo "setup_js.sh: npm ci in $js_dir" >&2
(cd "$js_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
    || fail "npm ci failed in $js_dir"
(cd "$js_dir" && node -e "require('@grpc/grpc-js'); require('@grpc/proto-loader')") \
    || fail "@grpc/grpc-js or @grpc/proto-loader does not load after npm ci"
echo "$stamp" >"$stamp_file"
