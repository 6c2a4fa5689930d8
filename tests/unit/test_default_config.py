"""The default configuration: the copy shipped in the package is the
repository's conf/grpc-proxy.conf, and ``-c`` omitted picks $GRPC_PROXY_CONF,
else /etc/grpc-proxy/grpc-proxy.conf if it exists, else the packaged copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import cli
from proxy.config import load

REPO = Path(__file__).resolve().parents[2]


def test_packaged_config_is_the_repository_example() -> None:
    packaged = Path(cli.PACKAGED_CONFIG)
    assert packaged == REPO / "proxy" / "conf" / "grpc-proxy.conf"
    assert packaged.read_bytes() == (REPO / "conf" / "grpc-proxy.conf").read_bytes(), (
        "conf/grpc-proxy.conf changed: cp conf/grpc-proxy.conf proxy/conf/grpc-proxy.conf"
    )
    config = load(str(packaged))
    assert config.servers, "the default configuration must serve something (the demo)"


def test_pyproject_ships_the_config() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '"conf/*.conf"' in text


def test_environment_variable_wins(tmp_path: Path) -> None:
    system = tmp_path / "system.conf"
    system.write_text("")
    env = {cli.CONFIG_ENV: "/somewhere/else.conf"}
    assert cli.default_config(env, str(system), "/pkg.conf") == "/somewhere/else.conf"


def test_system_file_when_it_exists(tmp_path: Path) -> None:
    system = tmp_path / "system.conf"
    assert cli.default_config({}, str(system), "/pkg.conf") == "/pkg.conf"
    system.write_text("")
    assert cli.default_config({}, str(system), "/pkg.conf") == str(system)
    assert cli.default_config({cli.CONFIG_ENV: ""}, str(system), "/pkg.conf") == str(system)


def test_check_without_c_names_the_file_it_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.CONFIG_ENV, str(REPO / "conf" / "examples" / "minimal.conf"))
    assert cli.main(["-t"]) == 0
    out = capsys.readouterr()
    assert (out.out, out.err) == (f"{REPO}/conf/examples/minimal.conf: ok\n", "")


def test_help_documents_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert cli.CONFIG_ENV in out and cli.SYSTEM_CONFIG in out


def test_c_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.CONFIG_ENV, "/nonexistent/grpc-proxy.conf")
    minimal = str(REPO / "conf" / "examples" / "minimal.conf")
    assert cli.main(["-t", "-c", minimal]) == 0
    assert capsys.readouterr().out == f"{minimal}: ok\n"
