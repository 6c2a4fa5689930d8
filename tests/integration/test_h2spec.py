"""The public HTTP/2 conformance suite, h2spec, against a running proxy: plain
(h2c prior knowledge, with --strict) and TLS (ALPN h2).

h2spec is a Go binary that no registry this project installs from carries, so
this test runs only where one is on PATH (docs/configuration.md, "Conformance
testing", says how to build it); the same cases are held case by case without
it in tests/unit/test_http2_conformance.py and tests/unit/test_relay.py."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import trustme
from harness import LOCALHOST, Stack, addr, free_port, location, make_config, upstream

H2SPEC = shutil.which("h2spec")
pytestmark = pytest.mark.skipif(H2SPEC is None, reason="h2spec is not on PATH")


def _run(port: int, *flags: str) -> str:
    assert H2SPEC is not None
    done = subprocess.run(
        [H2SPEC, "-h", LOCALHOST, "-p", str(port), "-o", "2", *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout + done.stderr


def _summary(out: str) -> tuple[int, int]:
    m = re.search(r"(\d+) tests, (\d+) passed, \d+ skipped, (\d+) failed", out)
    assert m, out[-2000:]
    return int(m.group(1)), int(m.group(3))


def test_h2spec_strict_h2c_all_cases_pass(stack: Stack) -> None:
    backend = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(port, [upstream("b", [addr(backend.port)])], [location("/", "grpc_pass b")])
    )
    total, failed = _summary(_run(proxy.port, "--strict"))
    assert total >= 146 and failed == 0, _run(proxy.port, "--strict")[-4000:]
    assert stack.client(proxy.port).unary(b"after").ok  # the proxy carried on


def test_h2spec_tls_all_cases_pass(stack: Stack) -> None:
    backend = stack.backend("b1")
    ca = trustme.CA()
    cert = ca.issue_cert(LOCALHOST)
    key_path, cert_path = stack.workdir / "key.pem", stack.workdir / "cert.pem"
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    port = free_port()
    config = make_config(
        port,
        [upstream("b", [addr(backend.port)])],
        [location("/", "grpc_pass b")],
        server_directives=[f"ssl_certificate {cert_path}", f"ssl_certificate_key {key_path}"],
    )
    proxy = stack.proxy(config.replace(" http2;", " http2 ssl;", 1))
    total, failed = _summary(_run(proxy.port, "-t", "-k"))
    assert total >= 146 and failed == 0
