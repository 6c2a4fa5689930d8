"""Access log lines: nginx's combined shape with the gRPC fields, and JSON."""

from __future__ import annotations

import json
import re

from proxy.access_log import format_combined, format_json, format_records
from proxy.config.model import Address

UA = [(b":path", b"/echo.Echo/Unary"), (b"user-agent", b'grpc-go/1.6 "x"')]


def record(**kw: object) -> tuple:
    base = dict(
        time=1_700_000_000.25,
        peer="10.1.2.3:40000",
        path="/echo.Echo/Unary",
        upstream="echo",
        endpoint=Address("127.0.0.1", 5001),
        http=200,
        grpc=0,
        seconds=0.0123456,
        req_bytes=10,
        res_bytes=20,
        req_msgs=1,
        res_msgs=2,
        error="",
        headers=UA,
    )
    base.update(kw)
    return tuple(base.values())


def test_combined_line() -> None:
    line = format_combined(record())
    assert re.fullmatch(
        r"10\.1\.2\.3 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"POST /echo\.Echo/Unary HTTP/2\.0" 200 20 "-" "grpc-go/1\.6 \\x22x\\x22" '
        r'0 OK 127\.0\.0\.1:5001 0\.012346 10 20 1 2 "-"\n',
        line,
    ), line


def test_combined_line_of_a_proxy_error_without_endpoint() -> None:
    line = format_combined(
        record(endpoint=None, grpc=14, error='connect "refused"\n', headers=None)
    )
    assert line.endswith(
        ' "-" "-" 14 UNAVAILABLE - 0.012346 10 20 1 2 "connect \\x22refused\\x22\\x0A"\n'
    )
    assert line.count("\n") == 1


def test_json_line() -> None:
    obj = json.loads(format_json(record(grpc=5)))
    assert obj == {
        "time": "2023-11-14T22:13:20.250+00:00",
        "client": "10.1.2.3:40000",
        "path": "/echo.Echo/Unary",
        "upstream": "echo",
        "endpoint": "127.0.0.1:5001",
        "http_status": 200,
        "grpc_status": 5,
        "code": "NOT_FOUND",
        "duration": 0.012346,
        "request_bytes": 10,
        "response_bytes": 20,
        "request_messages": 1,
        "response_messages": 2,
        "error": None,
        "user_agent": 'grpc-go/1.6 "x"',
    }


def test_records_become_lines() -> None:
    data = format_records([record(), record(path="/a/\u00e9")], as_json=True)
    lines = data.decode().splitlines()
    assert [json.loads(x)["path"] for x in lines] == ["/echo.Echo/Unary", "/a/\u00e9"]
