#!/bin/sh
# grpc-proxy with the admin listener (and so the metrics recorder) on: the
# benchmark's config plus "admin { listen 127.0.0.1:PORT; }" on a free port.
#   run.py --grpc-proxy-cmd "sh benchmarks/grpc_proxy_with_admin.sh {config}"
set -e
conf="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cp "$conf" "$conf.admin.conf"
printf 'admin { listen 127.0.0.1:%s; }\n' "$port" >> "$conf.admin.conf"
exec "$py" -m proxy -c "$conf.admin.conf"
