"""Optional compiled build of the HTTP/2 core and the relay (mypyc); the
metadata is in pyproject.toml.

The default build is pure Python. With GRPC_PROXY_COMPILE=1 the modules listed
in COMPILED are compiled with mypyc into C extensions, which Python imports in
place of the .py files next to them (the .py files stay in the wheel):

    pip install mypy 'setuptools>=77' wheel
    GRPC_PROXY_COMPILE=1 pip install --no-build-isolation .

``grpc-proxy --version`` says which core is running.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
# The pure core of the hot path, strictly typed: the sans-IO HTTP/2 core and
# the stream relay, most of the Python time per call. Not compiled: the
# package __init__ files; http2/hpack_codec.py (HeaderBlock subclasses tuple,
# which mypyc cannot compile); relay/observer.py (a Protocol).
NOT_COMPILED = {"__init__.py", "hpack_codec.py", "observer.py"}
COMPILED = sorted(
    str(p.relative_to(HERE))
    for package in ("http2", "relay")
    for p in (HERE / "proxy" / package).glob("*.py")
    if p.name not in NOT_COMPILED
)


def ext_modules() -> list[object]:
    if os.environ.get("GRPC_PROXY_COMPILE", "") not in ("1", "yes", "true"):
        return []
    from mypyc.build import mypycify  # only the compiled build needs mypy

    # pip builds before it installs the dependencies (hpack, trio, ...): mypy
    # then sees them as Any, which changes no compiled module's own types.
    return list(mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3"))


if __name__ == "__main__":  # as setuptools runs it; tests import COMPILED
    setup(ext_modules=ext_modules())
