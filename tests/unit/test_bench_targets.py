"""benchmarks/harness/targets.py: the configs each proxy runs with in the
benchmark, and which targets run which scenario. The light backends of
``unary-load-light`` (h2_echo) are an upstream of their own in every
proxy, reached by the path prefix ``/echo.Light/``; without them the
configs are what they were. grpc-proxy's config is read by the real parser."""

from __future__ import annotations

from proxy.config import parse_string
from tests.unit.bench_modules import benchmark_modules

_loads, _targets = benchmark_modules("loads", "targets")
BACKENDS, LIGHT = [41001, 41002], [41011, 41012]


def _servers(config: object, upstream: str) -> list[int]:
    return [s.address.port for s in config.upstreams[upstream].servers]  # type: ignore[attr-defined]


def test_grpc_proxy_routes_the_light_prefix_to_the_light_backends() -> None:
    text = _targets.grpc_proxy_config(40000, BACKENDS, workers=2, light=LIGHT)
    config = parse_string(text, "grpc-proxy-w2.conf")
    assert config.worker_processes == 2
    assert _servers(config, "bench") == BACKENDS
    assert _servers(config, "light") == LIGHT
    server = config.servers[0]
    assert server.match(_loads.LIGHT_PATH).upstream == "light"
    assert server.match(_loads.UNARY_PATH).upstream == "bench"


def test_grpc_proxy_config_without_light_backends_has_one_upstream() -> None:
    config = parse_string(_targets.grpc_proxy_config(40000, BACKENDS), "grpc-proxy.conf")
    assert set(config.upstreams) == {"bench"}
    assert config.servers[0].match(_loads.LIGHT_PATH).upstream == "bench"


def test_nginx_has_a_light_upstream_configured_as_bench(tmp_path: object) -> None:
    text = _targets.nginx_config(tmp_path, 40000, BACKENDS, LIGHT)
    light = text[text.index("upstream light {") :]
    light = light[: light.index("}")]
    assert [f"server 127.0.0.1:{p};" in light for p in LIGHT] == [True, True]
    assert "keepalive 1000;" in light and "keepalive_requests 1000000;" in light
    assert "location /echo.Light/ {\n            grpc_pass grpc://light;" in text
    assert "upstream light" not in _targets.nginx_config(tmp_path, 40000, BACKENDS)
    assert "grpc://light" not in _targets.nginx_config(tmp_path, 40000, BACKENDS)


def test_envoy_matches_the_light_prefix_before_the_catch_all() -> None:
    config = _targets.envoy_config(40000, 40001, BACKENDS, LIGHT)
    resources = config["static_resources"]
    manager = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert [(r["match"]["prefix"], r["route"]["cluster"]) for r in routes] == [
        ("/echo.Light/", "light"),
        ("/", "bench"),
    ]
    clusters = {c["name"]: c for c in resources["clusters"]}
    endpoints = clusters["light"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == LIGHT
    # The light cluster speaks HTTP/2 upstream, as bench does.
    assert (
        clusters["light"]["typed_extension_protocol_options"]
        == (clusters["bench"]["typed_extension_protocol_options"])
    )
    assert len(_targets.envoy_config(40000, 40001, BACKENDS)["static_resources"]["clusters"]) == 1


def test_targets_skip_the_scenarios_they_cannot_reach() -> None:
    direct = _targets.Target("direct", 41001, skips=(_loads.LIGHT_SCENARIO,))
    assert direct.runs("unary-load", "pinned")
    assert not direct.runs(_loads.LIGHT_SCENARIO, "unpinned")
    w2 = _targets.Target(
        "grpc-proxy-w2",
        40000,
        only_scenarios=("unary-load", _loads.LIGHT_SCENARIO),
        only_pinning=("unpinned",),
    )
    assert w2.runs(_loads.LIGHT_SCENARIO, "unpinned")
    assert not w2.runs(_loads.LIGHT_SCENARIO, "pinned")
    assert not w2.runs("unary-serial", "unpinned")
