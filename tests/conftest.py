"""Shared pytest setup: the source tree importable without an install, quiet
grpc-core logging (also for child processes), and the markers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# grpc-core logs INFO lines ("Got goaway", ...) by default; set before grpc loads.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: runs the proxy as a subprocess with real grpcio peers"
    )
    config.addinivalue_line("markers", "slow: takes more than ~10 s")
    config.addinivalue_line(
        "markers", "browser: drives a headless Chromium (tests/browser/setup_chromium.sh)"
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
