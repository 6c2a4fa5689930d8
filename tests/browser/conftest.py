"""Fixtures for the browser tests: the integration harness (``stack``, the
proxy as a subprocess, echo backends, etcd) and a headless Chromium that
tests/browser/setup_chromium.sh installs when it is missing.

A browser that cannot be installed fails the test with the reason: these
tests are part of the suite, not optional extras."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_INTEGRATION = _HERE.parent / "integration"
if str(_INTEGRATION) not in sys.path:  # harness.py, etcd_harness.py, status_stack.py
    sys.path.insert(0, str(_INTEGRATION))

from harness import Stack  # noqa: E402

from tests.browser.processes import run_bounded  # noqa: E402

SETUP = _HERE / "setup_chromium.sh"
SETUP_TIMEOUT = 600.0  # apt-get downloads about 100 MB on a first run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium binary, installed once per session if missing."""
    code, out, err = run_bounded(["sh", str(SETUP)], SETUP_TIMEOUT)
    lines = out.strip().splitlines()
    if code is None:
        pytest.fail(f"{SETUP} did not finish within {SETUP_TIMEOUT:.0f}s", pytrace=False)
    if code != 0 or not lines or not Path(lines[-1]).exists():
        tail = "\n".join(err.strip().splitlines()[-15:])
        pytest.fail(
            f"cannot install Chromium for the browser tests ({SETUP} exited with {code}):\n{tail}",
            pytrace=False,
        )
    return lines[-1]
