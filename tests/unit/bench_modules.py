"""Importing benchmarks/harness modules from the tests.

The benchmarks import their package as ``harness``, the name
tests/integration/harness.py has in a full test run too: import them with
benchmarks/ first on the path, then put back whatever ``harness`` was (the
modules keep their own references)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def benchmark_modules(*names: str) -> list[ModuleType]:
    """benchmarks/harness/NAME modules, in the order named."""
    bench = str(Path(__file__).resolve().parents[2] / "benchmarks")

    def ours() -> list[str]:
        return [k for k in sys.modules if k == "harness" or k.startswith("harness.")]

    saved = {k: sys.modules.pop(k) for k in ours()}
    sys.path.insert(0, bench)
    try:
        return [importlib.import_module(f"harness.{name}") for name in names]
    finally:
        sys.path.remove(bench)
        for k in ours():
            del sys.modules[k]
        sys.modules.update(saved)
