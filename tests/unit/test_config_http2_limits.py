"""The http2_* limit directives of a server block (issue 8)."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, parse_string
from proxy.config.model import Http2Limits

BASE = (
    "upstream u {{ server 127.0.0.1:1; }}\nserver {{ listen 127.0.0.1:9;\n{srv}\n"
    "location / {{ grpc_pass u; }} }}\n"
)


def conf(srv: str = "") -> str:
    return BASE.format(srv=srv)


def test_defaults() -> None:
    limits = parse_string(conf()).servers[0].http2
    assert limits == Http2Limits()
    assert (limits.max_header_size, limits.max_continuation_frames) == (16384, 8)
    assert (limits.max_reset_streams, limits.max_control_frames) == (250, 100)
    assert limits.max_window_updates_per_data_frame == 10
    assert limits.max_queued_control_frames == 1000


def test_values() -> None:
    c = parse_string(
        conf(
            "http2_max_header_size 64k; http2_max_continuation_frames 16; "
            "http2_max_reset_streams 500; http2_max_control_frames 20; "
            "http2_max_window_updates_per_data_frame 4; http2_max_queued_control_frames 300;"
        )
    )
    assert c.servers[0].http2 == Http2Limits(
        max_header_size=65536,
        max_continuation_frames=16,
        max_reset_streams=500,
        max_control_frames=20,
        max_window_updates_per_data_frame=4,
        max_queued_control_frames=300,
    )


@pytest.mark.parametrize(
    ("srv", "message"),
    [
        ("http2_max_header_size 512;", 'invalid value "512" in "http2_max_header_size"'),
        ("http2_max_header_size 17m;", "it must be from 1024 to 16777216"),
        ("http2_max_header_size 16q;", 'invalid size "16q"'),
        ("http2_max_control_frames 0;", "it must be from 1 to"),
        ("http2_max_reset_streams -1;", 'invalid value "-1"'),
        ("http2_max_window_updates_per_data_frame many;", 'invalid value "many"'),
        ("http2_max_continuation_frames 1 2;", "invalid number of arguments"),
        ("http2_max_queued_control_frames 5; http2_max_queued_control_frames 6;", "is duplicate"),
    ],
)
def test_errors(srv: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_string(conf(srv), "f.conf")
    assert str(e.value).startswith("f.conf:3: ")
    assert message in str(e.value)


def test_not_allowed_in_a_location() -> None:
    text = BASE.format(srv="").replace("grpc_pass u;", "grpc_pass u; http2_max_header_size 8k;")
    with pytest.raises(ConfigError, match="not allowed here"):
        parse_string(text, "f.conf")
