"""``grpc-proxy -t``: exit status, stdout/stderr, and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import __version__
from proxy.cli import CONFIG_ENV, default_config

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env={**base, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check(path: str) -> subprocess.CompletedProcess[str]:
    return run("-t", "-c", path)


def test_default_file_is_ok() -> None:
    result = check("conf/grpc-proxy.conf")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "conf/grpc-proxy.conf: ok\n",
        "",
    )


def test_without_c_the_check_names_the_default_file() -> None:
    # The packaged copy, unless this machine has /etc/grpc-proxy/grpc-proxy.conf.
    expected = default_config({})
    result = run("-t")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{expected}: ok\n", "")


def test_without_c_the_environment_names_the_file(tmp_path: Path) -> None:
    result = run("-t", env={CONFIG_ENV: "conf/examples/minimal.conf"})
    assert (result.returncode, result.stdout) == (0, "conf/examples/minimal.conf: ok\n")
    missing = str(tmp_path / "nope.conf")
    result = run("-t", env={CONFIG_ENV: missing})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f'{missing}:0: cannot open "{missing}": No such file or directory\n'


@pytest.mark.parametrize(
    "text",
    ["", "# nothing yet\n", "upstream u { server h:1; }\n", "admin { listen 127.0.0.1:1; }\n"],
)
def test_no_server_block_is_ok_with_a_warning(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.conf"
    path.write_text(text)
    result = check(str(path))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"{path}: ok\n",
        f"{path}: warning: no server blocks: nothing to serve\n",
    )


def test_an_access_log_that_cannot_be_opened_fails_the_check(tmp_path: Path) -> None:
    path = tmp_path / "log.conf"
    log = tmp_path / "missing-dir" / "access.log"
    path.write_text(
        "worker_processes 1;\n"
        "server {\n"
        "    listen 127.0.0.1:1;\n"
        f"    access_log {log};\n"
        "    location / { grpc_pass 127.0.0.1:2; }\n"
        "}\n"
    )
    result = check(str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f'{path}:4: cannot open access log "{log}": no such file or directory\n'
    )
    (tmp_path / "missing-dir").mkdir()
    result = check(str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")
    assert log.exists()  # as nginx -t: the log is opened, so created


def test_an_unused_main_access_log_is_not_opened(tmp_path: Path) -> None:
    # Start-up opens only the logs some server writes to; -t checks the same.
    path = tmp_path / "log.conf"
    path.write_text(f"access_log {tmp_path}/no/such/dir.log;\nupstream u {{ server h:1; }}\n")
    result = check(str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: ok\n")


@pytest.mark.parametrize(
    "name", ["minimal.conf", "services.conf", "upstreams.conf", "balancing.conf"]
)
def test_examples_are_ok(name: str) -> None:
    path = f"conf/examples/{name}"
    result = check(path)
    # upstreams.conf is a fragment for include: valid alone, but it serves nothing.
    warning = (
        f"{path}: warning: no server blocks: nothing to serve\n" if name == "upstreams.conf" else ""
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", warning)


BAD = [
    ("worker_processes 1;\nbogus on;\n", 2, 'unknown directive "bogus"'),
    (
        "server {\n  listen 1;\n",
        2,
        'unexpected end of file, expecting "}" to close "server" at line 1',
    ),
    (
        "server {\n  listen 1 ssl;\n  ssl_certificate /nonexistent/c.pem;\n"
        "  ssl_certificate_key /nonexistent/k.pem;\n}\n",
        3,
        'cannot load certificate "/nonexistent/c.pem": no such file or directory',
    ),
    (
        "server { listen 1;\n  location /x { grpc_pass nowhere; }\n}\n",
        2,
        'no upstream "nowhere" for grpc_pass',
    ),
    ('x "\x00\n', 1, "unexpected NUL byte"),
    ("worker_processes 1;\n" + "\x00" * 4096, 2, "unexpected NUL byte"),
    ("worker_processes 1;\n# ok\nupstream u {\n  server h:1;\x00\n}\n", 4, "unexpected NUL byte"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_file(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(text)
    result = check(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"{path}:{line}: {message}\n"


def test_error_in_included_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "up.conf").write_text("upstream u {\n  server h:1 weight=0;\n}\n")
    main = tmp_path / "main.conf"
    main.write_text("include conf.d/*.conf;\n")
    result = check(str(main))
    assert result.returncode == 1
    inner = tmp_path / "conf.d" / "up.conf"
    assert result.stderr == f'{inner}:2: invalid value "0" in "weight", it must be at least 1\n'


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.conf")
    result = check(path)
    assert result.returncode == 1
    assert result.stderr == f'{path}:0: cannot open "{path}": No such file or directory\n'


def test_binary_garbage_never_shows_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "garbage.conf"
    path.write_bytes(bytes(range(256)) * 4)
    result = check(str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"{path}:")


def test_version() -> None:
    result = run("--version")
    # Which build: pure Python, unless built in place (test_compiled.py checks both).
    builds = (
        f"grpc-proxy {__version__} (pure Python)",
        f"grpc-proxy {__version__} (compiled with mypyc)",
    )
    assert result.returncode == 0 and result.stdout.strip() in builds, result.stdout


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "-t" in result.stdout and "-c FILE" in result.stdout
