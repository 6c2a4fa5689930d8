"""``etcd`` and ``etcd_*`` in ``upstream`` (proxy/config/etcd_directives.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, parse_string
from proxy.config.model import (
    DEFAULT_ETCD_DIAL_TIMEOUT,
    DEFAULT_ETCD_WATCH_REOPEN,
    DEFAULT_ETCD_WATCH_TIMEOUT,
    Upstream,
)

SERVER = "server { listen 127.0.0.1:9000; location / { grpc_pass u; } }\n"


def upstream(body: str) -> Upstream:
    return parse_string(f"upstream u {{\n{body}\n}}\n{SERVER}", "t.conf").upstreams["u"]


def error_of(body: str) -> str:
    with pytest.raises(ConfigError) as e:
        upstream(body)
    return str(e.value)


def test_etcd_only_upstream_with_defaults() -> None:
    u = upstream("etcd http://127.0.0.1:2379,http://127.0.0.1:22379/ prefix=/services/users/;")
    assert u.servers == ()
    assert u.etcd is not None
    assert u.etcd.urls == ("http://127.0.0.1:2379", "http://127.0.0.1:22379")
    assert u.etcd.prefix == "/services/users/"
    assert u.etcd.dial_timeout == DEFAULT_ETCD_DIAL_TIMEOUT
    assert u.etcd.watch_timeout == DEFAULT_ETCD_WATCH_TIMEOUT
    assert u.etcd.watch_reopen == DEFAULT_ETCD_WATCH_REOPEN
    assert (u.etcd.username, u.etcd.password, u.etcd.tls_ca) == (None, None, None)
    assert str(u.etcd.source) == "t.conf:2"


def test_no_etcd_means_none() -> None:
    assert upstream("server 127.0.0.1:1;").etcd is None


def test_static_servers_and_etcd_combine(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    for f in (ca, cert, key):
        f.write_text("x")
    u = upstream(f"""server 127.0.0.1:1;
        etcd https://e1:2379 prefix=/s/ watch_timeout=2s watch_reopen=1m;
        etcd_username proxy; etcd_password_file {pw};
        etcd_tls_ca {ca}; etcd_tls_cert {cert}; etcd_tls_key {key};
        etcd_dial_timeout 500ms;""")
    assert len(u.servers) == 1 and u.etcd is not None
    assert (u.etcd.username, u.etcd.password) == ("proxy", "s3cret")
    assert (u.etcd.tls_ca, u.etcd.tls_cert, u.etcd.tls_key) == (str(ca), str(cert), str(key))
    assert (u.etcd.dial_timeout, u.etcd.watch_timeout, u.etcd.watch_reopen) == (0.5, 2.0, 60.0)
    assert "s3cret" not in repr(u)


def test_inline_password() -> None:
    u = upstream("etcd http://h:1 prefix=/s/; etcd_username a; etcd_password b;")
    assert u.etcd is not None and (u.etcd.username, u.etcd.password) == ("a", "b")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("etcd 127.0.0.1:2379 prefix=/s/;", 't.conf:2: invalid etcd URL "127.0.0.1:2379"'),
        ("etcd ftp://h:1 prefix=/s/;", 't.conf:2: invalid etcd URL "ftp://h:1"'),
        ("etcd http://h prefix=/s/;", "it needs a host and a port"),
        ("etcd http://h:1/v3 prefix=/s/;", "only scheme, host and port"),
        ("etcd http://h:1,, prefix=/s/;", 'invalid etcd URL ""'),
        ("etcd http://h:1;", 't.conf:2: "etcd" directive needs prefix='),
        ("etcd http://h:1 prefix=;", 'empty "prefix"'),
        ("etcd http://h:1 prefix=/a/ prefix=/b/;", 'duplicate parameter "prefix"'),
        ("etcd http://h:1 prefix=/a/ bogus=1;", 'invalid parameter "bogus=1"'),
        (
            "etcd http://h:1 prefix=/a/ watch_timeout=0;",
            'in "watch_timeout", it must be more than 0',
        ),
        ("etcd http://h:1 prefix=/a/ watch_reopen=x;", 'invalid duration "x"'),
        (
            "etcd http://h:1 prefix=/a/;\netcd http://h:2 prefix=/b/;",
            't.conf:3: "etcd" directive is duplicate',
        ),
        ("etcd_username a;", 't.conf:2: "etcd_username" needs an "etcd" directive'),
        ("etcd http://h:1 prefix=/s/; etcd_username a;", "a password go together"),
        (
            "etcd http://h:1 prefix=/s/; etcd_password_file /nonexistent/pw;",
            't.conf:2: cannot read "/nonexistent/pw" in "etcd_password_file"',
        ),
        (
            "etcd http://h:1 prefix=/s/; etcd_tls_ca /nonexistent/ca;",
            'cannot read "/nonexistent/ca"',
        ),
        ("etcd http://h:1 prefix=/s/; etcd_dial_timeout 0;", "it must be more than 0"),
    ],
)
def test_errors(body: str, message: str) -> None:
    assert message in error_of(body)


def test_tls_needs_https_and_key(tmp_path: Path) -> None:
    f = tmp_path / "f.pem"
    f.write_text("x")
    assert "need https://" in error_of(f"etcd http://h:1 prefix=/s/; etcd_tls_ca {f};")
    assert "go together" in error_of(f"etcd https://h:1 prefix=/s/; etcd_tls_cert {f};")


def test_password_and_file_are_exclusive(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("x")
    body = f"etcd http://h:1 prefix=/s/; etcd_username u; etcd_password p; etcd_password_file {f};"
    assert "exclusive" in error_of(body)


def test_upstream_without_servers_or_etcd_still_fails() -> None:
    assert 'upstream "u" has no servers' in error_of("")


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("http://etcd:2379", "http://etcd:2379"),
        ("https://[::1]:2379/", "https://[::1]:2379"),
    ],
)
def test_etcd_url_normalizes(url: str, normalized: str) -> None:
    from proxy.config.etcd_directives import etcd_url

    assert etcd_url(url) == normalized


@pytest.mark.parametrize(
    "url", ["foo://x:1", "x:2379", "http://x", "http://[::1", "", "http://u@x:1", "http://x:1/v3"]
)
def test_etcd_url_rejects(url: str) -> None:
    from proxy.config.etcd_directives import etcd_url
    from proxy.config.units import UnitError

    with pytest.raises(UnitError, match="invalid etcd URL"):
        etcd_url(url)


def test_etcd_url_with_an_unclosed_bracket_is_a_config_error() -> None:
    assert error_of('etcd "http://[::1" prefix=/s/;') == (
        't.conf:2: invalid etcd URL "http://[::1", it must be http://host:port or https://host:port'
    )


def test_register_checks_its_etcd_urls_first() -> None:
    from proxy.discovery import registration

    assert registration.etcd_urls(["http://a:1, https://b:2/", "http://c:3"]) == [
        "http://a:1",
        "https://b:2",
        "http://c:3",
    ]
    for bad in (["foo://x"], [","], []):
        with pytest.raises(ValueError):
            registration.etcd_urls(bad)
    p = registration._parser()
    args = p.parse_args(["--etcd", "foo://x", "--prefix", "/s/", "--address", "h:1"])
    with pytest.raises(SystemExit) as info:
        registration._check_args(p, args)
    assert info.value.code == 1
