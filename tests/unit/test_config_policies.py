"""Upstream policy directives: balancing methods, subset, health_check,
queue_timeout, max_conns; defaults and FILE:LINE errors."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, parse_string
from proxy.config.model import Balance, HealthCheck, Upstream

SERVER = "server { listen 127.0.0.1:8080; location / { grpc_pass u; } }\n"


def upstream(body: str) -> Upstream:
    text = "upstream u {\n    server 127.0.0.1:1;\n" + body + "\n}\n" + SERVER
    return parse_string(text, "t.conf").upstreams["u"]


def error_of(body: str) -> str:
    with pytest.raises(ConfigError) as info:
        upstream(body)
    return str(info.value)


def test_defaults() -> None:
    u = upstream("")
    assert u.balance == Balance("round_robin")
    assert u.subset is None and not u.subset_fallback
    assert u.health_check is None and u.queue_timeout == 0.0
    assert u.servers[0].max_conns == 0


@pytest.mark.parametrize(
    ("line", "balance"),
    [
        ("random;", Balance("random")),
        ("random two;", Balance("random_two")),
        ("random two least_conn;", Balance("random_two")),
        ("least_conn;", Balance("least_conn")),
        ("ip_hash;", Balance("ip_hash")),
        ("hash $remote_addr;", Balance("hash", "$remote_addr")),
        ("hash $http_x_user_id consistent;", Balance("hash", "$http_x_user_id", True)),
        ("hash $grpc_method;", Balance("hash", "$grpc_method")),
        ("hash $grpc_service consistent;", Balance("hash", "$grpc_service", True)),
        ("least_time;", Balance("least_time")),
        ("least_time header;", Balance("least_time")),
    ],
)
def test_balancing_methods(line: str, balance: Balance) -> None:
    assert upstream(line).balance == balance


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("least_conn;\n    random;", "t.conf:4: load balancing method redefined"),
        ("ip_hash;\n    ip_hash;", "t.conf:4: load balancing method redefined"),
        (
            "random three;",
            't.conf:3: invalid parameter "three", only "random [two [least_conn]]" is supported',
        ),
        (
            "random two least_time;",
            't.conf:3: invalid parameter "two least_time", only '
            '"random [two [least_conn]]" is supported',
        ),
        (
            "hash $foo;",
            't.conf:3: invalid hash key "$foo", it must be one of $remote_addr, '
            "$http_NAME, $grpc_method, $grpc_service",
        ),
        ("hash $remote_addr sticky;", 't.conf:3: invalid parameter "sticky"'),
        ("hash;", 't.conf:3: invalid number of arguments in "hash" directive'),
        (
            "least_time last_byte;",
            't.conf:3: invalid parameter "last_byte", only "header" is supported',
        ),
        ("least_conn x;", 't.conf:3: invalid number of arguments in "least_conn" directive'),
        (
            "subset_fallback maybe;",
            't.conf:3: invalid value "maybe" in "subset_fallback" '
            'directive, it must be "any" or "off"',
        ),
        ("subset :path;", 't.conf:3: invalid metadata key ":path" in "subset" directive'),
        ("subset a;\n    subset b;", 't.conf:4: "subset" directive is duplicate'),
        ("queue_timeout soon;", 't.conf:3: invalid duration "soon"'),
        (
            "health_check interval=0s;",
            't.conf:3: invalid value "0s" in "interval", it must be more than 0',
        ),
        ("health_check fails=0;", 't.conf:3: invalid value "0" in "fails", it must be at least 1'),
        ("health_check uri=/x;", 't.conf:3: invalid parameter "uri=/x"'),
        ("health_check passes=1 passes=2;", 't.conf:3: duplicate parameter "passes"'),
    ],
)
def test_policy_errors(body: str, message: str) -> None:
    assert error_of(body).startswith(message), error_of(body)


def test_subset_health_check_queue_timeout() -> None:
    u = upstream(
        "subset Version;\n subset_fallback any;\n"
        "health_check interval=2s timeout=500ms fails=3 passes=2 service=echo.Echo;\n"
        "queue_timeout 3s;"
    )
    assert u.subset == "version"  # metadata keys are lower case on the wire
    assert u.subset_fallback
    assert u.health_check == HealthCheck(2.0, 0.5, 3, 2, "echo.Echo")
    assert u.queue_timeout == 3.0
    assert upstream("health_check;").health_check == HealthCheck()
    assert not upstream("subset_fallback off;").subset_fallback


def test_max_conns_and_meta() -> None:
    text = (
        "upstream u { server 127.0.0.1:1 max_conns=10 meta=version:v1,zone:a; "
        "server 127.0.0.1:2 max_conns=0; }\n" + SERVER
    )
    u = parse_string(text, "t.conf").upstreams["u"]
    assert u.servers[0].max_conns == 10 and u.servers[1].max_conns == 0
    assert u.servers[0].meta == (("version", "v1"), ("zone", "a"))
    with pytest.raises(ConfigError, match=r'^t.conf:1: invalid value "-1" in "max_conns"'):
        parse_string("upstream u { server 127.0.0.1:1 max_conns=-1; }\n" + SERVER, "t.conf")


def test_policy_directive_outside_upstream_is_not_allowed() -> None:
    with pytest.raises(ConfigError, match='"least_conn" directive is not allowed here'):
        parse_string("least_conn;\n" + SERVER, "t.conf")
