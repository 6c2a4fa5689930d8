"""``grpc-proxy echo``'s argument handling (the process: tests/integration/test_echo_cli.py)."""

from __future__ import annotations

import pytest

from grpc_proxy_demo.echo_cli import _address, backend_options, parse_listen, parser
from proxy.config.model import Address


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:0", "127.0.0.1", 0),
        ("127.0.0.1:50051", "127.0.0.1", 50051),
        ("0", "0.0.0.0", 0),
        ("50051", "0.0.0.0", 50051),
        ("*:50051", "0.0.0.0", 50051),
        ("[::1]:0", "::1", 0),
        ("localhost:7", "localhost", 7),
    ],
)
def test_parse_listen(text: str, host: str, port: int) -> None:
    assert parse_listen(text) == Address(host, port)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--host", "127.0.0.1"],
        ["--port", "0"],
        ["--listen", "127.0.0.1:0"],
    ],
)
def test_default_and_old_spelling(argv: list[str]) -> None:
    p = parser()
    assert _address(p, p.parse_args(argv)) == Address("127.0.0.1", 0)


def test_old_spelling_sets_host_and_port() -> None:
    p = parser()
    args = p.parse_args(["--host", "0.0.0.0", "--port", "50051", "--name", "b", "--health"])
    assert _address(p, args) == Address("0.0.0.0", 50051)
    assert backend_options(p, args) == {"health": True, "delay_ms": 0, "reflection": False}


def test_reflection_is_passed_when_asked_for() -> None:
    p = parser()
    assert backend_options(p, p.parse_args(["--reflection"]))["reflection"] is True
    assert backend_options(p, p.parse_args([]))["reflection"] is False
