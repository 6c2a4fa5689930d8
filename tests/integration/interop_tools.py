"""Foreign gRPC stacks for the interop tests: the grpc-go interop client and
server of tests/interop/go, built by tests/interop/setup_go.sh.

``go_tools()`` runs setup_go.sh once per session (bounded; it installs Debian's
golang-go and golang-google-grpc-dev when missing, then builds) and
``pytest.fail``s, never skips, when the toolchain cannot be had: the interop
tests are part of the suite. ``GoServer`` runs the interop server as a
subprocess on 127.0.0.1; ``GoTools.client()`` runs one interop client case and
returns its outcome (each run bounded by its own ``-deadline`` and a subprocess
timeout). Every process started here is stopped by PID by its owner.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import LOCALHOST, REPO_ROOT, free_port, wait_for_port

INTEROP_DIR = REPO_ROOT / "tests" / "interop"
SETUP_GO = INTEROP_DIR / "setup_go.sh"
SETUP_TIMEOUT = 600.0  # apt-get install (about 15 s here) plus the first build (about 15 s)

_tools: GoTools | None = None
_failure: str | None = None  # why _setup() failed (not retried)


@dataclass
class ClientRun:
    """One ``interop_client`` run: exit code, output, wall time."""

    case: str
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.stdout.startswith("PASS")

    def describe(self, stderr_lines: int = 15) -> str:
        """The client's verdict, plus the grpc-go transport lines of its log."""
        notable = [
            ln
            for ln in self.stderr.splitlines()
            if "GoAway" in ln or "transport" in ln or "panic" in ln
        ]
        out = (
            f"interop_client {self.case}: exit {self.returncode} after {self.elapsed:.2f}s\n"
            f"{self.stdout.strip() or '(no output)'}"
        )
        if notable:
            out += f"\n--- grpc-go transport log (last {stderr_lines}) ---\n" + "\n".join(
                notable[-stderr_lines:]
            )
        return out


class GoTools:
    """The built binaries."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self.server_bin = build_dir / "bin" / "interop_server"
        self.client_bin = build_dir / "bin" / "interop_client"

    def client(
        self, port: int, case: str, *args: str, rpc_timeout: float = 10.0, deadline: float = 60.0
    ) -> ClientRun:
        """Run test case ``case`` against 127.0.0.1:``port``; never raises on a
        failed case (see ``ClientRun``)."""
        cmd = [
            str(self.client_bin),
            "-server_host",
            LOCALHOST,
            "-server_port",
            str(port),
            "-test_case",
            case,
            "-rpc_timeout",
            f"{rpc_timeout}s",
            "-deadline",
            f"{deadline}s",
            *args,
        ]
        # grpc-go logs GOAWAYs and connection errors at INFO.
        env = {
            **os.environ,
            "GRPC_GO_LOG_SEVERITY_LEVEL": "info",
            "GRPC_GO_LOG_VERBOSITY_LEVEL": "2",
        }
        start = time.monotonic()
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=deadline + 10.0,
            )
        except subprocess.TimeoutExpired as e:  # run() has killed it
            return ClientRun(case, -9, _text(e.stdout), _text(e.stderr), time.monotonic() - start)
        return ClientRun(case, done.returncode, done.stdout, done.stderr, time.monotonic() - start)

    def server(self, workdir: Path, name: str = "go-server") -> GoServer:
        return GoServer(self, workdir, name).start()


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


class GoServer:
    """``interop_server`` on a free 127.0.0.1 port; stdout and stderr in ``workdir``."""

    def __init__(self, tools: GoTools, workdir: Path, name: str) -> None:
        self.tools = tools
        self.log_path = workdir / f"{name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> GoServer:
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.tools.server_bin),
                    "-host",
                    LOCALHOST,
                    "-port",
                    str(self.port),
                    "-max_lifetime",
                    "15m",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        if not wait_for_port(self.port, LOCALHOST, timeout, self.proc):
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(
                f"interop_server not listening on {self.port} (exit {code}):\n{self.log()}"
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def connections(self) -> int:
        """How many connections the server has accepted."""
        return self.log().count("accepted connection")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5.0)


class SetupError(Exception):
    pass


def go_tools() -> GoTools:
    """Build (installing the toolchain if needed) once per session; pytest.fail
    with the reason, every time it is asked, when that is impossible."""
    global _tools, _failure
    if _tools is None and _failure is None:
        try:
            _tools = _setup()
        except SetupError as e:
            _failure = str(e)
    if _tools is None:
        pytest.fail(f"grpc-go interop toolchain: {_failure}", pytrace=False)
    return _tools


def _setup() -> GoTools:
    start = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(SETUP_GO)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=SETUP_TIMEOUT,
            cwd=str(REPO_ROOT),
        )
    except subprocess.TimeoutExpired as e:
        raise SetupError(
            f"{SETUP_GO} did not finish in {SETUP_TIMEOUT:.0f}s\n{_text(e.stderr)[-3000:]}"
        ) from None
    except OSError as e:
        raise SetupError(f"cannot run {SETUP_GO}: {e}") from None
    if done.returncode != 0:
        raise SetupError(
            f"{SETUP_GO} exited {done.returncode}: it needs Debian's golang-go and "
            f"golang-google-grpc-dev (run it once as root, or apt-get install them)\n"
            f"--- setup_go.sh output ---\n{done.stderr[-3000:]}"
        )
    lines = done.stdout.strip().splitlines()
    tools = GoTools(Path(lines[-1]) if lines else INTEROP_DIR / "build")
    for b in (tools.server_bin, tools.client_bin):
        if not os.access(b, os.X_OK):
            raise SetupError(f"{SETUP_GO} succeeded but {b} is missing")
    print(f"setup_go.sh: {time.monotonic() - start:.1f}s")
    return tools
