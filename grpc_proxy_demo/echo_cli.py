"""``grpc-proxy echo``: the echo backend (grpc_proxy_demo/echo.py) as a command.

    grpc-proxy echo --listen HOST:PORT [--name NAME] [--health] [--reflection]
                    [--delay-ms N]

Serves ``echo.Echo`` (Unary, ServerStream, ClientStream, Bidi; raw bytes, no
protobuf) on HOST:PORT, with grpc.health.v1.Health if ``--health`` (SERVING)
and gRPC server reflection if ``--reflection``. Prints ``listening on
HOST:PORT`` then ``ready`` on stdout; SIGTERM or SIGINT stops it (running
calls get a second to finish) and it exits 0. A port that cannot be bound
exits 1 with one line on stderr.

``python -m proxy.echo --host HOST --port PORT ...`` (now ``python -m
grpc_proxy_demo.echo``) is the older spelling of the same command and keeps
working; ``--host`` and ``--port`` are accepted here too.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from proxy.config.model import Address
from proxy.config.units import UnitError, parse_address

DEFAULT_LISTEN = "127.0.0.1:0"


def parse_listen(text: str) -> Address:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``*:PORT`` or a bare ``PORT`` (all IPv4
    addresses, as nginx's ``listen``); port 0 picks a free port."""
    host, sep, port = text.rpartition(":")
    if port == "0":
        probe = parse_address(f"{host}{sep}1" if sep else "1", listen=True)
        return Address(probe.host, 0)
    return parse_address(text, listen=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpc-proxy echo",
        description="Run the echo backend: echo.Echo (Unary, ServerStream, ClientStream, "
        "Bidi) on raw bytes, for trying and testing the proxy.",
        epilog="Prints 'listening on HOST:PORT' and 'ready'; SIGTERM or SIGINT stops it.",
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help=f"address to serve on; port 0 picks a free one (default: {DEFAULT_LISTEN})",
    )
    p.add_argument("--name", default="echo", help="value of the x-backend metadata (echo)")
    p.add_argument("--health", action="store_true", help="serve grpc.health.v1.Health (SERVING)")
    p.add_argument("--reflection", action="store_true", help="serve gRPC server reflection")
    p.add_argument(
        "--delay-ms",
        type=int,
        default=0,
        metavar="N",
        help="sleep N ms in each call without x-sleep-ms (a slow backend)",
    )
    # The spelling of `python -m proxy.echo`.
    p.add_argument("--host", default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _address(p: argparse.ArgumentParser, args: argparse.Namespace) -> Address:
    if args.listen is not None:
        if args.host is not None or args.port is not None:
            p.error("--listen replaces --host and --port: give one or the other")
        try:
            return parse_listen(args.listen)
        except UnitError as e:
            p.error(f"--listen: {e}")
    default = parse_listen(DEFAULT_LISTEN)
    port = default.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        p.error(f"--port: {port} is not a port (0-65535)")
    return Address(args.host if args.host is not None else default.host, port)


def backend_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """``EchoBackend`` keywords for ``args``."""
    if args.delay_ms < 0:
        p.error("--delay-ms must be 0 or more")
    return {"health": args.health, "delay_ms": args.delay_ms, "reflection": args.reflection}


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    address = _address(p, args)
    options = backend_options(p, args)

    from grpc_proxy_demo.echo import EchoBackend

    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host = "0.0.0.0" if address.host in ("*", "") else address.host
    backend = EchoBackend(args.name, address.port, host, **options)
    try:
        backend.start()
    except OSError as e:
        print(f"grpc-proxy echo: {e}", file=sys.stderr)
        return 1
    print(f"listening on {backend.address}", flush=True)
    print("ready", flush=True)
    while not stopping.wait(0.5):
        pass
    backend.stop(grace=1.0)
    return 0
