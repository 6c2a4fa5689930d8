"""docker-compose.yml, the Dockerfile and conf/ checked without a Docker engine:
the compose file parses, every service is health-checked and restarted, every
host path is under conf/ and exists, every command's flags are accepted by our
real argparse parsers, every config a command names passes ``grpc-proxy -t``,
the wiring (etcd URLs, registration prefix, ports, Prometheus targets, Grafana
provisioning) agrees end to end, and the image's install step builds a working
``grpc-proxy`` from exactly the paths the Dockerfile copies."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from grpc_proxy_demo import echo_cli
from proxy import cli
from proxy.config import load
from proxy.discovery import registration

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
CONF_MOUNT = PurePosixPath("/etc/grpc-proxy")  # ./conf:/etc/grpc-proxy, COPY conf /etc/grpc-proxy
EXPECTED = {
    "etcd1",
    "etcd2",
    "etcd3",
    "backend-v1a",
    "backend-v1b",
    "backend-v2",
    "proxy1",
    "proxy2",
    "prometheus",
    "grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())  # resolves <<: merges
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _commands(command: list[str] | str | None) -> Iterator[list[str]]:
    """Each program invocation in a service command (``sh -c "a & exec b"`` is two)."""
    if command is None:
        return
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        script = argv[2].replace("&&", ";").replace("&", ";")
        for part in script.split(";"):
            words = shlex.split(part)
            if words and words[0] == "exec":
                words = words[1:]
            if words:
                yield words
    else:
        yield argv


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a path inside a proxy container comes from: a volume mount, else the
    image's ``COPY conf /etc/grpc-proxy``."""
    target = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        host, inside = volume.split(":")[:2]
        inside_p = PurePosixPath(inside)
        if target == inside_p or inside_p in target.parents:
            return REPO / host / target.relative_to(inside_p)
    assert CONF_MOUNT in target.parents, container_path
    return CONF / target.relative_to(CONF_MOUNT)


def _proxy_configs(services: dict[str, dict[str, Any]]) -> dict[str, Path]:
    out = {}
    for name, svc in services.items():
        for argv in _commands(svc.get("command")):
            if argv[0] == "grpc-proxy" and argv[1:2] not in (["register"], ["echo"]):
                args = cli._parser().parse_args(argv[1:])
                out[name] = _host_path(svc, args.config)
    return out


def _registrations(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, svc in services.items():
        for argv in _commands(svc.get("command")):
            if argv[:2] == ["grpc-proxy", "register"]:
                p = registration._parser()
                args = p.parse_args(argv[2:])
                registration._check_args(p, args)  # the same checks the real command runs
                out[name] = args
    return out


def _echo_address(argv: list[str]) -> Any:
    """Where ``grpc-proxy echo ...`` listens, by the command's own parser and checks."""
    p = echo_cli.parser()
    args = p.parse_args(argv[2:])
    echo_cli.backend_options(p, args)
    return echo_cli._address(p, args)


def test_compose_has_the_issue_topology(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert set(services) == EXPECTED
    for name in EXPECTED - {"prometheus", "grafana"}:
        assert services[name].get("image") or services[name].get("build"), name


def test_every_service_has_a_healthcheck_and_a_restart_policy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck", {})
        assert check.get("test"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), name


def test_depends_on_names_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps:
            assert dep in services, f"{name} depends on unknown {dep}"


def test_host_paths_are_under_conf_and_exist(services: dict[str, dict[str, Any]]) -> None:
    mounts = 0
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            assert isinstance(volume, str), f"{name}: use the short volume syntax"
            host = volume.split(":")[0]
            resolved = (REPO / host).resolve()
            assert host.startswith("./conf"), f"{name}: host path {host} outside conf/"
            assert resolved == CONF or CONF in resolved.parents, host
            assert resolved.exists(), f"{name}: {host} does not exist"
            mounts += 1
    assert mounts >= 4


def test_build_contexts_have_their_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = 0
    for name, svc in services.items():
        build = svc.get("build")
        if build is None:
            assert ":" in svc["image"], f"{name}: pin the image tag"
            assert not svc["image"].endswith(":latest"), name
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (REPO / context / dockerfile).is_file(), name
        built += 1
    assert built == 5  # three backends, two proxies


def test_published_ports_are_unique_and_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", (
                f"{name}: publish {port} on 127.0.0.1 only (the admin port is unauthenticated)"
            )
            assert parts[1] not in seen, f"{name} and {seen[parts[1]]} both publish {parts[1]}"
            seen[parts[1]] = name
    assert len(seen) == 6


def test_every_cli_flag_is_accepted_by_our_parsers(services: dict[str, dict[str, Any]]) -> None:
    kinds: dict[str, int] = {}
    for name, svc in services.items():
        for argv in _commands(svc.get("command")):
            if argv[:2] == ["grpc-proxy", "echo"]:
                _echo_address(argv)
                kind = "echo"
            elif argv[:2] == ["grpc-proxy", "register"]:
                p = registration._parser()
                registration._check_args(p, p.parse_args(argv[2:]))
                kind = "register"
            elif argv[0] == "grpc-proxy":
                cli._parser().parse_args(argv[1:])
                kind = "proxy"
            else:
                assert name in ("etcd1", "etcd2", "etcd3", "prometheus", "grafana"), argv
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"echo": 3, "register": 3, "proxy": 2}


