"""A trio gRPC-side service that keeps itself registered in etcd while it runs.

    python conf/examples/register_example.py --etcd http://127.0.0.1:2379 --port 50051

The proxy's ``upstream { etcd http://127.0.0.1:2379 prefix=/services/users/; }``
routes to it within a second of registration, and stops within a second of
exit (the lease is revoked; after a crash it expires within ``ttl``).
"""

from __future__ import annotations

import argparse
import signal

import trio

from proxy.discovery.registration import register


async def main(etcd: str, port: int) -> None:
    # ... start the real server on `port` here (grpcio in threads, or any trio server) ...
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with register(
            etcd,  # "URL" or "URL,URL" or a list
            "/services/users/",  # the upstream's prefix=
            f"127.0.0.1:{port}",  # what the proxy connects to
            id=f"users-{port}",  # key name under the prefix (default: address)
            ttl=10,  # keepalive every ttl/3
            weight=1,
            meta={"version": "v1"},  # labels for subset routing
            health=f"127.0.0.1:{port}",  # optional: only while grpc.health.v1 SERVING
        ) as reg:
            await reg.wait_registered()
            print(f"registered {reg.key}", flush=True)
            async for _ in signals:  # serve until SIGTERM/SIGINT
                break
    # the lease is revoked here: the key is gone at once


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--etcd", default="http://127.0.0.1:2379")
    p.add_argument("--port", type=int, default=50051)
    a = p.parse_args()
    trio.run(main, a.etcd, a.port)
