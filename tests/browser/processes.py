"""Running a command with a time bound, for the browser tests: on timeout,
the command and every process it started are killed by PID."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil


def run_bounded(
    cmd: Sequence[str],
    timeout: float,
    cwd: Path | None = None,
) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr) of ``cmd``; None as the code if it ran past
    ``timeout``: then it and every process it started are killed, by PID."""
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        out, err = proc.communicate(timeout=10)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.wait(5)
        return None, out, err
