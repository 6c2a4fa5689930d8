"""admin, access_log and metrics_max_methods: parsing, defaults, errors."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, parse_string
from proxy.config.model import DEFAULT_METRICS_MAX_METHODS, AccessLog, Address
from proxy.status import GrpcStatus, status_of_final_headers

SERVER = "server { listen 127.0.0.1:8080; location / { grpc_pass 127.0.0.1:9000; } }\n"


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_string(text, "/etc/gp/main.conf")


def error(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse(text)
    return str(e.value)


def test_defaults_are_off() -> None:
    c = parse(SERVER)
    assert c.admin is None and c.access_log is None
    assert c.metrics_max_methods == DEFAULT_METRICS_MAX_METHODS == 1000
    assert c.servers[0].access_log is None


def test_admin_bare_port_binds_loopback() -> None:
    assert parse("admin { listen 9901; }\n" + SERVER).admin.listen == Address("127.0.0.1", 9901)
    c = parse("admin { listen 0.0.0.0:9901; }\n" + SERVER)
    assert c.admin.listen == Address("0.0.0.0", 9901)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "admin { listen 8080; }\n" + SERVER,
            "/etc/gp/main.conf:1: admin listen 127.0.0.1:8080 shares port 8080 with the server "
            "listen at /etc/gp/main.conf:2",
        ),
        ("admin { }\n", "/etc/gp/main.conf:1: admin has no listen"),
        ("admin { listen 1; listen 2; }\n", '/etc/gp/main.conf:1: "listen" directive is duplicate'),
        (
            "admin { listen 1; }\nadmin { listen 2; }\n",
            '/etc/gp/main.conf:2: "admin" directive is duplicate',
        ),
        (
            "admin { listen 99999; }\n",
            '/etc/gp/main.conf:1: invalid address "127.0.0.1:99999", the port must be 1-65535',
        ),
        (
            "admin { grpc_pass x; }\n",
            '/etc/gp/main.conf:1: "grpc_pass" directive is not allowed here',
        ),
        ("access_log off json;\n", '/etc/gp/main.conf:1: invalid parameter "json"'),
        (
            "access_log a.log main;\n",
            '/etc/gp/main.conf:1: invalid parameter "main", it must be "json" or "combined"',
        ),
        (
            "access_log syslog:server=x;\n",
            "/etc/gp/main.conf:1: syslog access logs are not supported",
        ),
        (
            "metrics_max_methods 0;\n",
            '/etc/gp/main.conf:1: invalid value "0" in "metrics_max_methods" directive, '
            "it must be at least 1",
        ),
        (
            "server { listen 1; metrics_max_methods 5; }\n",
            '/etc/gp/main.conf:1: "metrics_max_methods" directive is not allowed here',
        ),
    ],
)
def test_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_access_log_paths_formats_and_server_override() -> None:
    c = parse(
        "access_log logs/access.log;\n"
        "server { listen 1; access_log stderr json; location / { grpc_pass a:1; } }\n"
        "server { listen 2; location / { grpc_pass a:1; } }\n"
        "server { listen 3; access_log off; location / { grpc_pass a:1; } }\n"
    )
    assert c.access_log == AccessLog("/etc/gp/logs/access.log", json=False)
    assert [s.access_log for s in c.servers] == [
        AccessLog("stderr", json=True),
        None,
        AccessLog("off"),
    ]
    assert not c.servers[2].access_log.enabled
    assert parse("access_log /var/log/a.log combined;\n").access_log == AccessLog("/var/log/a.log")


@pytest.mark.parametrize(
    "headers, status",
    [
        (None, GrpcStatus.INTERNAL),
        ([(b"grpc-status", b"0")], GrpcStatus.OK),
        ([(b"grpc-message", b"x"), (b"grpc-status", b"14")], GrpcStatus.UNAVAILABLE),
        ([(b"grpc-status", b"99")], GrpcStatus.UNKNOWN),
        ([(b":status", b"503")], GrpcStatus.UNAVAILABLE),
        ([(b":status", b"404")], GrpcStatus.UNIMPLEMENTED),
        ([(b":status", b"200")], GrpcStatus.UNKNOWN),
        ([], GrpcStatus.UNKNOWN),
    ],
)
def test_status_of_final_headers(headers: list | None, status: GrpcStatus) -> None:
    assert status_of_final_headers(headers) == status
