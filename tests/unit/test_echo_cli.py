"""``grpc-proxy echo``'s argument handling (the process: tests/integration/test_echo_cli.py)."""

from __future__ import annotations

from typing import Any

import pytest

import proxy.echo
from proxy.config.model import Address
from proxy.echo_cli import _address, backend_options, parse_listen, parser, supports


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:0", "127.0.0.1", 0), ("127.0.0.1:50051", "127.0.0.1", 50051),
    ("0", "0.0.0.0", 0), ("50051", "0.0.0.0", 50051), ("*:50051", "0.0.0.0", 50051),
    ("[::1]:0", "::1", 0), ("localhost:7", "localhost", 7),
])
def test_parse_listen(text: str, host: str, port: int) -> None:
    assert parse_listen(text) == Address(host, port)


@pytest.mark.parametrize("argv", [
    [], ["--host", "127.0.0.1"], ["--port", "0"], ["--listen", "127.0.0.1:0"],
])
def test_default_and_old_spelling(argv: list[str]) -> None:
    p = parser()
    assert _address(p, p.parse_args(argv)) == Address("127.0.0.1", 0)


def test_old_spelling_sets_host_and_port() -> None:
    p = parser()
    args = p.parse_args(["--host", "0.0.0.0", "--port", "50051", "--name", "b", "--health"])
    assert _address(p, args) == Address("0.0.0.0", 50051)
    assert backend_options(p, args) == {"health": True, "delay_ms": 0}


def test_reflection_passed_only_to_a_backend_that_takes_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class WithReflection(proxy.echo.EchoBackend):
        def __init__(self, *a: Any, reflection: bool = False, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.reflection = reflection

    p = parser()
    plain = p.parse_args(["--health"])
    asked = p.parse_args(["--reflection"])
    monkeypatch.setattr(proxy.echo, "EchoBackend", WithReflection)
    assert supports("reflection")
    assert backend_options(p, asked) == {"health": False, "delay_ms": 0, "reflection": True}
    assert "reflection" not in backend_options(p, plain)

    class Without(proxy.echo.EchoBackend):
        def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1", *,
                     health: bool = False, delay_ms: int = 0) -> None:
            super().__init__(name, port, host, health=health, delay_ms=delay_ms)

    monkeypatch.setattr(proxy.echo, "EchoBackend", Without)
    assert not supports("reflection")
    assert backend_options(p, plain) == {"health": True, "delay_ms": 0}
    with pytest.raises(SystemExit) as info:
        backend_options(p, asked)
    assert info.value.code == 2
