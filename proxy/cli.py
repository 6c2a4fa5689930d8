"""Command line: ``grpc-proxy [-t] [-c FILE]``, ``grpc-proxy demo``,
``grpc-proxy register``."""

from __future__ import annotations

import argparse
import logging
import sys

from proxy import __version__

DEFAULT_CONFIG = "conf/grpc-proxy.conf"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpc-proxy",
        description="gRPC HTTP/2 reverse proxy and load balancer.",
        epilog="Subcommands: 'grpc-proxy demo [-c FILE]' runs backends, the proxy and traffic; "
               "'grpc-proxy register --help' keeps a service registered in etcd.",
    )
    p.add_argument("-c", dest="config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"configuration file (default: {DEFAULT_CONFIG})")
    p.add_argument("-t", dest="test", action="store_true",
                   help="check the configuration file and exit")
    p.add_argument("--version", action="version", version=f"grpc-proxy {__version__}")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="stderr log level")
    # Set by the master for its workers (worker_processes > 1).
    p.add_argument("--worker-fds", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "demo":
        from proxy.demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "register":
        from proxy.discovery.registration import main as register_main

        return register_main(argv[1:])
    args = _parser().parse_args(argv)
    from proxy.config import ConfigError, load

    try:
        config = load(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    if args.test:
        print(f"{args.config}: ok")
        return 0
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("hpack").setLevel(logging.WARNING)  # per-header debug lines
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per etcd request
    from proxy.runtime.main import run

    inherited = None
    if args.worker_fds is not None:
        from proxy.runtime.master import worker_sockets

        inherited = worker_sockets(args.worker_fds)
    try:
        return run(config, inherited, args.ready_fd)
    except KeyboardInterrupt:
        return 0
