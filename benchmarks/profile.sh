#!/usr/bin/env bash
# Profiles grpc-proxy with py-spy while it serves the under-load unary scenario
# (h2load -c 10 -m 10). Writes benchmarks/results/profile-unary-load.svg (flame graph),
# profile-unary-load.txt (collapsed stacks) and profile-unary-load-top.txt.
# Extra arguments go to run.py, e.g. --seconds 15 or --grpc-proxy-cmd '...'.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$(dirname "$here")/.venv/bin/python" "$here/run.py" --profile "$@"
