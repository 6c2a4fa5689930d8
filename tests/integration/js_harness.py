"""grpc-js peers for the interop tests: tests/interop/js/echo_server.js as a
child process, and runs of tests/interop/js/echo_client.js.

``setup_js()`` runs tests/interop/setup_js.sh (npm ci, once); the ``js_peers``
session fixture in conftest.py calls it and fails the tests that need it with
the script's reason if it cannot. Every wait here is bounded; every process is
stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import REPO_ROOT

JS_DIR = REPO_ROOT / "tests" / "interop" / "js"
SETUP_SCRIPT = REPO_ROOT / "tests" / "interop" / "setup_js.sh"
SETUP_TIMEOUT = 300.0  # npm ci takes seconds; installing nodejs with apt, a minute or two

# The cases echo_client.js runs on one shared channel (see its header).
CHANNEL_CASES = (
    "unary",
    "server_stream",
    "client_stream",
    "bidi",
    "metadata",
    "error_status",
    "deadline",
    "cancel",
    "big",
    "concurrent",
)


def setup_js(timeout: float = SETUP_TIMEOUT) -> str | None:
    """Run setup_js.sh; None if node and node_modules are ready, else the reason."""
    try:
        proc = subprocess.run(
            ["bash", str(SETUP_SCRIPT)],
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"{SETUP_SCRIPT} did not finish in {timeout:.0f} s"
    if proc.returncode != 0:
        return (
            f"{SETUP_SCRIPT} exited {proc.returncode}:\n"
            f"{proc.stderr.strip()[-2000:] or proc.stdout.strip()[-2000:]}"
        )
    return None


def node() -> str:
    return shutil.which("node") or "node"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("GRPC_NODE_TRACE", "GRPC_TRACE", "GRPC_NODE_VERBOSITY", "GRPC_VERBOSITY"):
        env.pop(key, None)
    return env


# --------------------------------------------------------------------------- server


class JsServer:
    """``node echo_server.js`` as a child: its per-call JSON events in ``events``.

    Its stdin is a pipe we hold: if this process dies, the server sees EOF and exits.
    """

    def __init__(self, name: str, port: int = 0, stderr_path: Path | None = None) -> None:
        self.name = name
        self.port = port
        self._stderr_path = stderr_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> JsServer:
        stderr: Any = subprocess.DEVNULL
        if self._stderr_path is not None:
            stderr = open(self._stderr_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [node(), "echo_server.js", "--port", str(self.port), "--name", self.name],
                cwd=str(JS_DIR),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=_env(),
            )
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        ready = threading.Event()
        lines: list[str] = []
        self._reader = threading.Thread(
            target=self._read, args=(ready, lines), daemon=True, name=f"js-server-{self.name}"
        )
        self._reader.start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(
                f"grpc-js server {self.name} not ready in {timeout} s "
                f"(exit code {self.proc.returncode}); output: {lines!r}"
            )
        return self

    def _read(self, ready: threading.Event, lines: list[str]) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:  # ends at EOF, when the server exits
            line = raw.decode(errors="replace").strip()
            if not ready.is_set():
                lines.append(line)
                if line.startswith("listening on "):
                    self.port = int(line.rsplit(":", 1)[1])
                elif line == "ready":
                    ready.set()
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def wait_event(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """The first event for which ``pred`` holds, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def call_end(self, call_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """The end event of the call tagged ``x-test-id: call_id``."""
        return self.wait_event(lambda e: e.get("id") == call_id, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (by PID), wait, SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5.0)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self._reader is not None:
            self._reader.join(5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------------------- client


class JsClientRun:
    """One ``node echo_client.js`` run, started at once; ``results()`` waits."""

    def __init__(
        self,
        target: str,
        cases: Sequence[str],
        *,
        timeout: float = 60.0,
        idle_s: float = 30.0,
        deadline_ms: int = 5000,
    ) -> None:
        self.target = target
        self.cases = list(cases)
        self.timeout = timeout
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                node(),
                "echo_client.js",
                "--target",
                target,
                "--cases",
                ",".join(cases),
                "--idle-s",
                str(idle_s),
                "--deadline-ms",
                str(deadline_ms),
                "--max-s",
                str(int(timeout)),
            ],
            cwd=str(JS_DIR),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        self._results: dict[str, dict[str, Any]] | None = None
        self.stderr = ""

    def results(self) -> dict[str, dict[str, Any]]:
        """case name -> its JSON result; a case with no line gets ``ok: False``."""
        if self._results is not None:
            return self._results
        left = max(1.0, self.timeout + 10 - (time.monotonic() - self.started))
        try:
            out, err = self.proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate(timeout=10)
            err += b"\n(killed: still running)"
        self.stderr = err.decode(errors="replace")
        results: dict[str, dict[str, Any]] = {}
        for line in out.decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict) and "case" in obj:
                    results[obj["case"]] = obj
        for case in self.cases:
            results.setdefault(
                case,
                {
                    "case": case,
                    "ok": False,
                    "problems": [
                        f"no result (exit {self.proc.returncode}): "
                        f"{self.stderr.strip()[-1500:] or out.decode()[-1500:]}"
                    ],
                },
            )
        self._results = results
        return results

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5.0)


def run_js_client(target: str, cases: Sequence[str], **kw: Any) -> dict[str, dict[str, Any]]:
    run = JsClientRun(target, cases, **kw)
    try:
        return run.results()
    finally:
        run.kill()


def describe(result: dict[str, Any]) -> str:
    """A result for an assertion message: problems first, then the rest."""
    rest = {k: v for k, v in result.items() if k not in ("problems", "case", "ok")}
    text = json.dumps(rest, indent=1)
    if len(text) > 4000:
        text = text[:4000] + " ..."
    return f"problems: {result.get('problems')}\n{text}"
