"""TLS on both sides: h2 by ALPN, clients without h2 refused, client
certificates (on, optional), upstream grpcs with verification and mTLS, and
certificate reload on SIGHUP. Real grpcio clients and backends, real proxy,
trustme certificates."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from harness import (
    LOCALHOST,
    EchoClient,
    ProxyProcess,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    upstream,
)

from grpc_proxy_demo.echo import CHANNEL_OPTIONS, EchoBackend

UNARY = "Unary"  # as the backend's event log names methods
# The client connection preface and an empty SETTINGS frame.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


@dataclass
class Pki:
    """A CA and files: server cert (localhost, 127.0.0.1), a client cert, and
    a client cert from another CA."""

    dir: Path
    ca: trustme.CA
    ca_pem: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path
    other_client_key: Path

    def client_pems(self, other: bool = False) -> tuple[bytes, bytes]:
        cert, key = (
            (self.other_client_cert, self.other_client_key)
            if other
            else (self.client_cert, self.client_key)
        )
        return key.read_bytes(), cert.read_bytes()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _leaf(
    ca: trustme.CA, dir: Path, name: str, *identities: str, common_name: str | None = None
) -> tuple[Path, Path]:
    cert = ca.issue_cert(*identities, common_name=common_name)
    crt = _write(dir / f"{name}.crt", b"".join(b.bytes() for b in cert.cert_chain_pems))
    key = _write(dir / f"{name}.key", cert.private_key_pem.bytes())
    return crt, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    ca_pem = _write(d / "ca.pem", ca.cert_pem.bytes())
    server_cert, server_key = _leaf(ca, d, "server", "localhost", "127.0.0.1")
    client_cert, client_key = _leaf(ca, d, "client", "client.example", common_name="client-one")
    other_cert, other_key = _leaf(other, d, "other", "client.example")
    return Pki(
        d, ca, ca_pem, server_cert, server_key, client_cert, client_key, other_cert, other_key
    )


def tls_proxy(
    stack: Stack,
    pki: Pki,
    backend_port: int,
    *server_directives: str,
    locations: tuple[str, ...] = (),
) -> ProxyProcess:
    port = free_port()
    text = make_config(
        port,
        [upstream("echo", [addr(backend_port)], "connect_timeout 2s")],
        list(locations) or [location("/echo.Echo/", "grpc_pass echo")],
        server_directives=[
            f"ssl_certificate {pki.server_cert}",
            f"ssl_certificate_key {pki.server_key}",
            *server_directives,
        ],
    ).replace(" http2;", " http2 ssl;")
    return stack.proxy(text)


def tls_client(
    stack: Stack, port: int, pki: Pki, cert: tuple[bytes, bytes] | None = None
) -> EchoClient:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem.read_bytes(),
        private_key=cert[0] if cert else None,
        certificate_chain=cert[1] if cert else None,
    )
    ch = grpc.secure_channel(
        f"{LOCALHOST}:{port}",
        creds,
        options=[
            *CHANNEL_OPTIONS,
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.ssl_target_name_override", "localhost"),
        ],
    )
    stack.defer(ch.close)
    return EchoClient(ch)


def raw_tls(
    port: int, alpn: list[str] | None, ca: Path | None = None, timeout: float = 5.0
) -> tuple[str | None, bytes, bytes]:
    """Python ssl straight to the proxy: (negotiated ALPN, the first bytes the
    proxy sends within ``timeout`` (b"" if it closed), the peer cert DER)."""
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    with (
        socket.create_connection((LOCALHOST, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        der = s.getpeercert(binary_form=True) or b""
        negotiated = s.selected_alpn_protocol()
        try:
            s.sendall(PREFACE)
            data = s.recv(64)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        return negotiated, data, der


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# ------------------------------------------------------------ client side


def test_h2_over_tls_by_alpn_works(stack: Stack, pki: Pki) -> None:
    b = stack.backend("b1")
    proxy = tls_proxy(stack, pki, b.port)
    r = tls_client(stack, proxy.port, pki).unary(b"hello")
    assert r.ok and r.messages == [b"hello"] and r.backend == "b1", (r, proxy_logs(stack))
    # ALPN selected h2, and the proxy speaks HTTP/2 first (its SETTINGS frame).
    negotiated, data, _ = raw_tls(proxy.port, ["h2"], pki.ca_pem)
    assert negotiated == "h2"
    assert len(data) >= 9 and data[3] == 0x4  # frame type SETTINGS


@pytest.mark.parametrize("alpn", [None, ["http/1.1"]], ids=["no-alpn", "http1.1-only"])
def test_client_without_alpn_h2_is_closed_after_the_handshake(
    stack: Stack, pki: Pki, alpn: list[str] | None
) -> None:
    b = stack.backend("b1")
    proxy = tls_proxy(stack, pki, b.port)
    negotiated, data, _ = raw_tls(proxy.port, alpn, pki.ca_pem)
    assert negotiated is None  # Python's ssl completes the handshake without ALPN
    assert data == b""  # ... and the proxy closes at once, sending nothing
    assert wait_for(lambda: "did not negotiate ALPN h2" in proxy.stderr(), 5)
    assert proxy.alive
    assert tls_client(stack, proxy.port, pki).unary(b"x").ok


def test_plaintext_client_on_a_tls_listen_fails_cleanly(stack: Stack, pki: Pki) -> None:
    b = stack.backend("b1")
    proxy = tls_proxy(stack, pki, b.port)
    r = stack.client(proxy.port).unary(b"x", timeout=5)
    assert r.code == grpc.StatusCode.UNAVAILABLE
    assert proxy.alive and tls_client(stack, proxy.port, pki).unary(b"x").ok


def test_mtls_required_accepts_a_good_client_cert_and_rejects_others(
    stack: Stack, pki: Pki
) -> None:
    b = stack.backend("b1")
    proxy = tls_proxy(
        stack, pki, b.port, f"ssl_client_certificate {pki.ca_pem}", "ssl_verify_client on"
    )
    good = tls_client(stack, proxy.port, pki, pki.client_pems()).unary(b"x", timeout=10)
    assert good.ok, (good, proxy_logs(stack))
    none = tls_client(stack, proxy.port, pki).unary(b"x", timeout=10)
    assert none.code == grpc.StatusCode.UNAVAILABLE, none
    wrong = tls_client(stack, proxy.port, pki, pki.client_pems(other=True)).unary(b"x", timeout=10)
    assert wrong.code == grpc.StatusCode.UNAVAILABLE, wrong
    assert b.events.count(UNARY) == 1  # only the good client got through
    assert "TLS handshake failed" in proxy.stderr()


def test_optional_client_cert_subject_reaches_the_access_log(
    stack: Stack, pki: Pki, tmp_path: Path
) -> None:
    b = stack.backend("b1")
    log_path = tmp_path / "access.log"
    proxy = tls_proxy(
        stack,
        pki,
        b.port,
        f"ssl_client_certificate {pki.ca_pem}",
        "ssl_verify_client optional",
        f"access_log {log_path} json",
    )
    assert tls_client(stack, proxy.port, pki).unary(b"anonymous").ok
    assert tls_client(stack, proxy.port, pki, pki.client_pems()).unary(b"known").ok
    wrong = tls_client(stack, proxy.port, pki, pki.client_pems(other=True)).unary(b"x", timeout=10)
    assert wrong.code == grpc.StatusCode.UNAVAILABLE  # presented, so it must verify

    def lines() -> list[dict[str, object]]:
        text = log_path.read_text() if log_path.exists() else ""
        return [json.loads(x) for x in text.splitlines()]

    assert wait_for(lambda: len(lines()) >= 2), proxy_logs(stack)
    records = lines()
    assert len(records) == 2
    assert "tls_subject" not in records[0]
    subject = str(records[1]["tls_subject"])
    assert subject.startswith("CN=client-one,OU=Testing cert #"), subject


def test_sighup_reloads_the_certificate(stack: Stack, pki: Pki, tmp_path: Path) -> None:
    b = stack.backend("b1")
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    port = free_port()
    text = make_config(
        port,
        [upstream("echo", [addr(b.port)])],
        [location("/echo.Echo/", "grpc_pass echo")],
        server_directives=[f"ssl_certificate {cert}", f"ssl_certificate_key {key}"],
    ).replace(" http2;", " http2 ssl;")
    proxy = stack.proxy(text)
    _, _, first = raw_tls(proxy.port, ["h2"], pki.ca_pem)
    assert first == ssl.PEM_cert_to_DER_cert(
        pki.server_cert.read_text().split("-----END")[0] + "-----END CERTIFICATE-----\n"
    )
    new_crt, new_key = _leaf(pki.ca, tmp_path, "renewed", "localhost", "127.0.0.1")
    cert.write_bytes(new_crt.read_bytes())
    key.write_bytes(new_key.read_bytes())
    new_der = ssl.PEM_cert_to_DER_cert(
        new_crt.read_text().split("-----END")[0] + "-----END CERTIFICATE-----\n"
    )
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in proxy.stderr()), proxy_logs(stack)
    _, _, presented = raw_tls(proxy.port, ["h2"], pki.ca_pem)
    assert presented == new_der != first
    assert tls_client(stack, proxy.port, pki).unary(b"x").ok


# ----------------------------------------------------------- upstream side


def tls_backend(stack: Stack, pki: Pki, name: str, require_client: bool = False) -> EchoBackend:
    creds = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_pem.read_bytes() if require_client else None,
        require_client_auth=require_client,
    )
    backend = EchoBackend(name, credentials=creds)
    backend.start()
    stack.defer(backend.stop)
    return backend


def grpcs_proxy(stack: Stack, backend: EchoBackend, *directives: str) -> ProxyProcess:
    port = free_port()
    return stack.proxy(
        make_config(
            port,
            [],
            [location("/echo.Echo/", f"grpc_pass grpcs://127.0.0.1:{backend.port}", *directives)],
        )
    )


def test_upstream_grpcs_with_verification(stack: Stack, pki: Pki) -> None:
    b = tls_backend(stack, pki, "tls1")
    proxy = grpcs_proxy(
        stack, b, f"grpc_ssl_trusted_certificate {pki.ca_pem}", "grpc_ssl_name localhost"
    )
    client = stack.client(proxy.port)
    for _ in range(3):  # one shared TLS connection
        r = client.unary(b"secure")
        assert r.ok and r.messages == [b"secure"] and r.backend == "tls1", (r, proxy_logs(stack))
    # the default name is the grpc_pass host: 127.0.0.1, in the cert's IP SANs
    proxy2 = grpcs_proxy(stack, b, f"grpc_ssl_trusted_certificate {pki.ca_pem}")
    assert stack.client(proxy2.port).unary(b"x").ok, proxy_logs(stack)


def test_upstream_grpcs_wrong_name_is_unavailable(stack: Stack, pki: Pki) -> None:
    b = tls_backend(stack, pki, "tls1")
    proxy = grpcs_proxy(
        stack, b, f"grpc_ssl_trusted_certificate {pki.ca_pem}", "grpc_ssl_name wrong.example"
    )
    r = stack.client(proxy.port).unary(b"x", timeout=10)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    assert "certificate verify failed" in r.details and "wrong.example" in r.details, r.details
    assert b.events.count(UNARY) == 0


def test_upstream_grpcs_verifies_by_default(stack: Stack, pki: Pki) -> None:
    """No grpc_ssl_trusted_certificate: the system store, which does not
    trust the test CA; grpc_ssl_verify off then connects."""
    b = tls_backend(stack, pki, "tls1")
    strict = grpcs_proxy(stack, b)
    r = stack.client(strict.port).unary(b"x", timeout=10)
    assert r.code == grpc.StatusCode.UNAVAILABLE and "certificate verify failed" in r.details
    lax = grpcs_proxy(stack, b, "grpc_ssl_verify off")
    assert stack.client(lax.port).unary(b"x").ok, proxy_logs(stack)


def test_upstream_mtls_client_certificate(stack: Stack, pki: Pki) -> None:
    b = tls_backend(stack, pki, "mtls", require_client=True)
    without = grpcs_proxy(stack, b, f"grpc_ssl_trusted_certificate {pki.ca_pem}")
    r = stack.client(without.port).unary(b"x", timeout=10)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    with_cert = grpcs_proxy(
        stack,
        b,
        f"grpc_ssl_trusted_certificate {pki.ca_pem}",
        f"grpc_ssl_certificate {pki.client_cert}",
        f"grpc_ssl_certificate_key {pki.client_key}",
    )
    r = stack.client(with_cert.port).unary(b"mutual")
    assert r.ok and r.messages == [b"mutual"], (r, proxy_logs(stack))


def test_tls_on_both_sides(stack: Stack, pki: Pki) -> None:
    b = tls_backend(stack, pki, "tls1")
    proxy = tls_proxy(
        stack,
        pki,
        b.port,
        locations=(
            location(
                "/echo.Echo/",
                f"grpc_pass grpcs://127.0.0.1:{b.port}",
                f"grpc_ssl_trusted_certificate {pki.ca_pem}",
            ),
        ),
    )
    client = tls_client(stack, proxy.port, pki)
    r = client.server_stream(b"abc", metadata=[("x-count", "5")])
    assert r.ok and r.messages == [b"abc"] * 5, (r, proxy_logs(stack))


def test_health_checks_of_a_grpcs_upstream_use_tls(stack: Stack, pki: Pki) -> None:
    creds = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())]
    )
    b = EchoBackend("tlshealth", credentials=creds, health=True)
    b.start()
    stack.defer(b.stop)
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("secure", [addr(b.port)], "health_check interval=200ms timeout=2s")],
            [
                location(
                    "/echo.Echo/",
                    "grpc_pass grpcs://secure",
                    "grpc_ssl_name localhost",
                    f"grpc_ssl_trusted_certificate {pki.ca_pem}",
                )
            ],
        )
    )
    client = stack.client(proxy.port)
    assert client.unary(b"x").ok, proxy_logs(stack)
    b.set_serving(False)  # the probes reach the backend: they see NOT_SERVING
    assert wait_for(lambda: "is unhealthy" in proxy.stderr()), proxy_logs(stack)
    # over plaintext the probes would fail for another reason, and earlier
    assert "is unhealthy: NOT_SERVING" in proxy.stderr(), proxy_logs(stack)
    b.set_serving(True)
    assert wait_for(lambda: "is healthy again" in proxy.stderr()), proxy_logs(stack)
    assert client.unary(b"y").ok
