"""The status page in a real browser: headless Chromium loads the admin
listener's ``/``, runs its script, refreshes from /status.json, and the
rendered DOM shows every endpoint, the etcd feed and the methods called. A
screenshot is left at tests/artifacts/status-page.png for a person to look at."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import etcd_harness as etcd
import pytest
import status_stack
from harness import LOCALHOST, Stack, proxy_logs

from tests.browser.processes import run_bounded

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "status-page.png"
BROWSER_TIMEOUT = 60.0


@pytest.fixture
def etcd1(tmp_path: Path):
    member = etcd.single(tmp_path).start()
    try:
        yield member
    finally:
        member.stop()


def headless(chromium: str, profile: Path, *mode: str) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "--virtual-time-budget=5000",
        *mode,
    ]


def test_status_page_renders_and_refreshes_in_chromium(
    chromium: str, stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    s = status_stack.start(stack, etcd1)
    status_stack.send_traffic(s)
    doc = status_stack.wait_counted(s.admin, 10)
    assert status_stack.counted(doc), (doc, proxy_logs(stack))
    url = f"http://{LOCALHOST}:{s.admin}/"

    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        code, dom, err = run_bounded(
            headless(chromium, Path(profile), "--dump-dom", url), BROWSER_TIMEOUT
        )
    assert code == 0, f"chromium --dump-dom exited with {code}:\n{err[-3000:]}"
    refreshes = re.search(r'data-refreshes="(\d+)"', dom)
    assert refreshes and int(refreshes.group(1)) >= 1, dom[:2000]  # fetched /status.json
    for text in (
        *s.static,
        s.dead,
        s.discovered,
        "Unary",
        "ServerStream",
        "echo.Echo",
        "least_conn",
        "random two",
        "connected",
        etcd1.url,
    ):
        assert text in dom, (text, dom[:3000])
    assert dom.count('class="badge up"') >= 3 and 'class="badge failed"' in dom
    assert re.search(r"NOT_FOUND 2", dom)

    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        code, _, err = run_bounded(
            headless(chromium, Path(profile), f"--screenshot={SCREENSHOT}", url), BROWSER_TIMEOUT
        )
    assert code == 0, f"chromium --screenshot exited with {code}:\n{err[-3000:]}"
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 10_000
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"status page screenshot: {SCREENSHOT}")
