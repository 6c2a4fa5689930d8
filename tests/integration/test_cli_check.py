"""``grpc-proxy -t``: exit status, stdout/stderr, and never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy import __version__

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )


def check(path: str) -> subprocess.CompletedProcess[str]:
    return run("-t", "-c", path)


def test_default_file_is_ok() -> None:
    result = check("conf/grpc-proxy.conf")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "conf/grpc-proxy.conf: ok\n", "")


def test_default_path_is_the_default_file() -> None:
    result = run("-t")
    assert (result.returncode, result.stdout) == (0, "conf/grpc-proxy.conf: ok\n")


@pytest.mark.parametrize("name", ["minimal.conf", "services.conf", "upstreams.conf",
                                  "balancing.conf"])
def test_examples_are_ok(name: str) -> None:
    path = f"conf/examples/{name}"
    result = check(path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")


BAD = [
    ("worker_processes 1;\nbogus on;\n", 2, 'unknown directive "bogus"'),
    ("server {\n  listen 1;\n", 2,
     'unexpected end of file, expecting "}" to close "server" at line 1'),
    ("server {\n  listen 1 ssl;\n  ssl_certificate /nonexistent/c.pem;\n"
     "  ssl_certificate_key /nonexistent/k.pem;\n}\n", 3,
     'cannot load certificate "/nonexistent/c.pem": no such file or directory'),
    ("server { listen 1;\n  location /x { grpc_pass nowhere; }\n}\n", 2,
     'no upstream "nowhere" for grpc_pass'),
    ('x "\x00\n', 1, "unterminated quoted string"),
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
    assert (result.returncode, result.stdout.strip()) == (0, f"grpc-proxy {__version__}")


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "-t" in result.stdout and "-c FILE" in result.stdout