def test_backends_serve_reflection(services: dict[str, dict[str, Any]]) -> None:
    """The compose file's grpcurl examples (list, describe, -d '{}' with no
    .proto) need the backends' server reflection."""
    echoes = [
        argv
        for svc in services.values()
        for argv in _commands(svc.get("command"))
        if argv[:2] == ["grpc-proxy", "echo"]
    ]
    assert len(echoes) == 3
    for argv in echoes:
        p = echo_cli.parser()
        assert echo_cli.backend_options(p, p.parse_args(argv[2:]))["reflection"], argv


def test_proxy_configs_pass_the_check(
    services: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    configs = _proxy_configs(services)
    assert set(configs) == {"proxy1", "proxy2"}
    for path in set(configs.values()):
        assert cli.main(["-t", "-c", str(path)]) == 0, capsys.readouterr().err


def test_registrations_match_the_proxies_etcd_pool(services: dict[str, dict[str, Any]]) -> None:
    regs = _registrations(services)
    assert set(regs) == {"backend-v1a", "backend-v1b", "backend-v2"}
    versions = sorted(m for a in regs.values() for m in a.meta)
    assert versions == ["version=v1", "version=v1", "version=v2"]
    config = load(str(_proxy_configs(services)["proxy1"]))
    pools = [u for u in config.upstreams.values() if u.etcd is not None]
    assert len(pools) == 1
    pool = pools[0]
    assert pool.subset == "version"
    etcd_hosts = {"etcd1", "etcd2", "etcd3"}
    assert {u.split("//")[1].split(":")[0] for u in pool.etcd.urls} == etcd_hosts
    echo_ports = {}
    for name, svc in services.items():
        for argv in _commands(svc.get("command")):
            if argv[:2] == ["grpc-proxy", "echo"]:
                echo_ports[name] = _echo_address(argv).port
    for name, args in regs.items():
        assert args.prefix == pool.etcd.prefix, name
        assert {u.split("//")[1].split(":")[0] for u in args.etcd.split(",")} == etcd_hosts
        host, port = args.address.rsplit(":", 1)
        assert host == name and int(port) == echo_ports[name], args.address
        assert args.health == f"127.0.0.1:{echo_ports[name]}", name
        assert f":{echo_ports[name]}" in json.dumps(services[name]["healthcheck"]["test"])


def test_proxy_ports_and_healthcheck_match_the_config(services: dict[str, dict[str, Any]]) -> None:
    for name, path in _proxy_configs(services).items():
        config = load(str(path))
        assert config.admin is not None and config.admin.listen.host == "0.0.0.0"
        listen_ports = {ln.address.port for s in config.servers for ln in s.listens}
        assert all(ln.address.host == "0.0.0.0" for s in config.servers for ln in s.listens)
        inside = {int(str(p).split(":")[-1]) for p in services[name]["ports"]}
        assert inside == listen_ports | {config.admin.listen.port}, name
        test = json.dumps(services[name]["healthcheck"]["test"])
        assert f":{config.admin.listen.port}/readyz" in test, name
        # SIGTERM drains for up to shutdown_timeout: compose must wait that long.
        grace = services[name]["stop_grace_period"]
        assert grace.endswith("s") and int(grace[:-1]) > config.shutdown_timeout, name


def test_prometheus_scrapes_both_proxies(services: dict[str, dict[str, Any]]) -> None:
    prom = yaml.safe_load((CONF / "prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    wanted = set()
    for name, path in _proxy_configs(services).items():
        config = load(str(path))
        assert config.admin is not None
        wanted.add(f"{name}:{config.admin.listen.port}")
    assert targets == wanted
    mounts = [v.split(":")[1] for v in services["prometheus"]["volumes"]]
    assert services["prometheus"]["command"] == [f"--config.file={mounts[0]}"]


def test_grafana_provisioning_finds_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    by_inside = {inside: host for host, inside in mounts.items()}
    prov = REPO / by_inside["/etc/grafana/provisioning"]
    providers = yaml.safe_load((prov / "dashboards" / "grpc-proxy.yml").read_text())
    folder = PurePosixPath(providers["providers"][0]["options"]["path"])
    dashboards = [inside for inside in by_inside if PurePosixPath(inside).parent == folder]
    assert dashboards and by_inside[dashboards[0]] == "./conf/grafana-dashboard.json"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    url = sources["datasources"][0]["url"]
    assert url.split("//")[1].split(":")[0] == "prometheus"
    json.loads((REPO / "conf/grafana-dashboard.json").read_text())


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        op, _, rest = line.partition(" ")
        lines.append((op.upper(), rest.strip()))
    return lines


def _copies() -> list[tuple[list[str], str]]:
    out = []
    for op, rest in _dockerfile():
        if op == "COPY":
            words = [w for w in rest.split() if not w.startswith("--")]
            out.append((words[:-1], words[-1]))
    return out


def test_dockerfile_is_slim_non_root_and_runs_the_conf_config() -> None:
    instructions = _dockerfile()
    ops = dict(instructions)  # last one of each
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    assert ops["USER"] not in ("root", "0")
    assert ops["STOPSIGNAL"] == "SIGTERM"
    cmd = json.loads(ops["CMD"])  # exec form: grpc-proxy is PID 1 and gets SIGTERM
    assert cmd[0] == "grpc-proxy"
    config = cli._parser().parse_args(cmd[1:]).config
    assert config == "/etc/grpc-proxy/grpc-proxy.conf"
    assert (["conf"], "/etc/grpc-proxy") in _copies()
    assert cli.main(["-t", "-c", str(CONF / "grpc-proxy.conf")]) == 0
    for sources, _ in _copies():
        for src in sources:
            assert (REPO / src).exists(), src


def test_dockerignore_keeps_the_copied_paths() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for sources, _ in _copies():
        for src in sources:
            assert src not in ignored, src


def test_image_install_step_builds_a_working_grpc_proxy(tmp_path: Path) -> None:
    """``pip install .`` from exactly what the Dockerfile copies before it (no
    tests/, conf/ or docs/), then the installed script checks the config."""
    src = tmp_path / "src"
    src.mkdir()
    for sources, dest in _copies():
        if dest.startswith("/etc/"):
            continue
        for s in sources:
            target = src / (Path(dest).name if not dest.endswith("/") and dest != "./" else s)
            if (REPO / s).is_dir():
                shutil.copytree(REPO / s, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(REPO / s, target)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "whl"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheels = list((tmp_path / "whl").glob("grpc_proxy-*.whl"))
    assert len(wheels) == 1
    site = tmp_path / "site"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheels[0]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    script = site / "bin" / "grpc-proxy"
    assert script.is_file()
    # Dependencies from this venv; the package itself from the fresh install.
    env["PYTHONPATH"] = str(site)
    probe = subprocess.run(
        [sys.executable, "-c", "import proxy, sys; print(proxy.__file__)"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert probe.stdout.strip().startswith(str(site)), probe.stdout + probe.stderr
    checked = subprocess.run(
        [str(script), "-t", "-c", str(CONF / "compose" / "grpc-proxy.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith("grpc-proxy.conf: ok")
    # The compose backends run `grpc-proxy echo` from the image: the demo
    # package is in the wheel, and the image installs its extra.
    echo = subprocess.run(
        [str(script), "echo", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert echo.returncode == 0 and "--listen" in echo.stdout, echo.stdout + echo.stderr
    assert (site / "grpc_proxy_demo" / "echo.proto").is_file()
    installs = [rest for op, rest in _dockerfile() if op == "RUN" and "pip install" in rest]
    assert len(installs) == 1 and "'.[demo]'" in installs[0], installs
