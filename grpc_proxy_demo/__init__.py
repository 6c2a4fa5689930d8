"""The echo backend and the demo: ``grpc-proxy echo`` and ``grpc-proxy demo``.

Shipped in the grpc-proxy wheel beside the ``proxy`` package, with its
dependencies (grpcio, grpcio-health-checking, grpcio-reflection, protobuf,
rich) in the ``demo`` extra: ``pip install 'grpc-proxy[demo]'``. The proxy
itself never imports this package, but for its ``demo`` and ``echo``
subcommands, which call ``command``.

This module imports nothing but the standard library, so the subcommands can
say what is missing instead of failing with a traceback:

- ``echo.py``, ``echo.proto``: the echo backend (in process and as a child);
- ``echo_cli.py``: ``grpc-proxy echo``;
- ``demo.py``: ``grpc-proxy demo``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import MutableMapping, Sequence

INSTALL = "pip install 'grpc-proxy[demo]'"
# What the demo extra brings, as import names (pyproject.toml's demo extra).
REQUIRES = ("grpc", "grpc_health", "grpc_reflection", "google.protobuf", "rich")
# grpc-core reads these when grpc loads: set them before it does. It logs
# INFO lines such as "Got goaway" by default, noise for a test tool.
GRPC_ENV = {"GRPC_VERBOSITY": "ERROR"}
COMMANDS = {"demo": "grpc_proxy_demo.demo", "echo": "grpc_proxy_demo.echo_cli"}


def missing() -> list[str]:
    """The modules of the demo extra that are not installed (none is imported)."""
    absent = []
    for name in REQUIRES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or half there
            found = False
        if not found:
            absent.append(name)
    return absent


def grpc_env(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``environ`` with ``GRPC_ENV``'s defaults: for a process about to load grpc."""
    for key, value in GRPC_ENV.items():
        environ.setdefault(key, value)
    return environ


def command(name: str, argv: Sequence[str], module: str | None = None) -> int:
    """Run ``grpc-proxy NAME ARGV`` (``main(argv)`` of ``module``, by default
    ``COMMANDS[name]``), or, without the demo extra, say so in one line on
    stderr and return 1."""
    if missing():
        print(f"grpc-proxy {name}: needs the demo extra: {INSTALL}", file=sys.stderr)
        return 1
    grpc_env(os.environ)  # this process is the backend (or the demo): before grpc loads
    main = importlib.import_module(module or COMMANDS[name]).main
    return int(main(list(argv)))
