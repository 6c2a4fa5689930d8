"""The code's own checks, run with the suite (so .ci/run runs them): ruff's
lint and format, mypy --strict on proxy/ ([tool.mypy] in pyproject.toml),
and radon's complexity grade of the HTTP/2 core and the relay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["proxy", "grpc_proxy_demo", "tests", "benchmarks"]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_ruff_lint() -> None:
    r = _run("ruff", "check", *SOURCES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = _run("ruff", "format", "--check", *SOURCES)
    assert r.returncode == 0, "run `ruff format`:\n" + r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = _run("mypy", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_type_ignore_in_proxy() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "proxy").rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "type: ignore" in line
    ]
    assert not found, found


@pytest.mark.parametrize("package", ["proxy/http2", "proxy/relay", "proxy/config"])
def test_no_function_graded_d_or_worse(package: str) -> None:
    r = _run("radon", "cc", "--min", "D", "--show-complexity", package)
    assert r.returncode == 0, r.stderr
    assert not r.stdout.strip(), "functions graded D or worse:\n" + r.stdout
