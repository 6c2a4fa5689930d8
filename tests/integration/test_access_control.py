"""allow/deny -> 7 PERMISSION_DENIED, bearer tokens -> 16 UNAUTHENTICATED,
auth_strip seen at the backend, tokens re-read on SIGHUP and never logged."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from harness import (
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    upstream,
)

SECRET = "s3cr3t-Token_value.1"
OTHER = "another-token"


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_allow_deny_first_match_and_location_override(stack: Stack) -> None:
    b = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("echo", [addr(b.port)])],
            [
                location(
                    "/echo.Echo/Unary", "allow 127.0.0.1", "deny all", "grpc_pass echo", exact=True
                ),
                location("/echo.Echo/", "grpc_pass echo"),
            ],
            server_directives=["deny 127.0.0.0/8", "allow all"],
        )
    )
    client = stack.client(proxy.port)
    ok = client.unary(b"x")
    assert ok.ok, (ok, proxy_logs(stack))  # the location's own rules replace the server's
    denied = client.server_stream(b"x")
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED, denied
    assert denied.details == "access forbidden by rule"
    assert b.events.count("ServerStream") == 0


def test_bearer_tokens(stack: Stack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# team tokens\n\nalice:{SECRET}\n{OTHER}\n")
    b = stack.backend("b1")
    log_path = tmp_path / "access.log"
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("echo", [addr(b.port)])],
            [location("/echo.Echo/", "grpc_pass echo")],
            server_directives=[f"auth_bearer_tokens {tokens}", f"access_log {log_path}"],
        )
    )
    client = stack.client(proxy.port)
    missing = client.unary(b"x")
    assert missing.code == grpc.StatusCode.UNAUTHENTICATED, missing
    assert missing.details == "no bearer token"
    wrong = client.unary(b"x", metadata=bearer("nope"))
    assert wrong.code == grpc.StatusCode.UNAUTHENTICATED and wrong.details == "unknown bearer token"
    basic = client.unary(b"x", metadata=[("authorization", f"Basic {SECRET}")])
    assert basic.code == grpc.StatusCode.UNAUTHENTICATED
    assert b.events.count("Unary") == 0
    good = client.unary(b"hi", metadata=bearer(SECRET))
    assert good.ok and good.messages == [b"hi"], (good, proxy_logs(stack))
    assert client.unary(b"x", metadata=[("authorization", f"bearer {OTHER}")]).ok
    # forwarded upstream (no auth_strip)
    seen = [dict(c.metadata).get("authorization") for c in b.events.snapshot("Unary")]
    assert seen == [f"Bearer {SECRET}", f"bearer {OTHER}"]
    # the access log shows the token's name ($remote_user), never the token
    assert wait_for(lambda: log_path.exists() and len(log_path.read_text().splitlines()) >= 5)
    text = log_path.read_text()
    assert SECRET not in text and OTHER not in text and "nope" not in text
    lines = text.splitlines()
    assert " - alice [" in lines[3] and " - #4 [" in lines[4], lines
    assert " UNAUTHENTICATED " in lines[0]
    assert SECRET not in proxy.stderr()

    # SIGHUP re-reads the file: the old token stops working, a new one works
    tokens.write_text("bob:fresh-token\n")
    mark = len(proxy.stderr())
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in proxy.stderr()[mark:]), proxy_logs(stack)
    assert client.unary(b"x", metadata=bearer(SECRET)).code == grpc.StatusCode.UNAUTHENTICATED
    assert client.unary(b"x", metadata=bearer("fresh-token")).ok


def test_auth_strip_removes_authorization_upstream(stack: Stack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{SECRET}\n")
    b = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("echo", [addr(b.port)])],
            [
                location("/echo.Echo/Unary", "auth_strip off", "grpc_pass echo", exact=True),
                location("/echo.Echo/", "grpc_pass echo"),
            ],
            server_directives=[f"auth_bearer_tokens {tokens}", "auth_strip on"],
        )
    )
    client = stack.client(proxy.port)
    meta = [*bearer(SECRET), ("x-echo-keep", "yes")]
    stripped = client.server_stream(b"x", metadata=meta)
    assert stripped.ok, (stripped, proxy_logs(stack))
    assert stripped.initial_get("x-echo-keep") == ["yes"]  # other metadata untouched
    (call,) = b.events.snapshot("ServerStream")
    assert "authorization" not in dict(call.metadata)
    kept = client.unary(b"x", metadata=meta)
    assert kept.ok
    (call,) = b.events.snapshot("Unary")
    assert dict(call.metadata).get("authorization") == f"Bearer {SECRET}"


def test_bad_token_file_is_a_config_error(stack: Stack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("ok-token\nname:bad token with spaces\n")
    conf = tmp_path / "p.conf"
    conf.write_text(
        make_config(
            free_port(),
            [upstream("echo", ["127.0.0.1:1"])],
            [location("/", "grpc_pass echo")],
            server_directives=[f"auth_bearer_tokens {tokens}"],
        )
    )
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "proxy", "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr == f"{tokens}:2: invalid bearer token (RFC 6750 token characters only)\n"
    assert "spaces" not in r.stderr
