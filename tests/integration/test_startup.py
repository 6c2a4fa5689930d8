"""Starting the proxy: what it says about the file it was given (no server
block, a busy listen port), as the real process; every process started here is
stopped here by PID."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import LOCALHOST, free_port

from grpc_proxy_demo.echo import subprocess_env
from proxy.cli import CONFIG_ENV

WAIT = 15.0


def _start(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "proxy", *args],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=f,
            env={**subprocess_env(), **(env or {})},
        )


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    return proc.returncode


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        out = log.read_text(errors="replace")
        if text in out or proc.poll() is not None:
            return out
        time.sleep(0.05)
    return log.read_text(errors="replace")


@pytest.mark.parametrize("text", ["", "upstream u { server 127.0.0.1:1; }\n"])
def test_no_server_block_warns_at_start(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "empty.conf"
    conf.write_text(text)
    log = tmp_path / "stderr"
    proc = _start(["-c", str(conf)], log)
    try:
        warning = f"WARNING grpc_proxy: {conf}: warning: no server blocks: nothing to serve"
        out = _wait_for(log, warning, proc)
        assert warning in out, out
        assert proc.poll() is None, out  # it still runs (and serves nothing), as nginx
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()


def test_without_c_the_start_names_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "env.conf"
    conf.write_text("# nothing yet\n")
    log = tmp_path / "stderr"
    proc = _start([], log, env={CONFIG_ENV: str(conf)})
    try:
        out = _wait_for(log, "nothing to serve", proc)
        assert f"INFO grpc_proxy: configuration {conf}" in out, out
        assert f"{conf}: warning: no server blocks: nothing to serve" in out, out
    finally:
        code = _stop(proc)
    assert code == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_listen_port_names_the_listen_line(tmp_path: Path, workers: int) -> None:
    conf = tmp_path / "busy.conf"
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        conf.write_text(
            f"worker_processes {workers};\n"
            "upstream u { server 127.0.0.1:1; }\n"
            f"server {{ listen {LOCALHOST}:{free_port()}; }}\n"
            "server {\n"
            f"    listen {LOCALHOST}:{port};\n"
            "    location / { grpc_pass u; }\n"
            "}\n"
        )
        r = subprocess.run(
            [sys.executable, "-m", "proxy", "-c", str(conf)],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{conf}:5: cannot listen on {LOCALHOST}:{port}: address already in use" in r.stderr, (
        r.stderr
    )
