"""Arbitrary input gives a Config or a one-line ``FILE:LINE: message``
ConfigError: never another exception, never the internal-error fallback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config import Config, ConfigError, parse_string

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (REPO / "conf" / "grpc-proxy.conf").read_text()
ERROR_FORMAT = re.compile(r"[^\n]+:\d+: [^\n]+")

# Words and punctuation that reach deep into the parser and the builder.
SOUP = [
    "{",
    "}",
    ";",
    '"',
    "'",
    "#",
    "\\",
    "\n",
    "=",
    "^~",
    "~",
    "worker_processes",
    "auto",
    "upstream",
    "server",
    "location",
    "listen",
    "include",
    "grpc_pass",
    "connect_timeout",
    "grpc_read_timeout",
    "grpc_send_timeout",
    "grpc_connect_timeout",
    "grpc_next_upstream_tries",
    "http2_max_concurrent_streams",
    "u",
    "/",
    "/a",
    "/a/b",
    "h:1",
    "127.0.0.1:50051",
    "[::1]:2",
    "[::1]",
    "8080",
    "*:8080",
    "0",
    "1",
    "-1",
    "65536",
    "99999999999999999999",
    "off",
    "5m",
    "1m30s",
    "5x",
    "500ms",
    "http2",
    "ssl",
    "reuseport",
    "weight=2",
    "weight=0",
    "max_fails=1",
    "fail_timeout=1s",
    "backup",
    "down",
    "meta=a:b",
    "meta=a",
    "grpc://u",
    "grpc://h:1",
    "grpcs://h:1",
    "frag.inc",
    "broken.inc",
    "self.inc",
    "missing.inc",
    "*.inc",
    "none*.x",
    "http2_max_header_size",
    "http2_max_continuation_frames",
    "http2_max_reset_streams",
    "http2_max_control_frames",
    "http2_max_window_updates_per_data_frame",
    "http2_max_queued_control_frames",
    "16k",
    "1m",
    "17m",
]


@pytest.fixture(scope="module")
def conf_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file name whose directory holds includes the soup can reach."""
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "frag.inc").write_text("grpc_pass u;\n")
    (directory / "broken.inc").write_text("server {\n")
    (directory / "self.inc").write_text("include self.inc;\n")
    return str(directory / "fuzz.conf")


def check(text: str, file: str) -> None:
    try:
        result = parse_string(text, file)
    except ConfigError as e:
        message = str(e)
        assert ERROR_FORMAT.fullmatch(message), message
        assert message.startswith(f"{e.file}:{e.line}: ")
        assert "internal error" not in message, message
    else:
        assert isinstance(result, Config)


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(conf_file: str, text: str) -> None:
    check(text, conf_file)


@FUZZ
@given(st.lists(st.sampled_from(SOUP), max_size=60), st.sampled_from([" ", "", "\n"]))
def test_token_soup(conf_file: str, words: list[str], sep: str) -> None:
    check(sep.join(words), conf_file)


@FUZZ
@given(st.data())
def test_mutated_default_config(conf_file: str, data: st.DataObject) -> None:
    """Cut a slice of the default file and splice in some soup."""
    start = data.draw(st.integers(0, len(DEFAULT_TEXT)))
    end = data.draw(st.integers(start, min(len(DEFAULT_TEXT), start + 40)))
    insert = data.draw(st.lists(st.sampled_from(SOUP), max_size=4))
    check(DEFAULT_TEXT[:start] + " ".join(insert) + DEFAULT_TEXT[end:], conf_file)


def test_deep_nesting_is_an_error_not_a_crash(conf_file: str) -> None:
    check("server {" * 20_000 + "}" * 20_000, conf_file)
    check("a {" * 20_000, conf_file)
