"""``grpc-proxy demo`` end to end: backends, the proxy, traffic, the table."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import psutil
import pytest
from harness import REPO_ROOT, port_is_free

from grpc_proxy_demo.echo import subprocess_env

pytestmark = pytest.mark.slow

DEMO_PORTS = (8080, 50051, 50052, 50053)  # conf/grpc-proxy.conf
TIMEOUT = 120


@pytest.mark.timeout(TIMEOUT + 30)
def test_demo_runs_and_prints_the_table() -> None:
    taken = [p for p in DEMO_PORTS if not port_is_free(p)]
    if taken:
        pytest.skip(f"the demo needs ports {DEMO_PORTS}; in use: {taken}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "demo"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out_b, err_b = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        out_b, err_b = proc.communicate(timeout=10)
        pytest.fail(f"demo still running after {TIMEOUT}s:\n{out_b.decode()}\n{err_b.decode()}")
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err
    for port in DEMO_PORTS[1:]:
        assert f"127.0.0.1:{port}" in out, out
    for text in (
        "Phase 1",
        "Unary",
        "Server stream",
        "Client stream",
        "Bidi",
        "OK",
        "backup",
        "demo ok",
    ):
        assert text in out, f"{text!r} missing from the demo output:\n{out}"
    assert "Phase 2" in out, out  # conf/grpc-proxy.conf has a backup: failover shown
    for port in DEMO_PORTS:
        assert port_is_free(port), f"the demo left port {port} in use"


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    for c in children:
        with contextlib.suppress(psutil.Error):
            c.kill()
