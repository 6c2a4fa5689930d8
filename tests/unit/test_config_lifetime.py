"""Directives of issue 5: connection timers, upstream keepalive, shutdown."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, parse_string
from proxy.config.model import ClientConnection

BASE = (
    "upstream u {{ server 127.0.0.1:1; {up} }}\nserver {{ listen 127.0.0.1:9; {srv} "
    "location / {{ grpc_pass u; }} }}\n{main}"
)


def conf(up: str = "", srv: str = "", main: str = "") -> str:
    return BASE.format(up=up, srv=srv, main=main)


def test_defaults() -> None:
    c = parse_string(conf())
    assert c.shutdown_timeout == 30
    assert (c.upstreams["u"].keepalive_time, c.upstreams["u"].keepalive_timeout) == (30, 10)
    assert c.servers[0].connection == ClientConnection()
    cc = c.servers[0].connection
    assert cc.keepalive_time is None and cc.keepalive_min_time == 5
    assert cc.idle_timeout == 600 and cc.header_timeout == 10
    assert cc.max_age is None and cc.max_age_grace is None


def test_values() -> None:
    c = parse_string(
        conf(
            up="keepalive_time 1s; keepalive_timeout 500ms;",
            srv="keepalive_time 2m; keepalive_timeout 3s; keepalive_min_time off; "
            "idle_timeout 1h; client_header_timeout 0; max_connection_age 30m; "
            "max_connection_age_grace 10s;",
            main="shutdown_timeout 1m;",
        )
    )
    assert c.shutdown_timeout == 60
    assert (c.upstreams["u"].keepalive_time, c.upstreams["u"].keepalive_timeout) == (1, 0.5)
    assert c.servers[0].connection == ClientConnection(
        keepalive_time=120,
        keepalive_timeout=3,
        keepalive_min_time=None,
        idle_timeout=3600,
        header_timeout=None,
        max_age=1800,
        max_age_grace=10,
    )
    assert parse_string(conf(up="keepalive_time off;")).upstreams["u"].keepalive_time is None
    assert parse_string(conf(main="shutdown_timeout off;")).shutdown_timeout == 0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (conf(up="keepalive_timeout off;"), 1, 'invalid duration "off"'),
        (conf(srv="keepalive_timeout 0;"), 2, "it must be more than 0"),
        (conf(srv="idle_timeout 5x;"), 2, 'invalid duration "5x"'),
        (conf(srv="idle_timeout 1s; idle_timeout 2s;"), 2, '"idle_timeout" directive is duplicate'),
        (conf(up="idle_timeout 1s;"), 1, '"idle_timeout" directive is not allowed here'),
        (conf(main="max_connection_age 1s;"), 3, '"max_connection_age" directive is not allowed'),
        (conf(srv="shutdown_timeout 1s;"), 2, '"shutdown_timeout" directive is not allowed here'),
    ],
)
def test_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_string(text, "f.conf")
    assert str(e.value).startswith(f"f.conf:{line}: ")
    assert message in str(e.value)
