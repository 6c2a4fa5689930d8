"""Warnings about a valid configuration: things that are allowed but are
probably not what was meant. Each is one line, ``FILE: warning: message``,
printed by ``grpc-proxy -t`` (which still exits 0) and logged at start and on
reload."""

from __future__ import annotations

from proxy.config.model import Config


def warnings(config: Config) -> list[str]:
    out: list[str] = []
    if not config.servers:
        out.append(f"{config.file}: warning: no server blocks: nothing to serve")
    return out
