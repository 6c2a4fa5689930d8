"""Benchmark harness: processes, proxies, load generators, reports (see benchmarks/README.md)."""
