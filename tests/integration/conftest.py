"""Fixtures for the integration tests (see harness.py for the helpers).

``stack``         function-scoped ``Stack``: start backends, echo subprocesses,
                  proxies and channels through it; all stopped after the test.
``module_stack``  the same, shared by a module (for a module-scoped setup).
``js_peers``      session: tests/interop/js/ ready for node (npm ci once); fails if not.

Typical use::

    def test_x(stack):
        b = stack.backend("b1")                         # in-process echo backend
        port = free_port()
        proxy = stack.proxy(make_config(port, [upstream("echo", [addr(b.port)])],
                                        [location("/echo.Echo/", "grpc_pass echo")]))
        r = stack.client(proxy.port).unary(b"hi")       # Result, never raises
        assert r.ok and r.backend == "b1"

Set GRPC_PROXY_TEST_CMD to run the suite against another proxy command (a
template with ``{config}`` for the config path), e.g. a reference proxy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # harness.py, also under --import-mode=importlib
    sys.path.insert(0, str(_HERE))

from harness import Stack  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def module_stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    s = Stack(tmp_path_factory.mktemp(name))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def js_peers() -> Path:
    """tests/interop/js/ with its node_modules installed by tests/interop/setup_js.sh
    (run once per session, bounded); the tests that use it FAIL if it cannot."""
    from js_harness import JS_DIR, setup_js

    reason = setup_js()
    if reason is not None:
        pytest.fail(f"the grpc-js interop peers cannot be set up: {reason}", pytrace=False)
    return JS_DIR
