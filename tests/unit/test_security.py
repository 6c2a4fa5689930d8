"""Pure parts of TLS and access control: address rules, token files and the
constant-time check, the per-call access check, TLS and access directives in
the config (errors as FILE:LINE), subjects as RFC 4514 strings."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from types import ModuleType

import h2.events
import pytest
import trustme

from proxy.config import ConfigError, parse_string
from proxy.config.acl import Rule, parse_network
from proxy.config.model import Access, Location, Server
from proxy.config.tokens import TokenFileError, parse_tokens
from proxy.http2.connection import Connection
from proxy.relay.link import Link
from proxy.security.access import BAD_TOKEN, FORBIDDEN, NO_TOKEN, check
from proxy.security.acl import allowed, parse_ip
from proxy.security.tls import subject_of
from proxy.security.tokens import authenticate
from proxy.status import GrpcStatus
from tests.unit.test_relay import REQUEST, Rig

# ------------------------------------------------------------------ acl


def rules(*specs: str) -> tuple[Rule, ...]:
    out = []
    for spec in specs:
        verb, value = spec.split()
        out.append(Rule(verb == "allow", parse_network(value)))
    return tuple(out)


@pytest.mark.parametrize(
    ("specs", "ip", "expected"),
    [
        ((), "10.0.0.1", True),  # no rule: allowed (nginx)
        (("deny all",), "10.0.0.1", False),
        (("allow 10.0.0.0/8", "deny all"), "10.1.2.3", True),
        (("allow 10.0.0.0/8", "deny all"), "11.0.0.1", False),
        (("deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"), "10.0.0.1", False),  # first match wins
        (("deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"), "10.0.0.2", True),
        (("allow 2001:db8::/32", "deny all"), "2001:db8::5", True),
        (("allow 2001:db8::/32",), "10.0.0.1", True),  # other family: no match, allowed
        (("allow 127.0.0.1", "deny all"), "::ffff:127.0.0.1", True),  # v4-mapped counts as v4
    ],
)
def test_rules(specs: tuple[str, ...], ip: str, expected: bool) -> None:
    addr = parse_ip(f"[{ip}]:5" if ":" in ip else f"{ip}:5")
    assert allowed(rules(*specs), addr) is expected


def test_unknown_address_matches_only_all() -> None:
    assert allowed(rules("deny 0.0.0.0/0"), None) is True
    assert allowed(rules("deny all"), None) is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "low address bits of 10.0.0.1/8 are meaningless"),
        ("10.0.0.300", "invalid address or network '10.0.0.300'"),
        ("localhost", "invalid address or network 'localhost'"),
    ],
)
def test_bad_networks(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_network(value)


def test_parse_ip() -> None:
    assert parse_ip("1.2.3.4:80") == ipaddress.ip_address("1.2.3.4")
    assert parse_ip("[::1]:80") == ipaddress.ip_address("::1")
    assert parse_ip("?") is None


# ---------------------------------------------------------------- tokens


def test_token_file_parsing_and_names() -> None:
    t = parse_tokens("# comment\n\n  alice : tok-a \nbare.token+/==\n", "f")
    assert [name for name, _ in t.entries] == ["alice", "#4"]
    assert authenticate(t, b"Bearer tok-a") == "alice"
    assert authenticate(t, b"BEARER bare.token+/==") == "#4"
    assert authenticate(t, b"Bearer  tok-a ") == "alice"
    assert authenticate(t, b"Bearer tok-b") is None
    assert authenticate(t, b"Basic tok-a") is None
    assert authenticate(t, b"tok-a") is None
    assert authenticate(t, None) is None
    assert "tok-a" not in repr(t)  # only digests, and not even those in repr


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 0, "no tokens"),
        ("# only a comment\n", 0, "no tokens"),
        ("a:x\na:y\n", 2, 'duplicate token name "a"'),
        ("x\ny\nx\n", 3, "duplicate token"),
        ("has space\n", 1, "invalid bearer token"),
        ("bad name:tok\n", 1, "invalid token name"),
        ("n:\n", 1, "invalid bearer token"),
    ],
)
def test_token_file_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(TokenFileError) as info:
        parse_tokens(text, "f")
    assert info.value.line == line and info.value.message.startswith(message)


# ------------------------------------------------------- per-call check


def link(peer: str = "10.0.0.1:5555") -> Link:
    return Link(Connection(client=False, max_concurrent_streams=10), peer=peer)


HEADERS = [(b":path", b"/a/B"), (b"authorization", b"Bearer tok-a"), (b"x", b"y")]


def test_check_rules_then_tokens_then_strip() -> None:
    tokens = parse_tokens("alice:tok-a\n", "f")
    assert check(Access(rules("deny all"), tokens), link(), HEADERS)[0] is FORBIDDEN
    assert FORBIDDEN.grpc_status is GrpcStatus.PERMISSION_DENIED
    assert check(Access((), tokens), link(), HEADERS[:1])[0] is NO_TOKEN
    bad = [(b"authorization", b"Bearer nope")]
    assert check(Access((), tokens), link(), bad)[0] is BAD_TOKEN
    assert NO_TOKEN.grpc_status is BAD_TOKEN.grpc_status is GrpcStatus.UNAUTHENTICATED
    refusal, name, headers = check(Access((), tokens), link(), HEADERS)
    assert (refusal, name, headers) == (None, "alice", HEADERS)
    refusal, name, headers = check(Access((), tokens, strip=True), link(), HEADERS)
    assert refusal is None and name == "alice"
    assert headers == [(b":path", b"/a/B"), (b"x", b"y")]
    refusal, _, _ = check(Access(rules("allow 10.0.0.0/8", "deny all")), link(), HEADERS)
    assert refusal is None
    assert (
        check(Access(rules("allow 10.0.0.0/8", "deny all")), link("[::1]:1"), HEADERS)[0]
        is FORBIDDEN
    )


# ---------------------------------------------------------------- config


def server_of(body: str, file: str = "t.conf") -> Server:
    return parse_string(f"server {{ listen 1; {body} }}", file).servers[0]


def loc(server: Server, path: str) -> Location:
    return next(x for x in server.locations if x.path == path)


def test_access_inheritance(tmp_path: Path) -> None:
    tokens = tmp_path / "t"
    tokens.write_text("a:tok\n")
    s = server_of(
        f"deny 10.0.0.0/8; allow all; auth_bearer_tokens {tokens}; "
        "location /a { grpc_pass h:1; } "
        "location /b { allow 10.1.0.0/16; deny all; grpc_pass h:1; } "
        "location /c { auth_bearer_tokens off; auth_strip on; grpc_pass h:1; }",
        str(tmp_path / "p.conf"),
    )
    a, b, c = loc(s, "/a"), loc(s, "/b"), loc(s, "/c")
    assert a.access is not None and [str(r) for r in a.access.rules] == [
        "deny 10.0.0.0/8",
        "allow all",
    ]
    assert a.access.tokens is not None and not a.access.strip
    assert b.access is not None and [str(r) for r in b.access.rules] == [
        "allow 10.1.0.0/16",
        "deny all",
    ]
    assert b.access.tokens is a.access.tokens
    assert c.access is not None and c.access.tokens is None and c.access.strip
    # nothing configured: no check at all (the relay's free path)
    assert loc(server_of("location /x { grpc_pass h:1; }"), "/x").access is None


def test_relative_token_file_is_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("tok\n")
    s = server_of(
        "auth_bearer_tokens tokens; location / { grpc_pass h:1; }", str(tmp_path / "p.conf")
    )
    assert s.locations[0].access is not None
    assert s.locations[0].access.tokens.path == str(tmp_path / "tokens")  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    files = {"ca": ca.cert_pem, "crt": leaf.cert_chain_pems[0], "key": leaf.private_key_pem}
    out = {}
    for name, blob in files.items():
        out[name] = d / name
        blob.write_to_path(str(out[name]))
    out["garbage"] = d / "garbage"
    out["garbage"].write_text("not a certificate\n")
    return out


def test_server_tls_builds_a_context(certs: dict[str, Path]) -> None:
    s = server_of(
        f"listen 2 ssl; ssl_certificate {certs['crt']}; "
        f"ssl_certificate_key {certs['key']}; ssl_protocols TLSv1.3; "
        f"ssl_client_certificate {certs['ca']}; ssl_verify_client optional;"
    )
    assert s.listens[1].ssl and not s.listens[0].ssl
    assert s.tls is not None and s.tls.protocols == ("TLSv1.3",)
    ctx = s.tls.context
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode is ssl.CERT_OPTIONAL


def test_upstream_tls_settings(certs: dict[str, Path]) -> None:
    s = server_of(
        f"location /a {{ grpc_pass grpcs://backend.internal:443; }} "
        f"location /b {{ grpc_pass grpcs://h:1; grpc_ssl_verify off; "
        f"grpc_ssl_name api.example; grpc_ssl_certificate {certs['crt']}; "
        f"grpc_ssl_certificate_key {certs['key']}; }} "
        f"location /c {{ grpc_pass grpc://h:1; }}"
    )
    a, b, c = (loc(s, p).upstream_tls for p in ("/a", "/b", "/c"))
    assert a is not None and a.verify and a.name == "backend.internal"
    assert a.context.verify_mode is ssl.CERT_REQUIRED and a.context.check_hostname
    assert b is not None and not b.verify and b.name == "api.example"
    assert b.context.verify_mode is ssl.CERT_NONE
    assert c is None


def test_named_upstream_tls_name_is_the_upstream_name() -> None:
    config = parse_string(
        "upstream api { server h:1; } server { listen 1; "
        "location / { grpc_pass grpcs://api; grpc_ssl_verify off; } }"
    )
    tls = config.servers[0].locations[0].upstream_tls
    assert tls is not None and tls.name == "api"


def tls_errors(certs: dict[str, Path]) -> list[tuple[str, int, str]]:
    crt, key, ca, garbage = certs["crt"], certs["key"], certs["ca"], certs["garbage"]
    head = f"listen 2 ssl;\nssl_certificate {crt};\nssl_certificate_key {key};\n"
    return [
        (
            "listen 2 ssl;\n",
            1,
            'no "ssl_certificate" is defined for the "listen ... ssl" directive in t.conf:2',
        ),
        (f"listen 2 ssl;\nssl_certificate {crt};\n", 3, 'no "ssl_certificate_key" is defined'),
        ("ssl_verify_client on;\n", 2, '"ssl_verify_client" needs "ssl_certificate"'),
        (
            f"listen 2 ssl;\nssl_certificate /no/such.crt;\nssl_certificate_key {key};\n",
            3,
            'cannot load certificate "/no/such.crt": no such file or directory',
        ),
        (
            f"listen 2 ssl;\nssl_certificate {garbage};\nssl_certificate_key {key};\n",
            3,
            f'cannot load certificate "{garbage}" with key "{key}": ',
        ),
        (
            f"listen 2 ssl;\nssl_certificate {crt};\nssl_certificate_key {ca};\n",
            3,
            f'cannot load certificate "{crt}" with key "{ca}": ',
        ),
        (
            head + "ssl_protocols TLSv1.1 TLSv1.2;\n",
            5,
            '"TLSv1.1" is not supported, only TLSv1.2 and TLSv1.3',
        ),
        (head + "ssl_protocols TLSv9;\n", 5, 'invalid value "TLSv9" in "ssl_protocols"'),
        (head + "ssl_verify_client on;\n", 5, "no ssl_client_certificate for ssl_verify_client"),
        (head + "ssl_verify_client maybe;\n", 5, 'invalid value "maybe" in "ssl_verify_client"'),
        (
            head + f"ssl_client_certificate {garbage};\nssl_verify_client on;\n",
            5,
            f'cannot load client certificate "{garbage}": no certificate or crl found',
        ),
        (
            "location / {\ngrpc_pass grpcs://h:1;\ngrpc_ssl_trusted_certificate /no/ca;\n}\n",
            4,
            'cannot load trusted certificate "/no/ca": no such file or directory',
        ),
        (
            "location / {\ngrpc_pass grpcs://h:1;\ngrpc_ssl_verify yes;\n}\n",
            4,
            'invalid value "yes" in "grpc_ssl_verify" directive, it must be "on" or "off"',
        ),
        (
            f"location / {{\ngrpc_pass grpcs://h:1;\ngrpc_ssl_certificate {crt};\n}}\n",
            4,
            '"grpc_ssl_certificate" needs "grpc_ssl_certificate_key"',
        ),
        (
            "location / {\ngrpc_pass h:1;\ngrpc_ssl_name x;\n}\n",
            4,
            '"grpc_ssl_name" needs "grpc_pass grpcs://..."',
        ),
        ("allow 10.0.0.1/8;\n", 2, "low address bits of 10.0.0.1/8 are meaningless"),
        ("deny nowhere;\n", 2, "invalid address or network 'nowhere'"),
        ("auth_strip yes;\n", 2, 'invalid value "yes" in "auth_strip" directive'),
        (
            "auth_bearer_tokens /no/tokens;\n",
            2,
            'cannot read bearer tokens "/no/tokens": no such file or directory',
        ),
        (
            "auth_bearer_tokens a;\nauth_bearer_tokens b;\n",
            3,
            '"auth_bearer_tokens" directive is duplicate',
        ),
    ]


def test_tls_and_access_errors(certs: dict[str, Path]) -> None:
    for body, line, message in tls_errors(certs):
        with pytest.raises(ConfigError) as info:
            head = "server {\n" if body.startswith("listen") else "server { listen 1;\n"
            parse_string(head + body + "}\n", "t.conf")
        got = str(info.value)
        assert got.startswith(f"t.conf:{line}: {message}"), (body, got)


def test_empty_token_file_error_names_the_directive(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as info:
        parse_string(f"server {{ listen 1;\nauth_bearer_tokens {tmp_path / 't'}; }}", "t.conf")
    assert str(info.value) == f't.conf:2: no tokens in "{tmp_path / "t"}"'


# ------------------------------------------------------------ subjects


def test_subject_of() -> None:
    cert = {
        "subject": (
            (("countryName", "FR"),),
            (("organizationName", "A, B"),),
            (("commonName", "svc"),),
        )
    }
    assert subject_of(cert) == "CN=svc,O=A\\, B,C=FR"
    assert subject_of({}) is None and subject_of(None) is None


# ------------------------------------------------------ in the relay


def _rig_with(access: Access) -> tuple[Rig, list[tuple[bytes, bytes]], ModuleType]:
    rig = Rig()
    rig.down.peer = "10.0.0.1:4000"
    loc = Location("/", False, "u", access=access)
    rig.down.server = Server(rig.down.server.listens, (loc,))  # type: ignore[union-attr]
    return rig, REQUEST, h2.events


@pytest.mark.parametrize(
    ("access", "extra", "status"),
    [
        (Access(rules("deny all")), [], b"7"),
        (Access((), parse_tokens("a:tok\n", "f")), [], b"16"),
        (Access((), parse_tokens("a:tok\n", "f")), [(b"authorization", b"Bearer bad")], b"16"),
    ],
)
def test_relay_refuses_without_opening_an_upstream_stream(
    access: Access, extra: list[tuple[bytes, bytes]], status: bytes
) -> None:
    rig, request, events = _rig_with(access)
    rig.client.send_headers(1, request + extra, end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, events.ResponseReceived)
    assert dict(resp.headers)[b"grpc-status"] == status
    assert rig.of(rig.client_events, events.StreamEnded)
    assert not rig.of(rig.server_events, events.RequestReceived)
    assert not rig.relay.active


def test_relay_forwards_an_authenticated_call_stripped() -> None:
    rig, request, events = _rig_with(
        Access(rules("allow 10.0.0.0/8", "deny all"), parse_tokens("alice:tok\n", "f"), strip=True)
    )
    rig.client.send_headers(1, request + [(b"authorization", b"Bearer tok")], end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, events.RequestReceived)
    assert req.headers == request  # authorization removed
    (rs,) = rig.relay.active
    assert rs.user == "alice"
