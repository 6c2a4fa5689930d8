"""Command line: ``grpc-proxy [-t] [-c FILE]``, ``grpc-proxy demo``,
``grpc-proxy echo``, ``grpc-proxy register``.

``demo`` and ``echo`` run the grpc_proxy_demo package, shipped in the same
wheel, whose dependencies (grpcio, rich) come with the demo extra:
``pip install 'grpc-proxy[demo]'``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from proxy import __version__

if TYPE_CHECKING:
    from proxy.config.model import Config

# Without -c, as nginx's compiled-in path: $GRPC_PROXY_CONF, else the system
# file if it exists, else the example configuration shipped in the package.
CONFIG_ENV = "GRPC_PROXY_CONF"
SYSTEM_CONFIG = "/etc/grpc-proxy/grpc-proxy.conf"
PACKAGED_CONFIG = str(Path(__file__).resolve().parent / "conf" / "grpc-proxy.conf")
DEFAULT_CONFIG_HELP = (
    f"${CONFIG_ENV}, else {SYSTEM_CONFIG} if it exists, else the example shipped in the package"
)

log = logging.getLogger("grpc_proxy")


def default_config(
    environ: Mapping[str, str] | None = None,
    system: str = SYSTEM_CONFIG,
    packaged: str = PACKAGED_CONFIG,
) -> str:
    """The configuration file when ``-c`` is not given."""
    environ = os.environ if environ is None else environ
    named = environ.get(CONFIG_ENV)
    if named:
        return named
    if os.path.exists(system):
        return system
    return packaged


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpc-proxy",
        description="gRPC HTTP/2 reverse proxy and load balancer.",
        epilog="Subcommands: 'grpc-proxy demo [-c FILE]' runs backends, the proxy and traffic; "
        "'grpc-proxy echo --help' runs an echo backend; "
        "'grpc-proxy register --help' keeps a service registered in etcd.",
    )
    p.add_argument(
        "-c",
        dest="config",
        default=None,
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_CONFIG_HELP})",
    )
    p.add_argument(
        "-t", dest="test", action="store_true", help="check the configuration file and exit"
    )
    p.add_argument("--version", action="store_true", help="show the version and exit")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="stderr log level",
    )
    # Set by the master for its workers (worker_processes > 1).
    p.add_argument("--worker-fds", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)
    return p


def _check_logs(config: Config) -> str | None:
    """Open (and close) every access log, as nginx's -t does: the reason one
    cannot be opened, ``FILE:LINE: cannot open access log "PATH": reason``."""
    from proxy.access_log import check_logs

    try:
        check_logs(config)
    except OSError as e:
        return e.strerror or str(e)
    return None


def _build() -> str:
    """Which build runs: setup.py compiles the HTTP/2 core and the relay with
    mypyc when asked (GRPC_PROXY_COMPILE=1); the default is pure Python."""
    from importlib.machinery import EXTENSION_SUFFIXES

    from proxy.http2 import connection
    from proxy.relay import relay

    compiled = [(m.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES)) for m in (connection, relay)]
    if all(compiled):
        return "compiled with mypyc"
    return "pure Python" if not any(compiled) else "partly compiled with mypyc"


def _version() -> str:
    return f"grpc-proxy {__version__} ({_build()})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("demo", "echo"):
        # The grpc_proxy_demo package: without the demo extra, one line and exit 1.
        from grpc_proxy_demo import command

        return command(argv[0], argv[1:])
    if argv and argv[0] == "register":
        from proxy.discovery.registration import main as register_main

        return register_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.version:
        print(_version())
        return 0
    path = args.config if args.config is not None else default_config()
    from proxy.config import ConfigError, load, warnings

    try:
        config = load(path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    if args.test:
        problem = _check_logs(config)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 1
        for line in warnings(config):
            print(line, file=sys.stderr)
        print(f"{path}: ok")
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
    else:  # a worker's master has said it already
        log.info("%s", _version())
        if args.config is None:
            log.info("configuration %s", path)
        for line in warnings(config):
            log.warning("%s", line)
    try:
        return run(config, inherited, args.ready_fd)
    except KeyboardInterrupt:
        return 0
