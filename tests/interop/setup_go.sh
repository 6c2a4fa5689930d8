#!/bin/bash
# Install the Go toolchain and grpc-go from Debian (when missing) and build the
# grpc-go interop client and server of tests/interop/go into tests/interop/build/.
# Idempotent: installs only what is missing and rebuilds only when a source is
# newer than the binaries. tests/integration/interop_tools.py runs it once per
# pytest session; it can also be run by hand.
#
#   tests/interop/setup_go.sh            # prints the build directory on its last line
#
# Debian bookworm: golang-go (1.19) and golang-google-grpc-dev (grpc-go 1.33,
# GOPATH sources under /usr/share/gocode). grpc-go 1.33 as packaged ships no
# interop package, so the client and server are ours (tests/interop/go/), built
# in GOPATH mode against the packaged sources: nothing is fetched from the network.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/go"
BUILD="${GRPC_PROXY_INTEROP_BUILD:-$HERE/build}"
GOCODE=/usr/share/gocode
GRPC_SRC="$GOCODE/src/google.golang.org/grpc"

log() { echo "setup_go: $*" >&2; }

need_install() {
    ! command -v go >/dev/null 2>&1 || [ ! -d "$GRPC_SRC" ]
}

if need_install; then
    if [ "$(id -u)" != 0 ]; then
        log "the Go toolchain or grpc-go is missing (need 'go' on PATH and $GRPC_SRC)"
        log "and this is not root: run as root, or: sudo apt-get install golang-go golang-google-grpc-dev"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "installing golang-go golang-google-grpc-dev"
    if ! apt-get install -y -q golang-go golang-google-grpc-dev >&2; then
        log "install failed; running apt-get update and trying again"
        apt-get update -q >&2
        apt-get install -y -q golang-go golang-google-grpc-dev >&2
    fi
    hash -r
    if need_install; then
        log "still missing after the install: 'go' on PATH and $GRPC_SRC"
        exit 1
    fi
fi

mkdir -p "$BUILD/bin"
# One build at a time per build directory (parallel pytest workers, two shells).
exec 9>"$BUILD/.lock"
flock -w 300 9 || { log "another setup_go.sh holds $BUILD/.lock"; exit 1; }
BINS=(interop_server interop_client)

up_to_date() {
    local b
    for b in "${BINS[@]}"; do
        [ -x "$BUILD/bin/$b" ] || return 1
        # any source (or this script) newer than the binary: rebuild
        if [ -n "$(find "$SRC" "${BASH_SOURCE[0]}" -newer "$BUILD/bin/$b" -print -quit)" ]; then
            return 1
        fi
    done
}

if up_to_date; then
    log "binaries up to date in $BUILD/bin"
    echo "$BUILD"
    exit 0
fi

# GOPATH mode: our packages under $BUILD/gopath/src/grpcproxy/interop (a fresh
# copy of tests/interop/go), the rest from Debian's /usr/share/gocode.
GOPATH_DIR="$BUILD/gopath"
PKG_DIR="$GOPATH_DIR/src/grpcproxy/interop"
rm -rf "$PKG_DIR"
mkdir -p "$PKG_DIR"
cp -R "$SRC/." "$PKG_DIR/"

export GO111MODULE=off
export GOPATH="$GOPATH_DIR:$GOCODE"
export GOCACHE="$BUILD/gocache"
export GOFLAGS=
export CGO_ENABLED=0

log "building ${BINS[*]} with $(go version)"
for b in "${BINS[@]}"; do
    go build -o "$BUILD/bin/$b.tmp" "grpcproxy/interop/$b"
    mv -f "$BUILD/bin/$b.tmp" "$BUILD/bin/$b"
done
log "built into $BUILD/bin"
echo "$BUILD"
