"""grpc_proxy_demo, the package of ``grpc-proxy demo`` and ``grpc-proxy echo``:
without the demo extra they say so in one line; importing it changes nothing;
the proxy imports it only for those two subcommands (tests/unit/test_layers.py
checks the proxy's own imports). A real install without the extra:
tests/integration/test_install.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import grpc_proxy_demo
from proxy import cli

MESSAGE = "needs the demo extra: pip install 'grpc-proxy[demo]'"


def test_the_demo_extra_is_installed_here() -> None:
    assert grpc_proxy_demo.missing() == []


@pytest.mark.parametrize("command", ["demo", "echo"])
@pytest.mark.parametrize("absent", ["grpc", "rich", "grpc_health", "google.protobuf"])
def test_without_the_extra_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, absent: str
) -> None:
    monkeypatch.setitem(sys.modules, absent, None)  # what find_spec reports as not installed
    assert grpc_proxy_demo.missing() == [absent]
    assert cli.main([command, "--help"]) == 1
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"grpc-proxy {command}: {MESSAGE}\n")


def test_importing_changes_no_environment_and_the_commands_set_grpcs() -> None:
    """No module sets os.environ when imported; ``command`` sets GRPC_ENV
    (before grpc loads) for the process it runs in."""
    script = """
import json, os, sys
before = dict(os.environ)
import proxy.cli, grpc_proxy_demo, grpc_proxy_demo.echo, grpc_proxy_demo.echo_cli
import grpc_proxy_demo.demo
imported = dict(os.environ) == before
try:
    grpc_proxy_demo.command("echo", ["--help"])
except SystemExit:
    pass
print(json.dumps([imported, os.environ.get("GRPC_VERBOSITY")]))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == [True, "ERROR"]


def test_subprocess_env_quiets_grpc() -> None:
    from grpc_proxy_demo.echo import subprocess_env

    assert subprocess_env()["GRPC_VERBOSITY"] == "ERROR"
