"""Merging several workers' metric files (multiprocess mode) while a worker
is still creating its own: the scrape must not fail."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from proxy.admin.handlers import AdminHandlers
from proxy.metrics.export import SettledFilesCollector


def _worker_file(path: Path, value: float) -> None:
    d = MmapedDict(str(path))
    key = mmap_key("grpc_proxy_requests_total", "grpc_proxy_requests_total", [], [], "calls")
    d.write_value(key, value, 0.0)
    d.close()


def test_a_file_another_worker_has_only_just_created_is_left_out(tmp_path: Path) -> None:
    _worker_file(tmp_path / "counter_101.db", 2.0)
    _worker_file(tmp_path / "counter_102.db", 3.0)
    (tmp_path / "counter_103.db").write_bytes(b"")  # created, not yet sized
    registry = CollectorRegistry(auto_describe=False)
    SettledFilesCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    assert "grpc_proxy_requests_total 5.0" in text, text


def test_a_failing_scrape_is_a_500_not_a_dropped_connection() -> None:
    def broken() -> tuple[bytes, str]:
        raise ValueError("unpack_from requires a buffer of at least 4 bytes")

    h = AdminHandlers(None, broken)  # type: ignore[arg-type]
    r = h.render_metrics()
    assert r.status == 500 and b"try again" in r.body
