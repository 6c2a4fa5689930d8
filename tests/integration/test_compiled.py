"""The optional compiled build (setup.py, ``GRPC_PROXY_COMPILE=1``): mypyc
compiles the HTTP/2 core and the relay, and the compiled build behaves as the
pure one.

A copy of the checkout is built in place, as a user's ``pip install`` with
``GRPC_PROXY_COMPILE=1`` builds it. Then, against that copy:

- every module setup.py lists imports as a C extension, and ``--version``
  and the start-up log say which build runs (the checkout's: pure Python);
- a real proxy process relays the four call kinds between grpcio peers;
- the unit tests and the integration modules on HTTP/2, flow control,
  errors, failover and lifetimes pass, run by pytest inside the copy (so every proxy they start is
  the compiled one: ``python -P`` with the copy alone on PYTHONPATH).

The build needs a C compiler and mypy (the test extra); without them this
fails with the build's own message."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from harness import PROXY_CMD_ENV, Stack, addr, free_port, location, make_config, upstream

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The checkout without its venv, git data, caches, builds and test artifacts
# (the unit tests read docs, configs and deployment files too).
NOT_COPIED = shutil.ignore_patterns(
    ".venv",
    ".git",
    ".*_cache",
    ".hypothesis",
    "__pycache__",
    "*.so",
    "node_modules",
    "build",
    "dist",
    "artifacts",
    "results",
)
# Run inside the copy: everything that exercises the HTTP/2 core.
SUITES = (
    "tests/unit",
    "tests/integration/test_call_kinds.py",
    "tests/integration/test_flow_control.py",
    "tests/integration/test_http2_floods.py",
    "tests/integration/test_errors.py",
    "tests/integration/test_upstream_preface.py",
    "tests/integration/test_balancing_failover.py",
    "tests/integration/test_lifetime.py",
)
# Checks of the source tree itself (ruff, mypy, radon, the layer rules): the
# copy's sources are the checkout's, and they are run on those already.
NOT_IN_COPY = ("tests/unit/test_static_checks.py",)


def _setup_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_proxy_setup", REPO / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines COMPILED; setup() runs only as __main__
    return module


def _proxy_command(tree: Path) -> str:
    """A proxy command that imports ``proxy`` from ``tree`` only: ``-P`` keeps
    the working directory off sys.path."""
    return f"env PYTHONPATH={tree} {sys.executable} -P -m proxy -c {{config}}"


def _version(tree: Path) -> str:
    r = subprocess.run(
        ["env", f"PYTHONPATH={tree}", sys.executable, "-P", "-m", "proxy", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("compiled") / "checkout"
    shutil.copytree(REPO, tree, ignore=NOT_COPIED)
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env={**os.environ, "GRPC_PROXY_COMPILE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, f"the compiled build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return tree


def test_setup_lists_the_http2_core_and_the_relay() -> None:
    compiled = set(_setup_module().COMPILED)
    assert {"proxy/http2/connection.py", "proxy/http2/stream.py"} <= compiled
    assert {"proxy/relay/relay.py", "proxy/relay/pump.py", "proxy/relay/link.py"} <= compiled
    assert "proxy/http2/hpack_codec.py" not in compiled  # a tuple subclass: stays pure
    assert "proxy/relay/observer.py" not in compiled  # a Protocol
    assert all(path.startswith(("proxy/http2/", "proxy/relay/")) for path in compiled)


def test_every_listed_module_imports_compiled(compiled_tree: Path) -> None:
    modules = [p.removesuffix(".py").replace("/", ".") for p in _setup_module().COMPILED]
    code = "import importlib, sys\n" + "".join(
        f"print(importlib.import_module({m!r}).__file__)\n" for m in modules
    )
    r = subprocess.run(
        ["env", f"PYTHONPATH={compiled_tree}", sys.executable, "-P", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    files = r.stdout.split()
    assert len(files) == len(modules)
    for module, file in zip(modules, files, strict=True):
        assert file.startswith(str(compiled_tree)), (module, file)
        assert file.endswith(".so"), (module, file)


def test_version_says_which_core_runs(compiled_tree: Path) -> None:
    assert _version(compiled_tree).endswith("(compiled with mypyc)")
    # The checkout is pure Python, unless someone built it in place (pip -e).
    built_in_place = any((REPO / "proxy" / "http2").glob("*.so"))
    assert _version(REPO).endswith("(compiled with mypyc)" if built_in_place else "(pure Python)")


def test_compiled_proxy_relays_every_call_kind(
    compiled_tree: Path, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROXY_CMD_ENV, _proxy_command(compiled_tree))
    b = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port, [upstream("echo", [addr(b.port)])], [location("/echo.Echo/", "grpc_pass echo")]
        )
    )
    client = stack.client(proxy.port)
    unary = client.unary(b"x" * 100_000)
    assert unary.ok and unary.messages == [b"x" * 100_000] and unary.backend == "b1"
    streamed = client.server_stream(b"abc", metadata=[("x-count", "50")])
    assert streamed.ok and streamed.count == 50
    uploaded = client.client_stream([b"m%d" % i for i in range(20)])
    assert uploaded.ok and len(uploaded.messages) == 1, uploaded.details
    echoed = client.bidi([b"p%d" % i for i in range(20)])
    assert echoed.ok and echoed.messages == [b"p%d" % i for i in range(20)]
    assert "(compiled with mypyc)" in proxy.stderr()


@pytest.mark.timeout(900)
def test_core_suites_pass_compiled(compiled_tree: Path) -> None:
    env = {**os.environ, PROXY_CMD_ENV: _proxy_command(compiled_tree)}
    env.pop("PYTEST_ADDOPTS", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(f"--ignore={p}" for p in NOT_IN_COPY),
            *SUITES,
        ],
        cwd=compiled_tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    tail = "\n".join(r.stdout.splitlines()[-40:])
    assert r.returncode == 0, f"pytest in the compiled copy exited {r.returncode}:\n{tail}"
    assert " passed" in tail and " failed" not in tail, tail
