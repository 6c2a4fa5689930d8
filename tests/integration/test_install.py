"""The package as a user gets it: ``python -m build`` makes the sdist and, from
it, the wheel; ``twine check`` passes both; the wheel goes into a fresh venv
with the demo extra (dependencies from the package index pip is configured
with), and the installed ``grpc-proxy`` works from a directory that is not the
repository: ``-t`` without ``-c`` checks the configuration shipped in the
package, and ``grpc-proxy demo`` runs on it. The same wheel without the extra
(a second venv) serves and checks configurations without grpcio or rich, and
its ``demo`` and ``echo`` say in one line that they need the extra."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from harness import free_port, port_is_free, wait_for_port

from proxy.cli import CONFIG_ENV, SYSTEM_CONFIG

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# What a source distribution is made of (the Dockerfile copies the same).
SOURCES = ("pyproject.toml", "README.md", "setup.py", "proxy", "grpc_proxy_demo")
DEMO_PORTS = (8080, 50051, 50052, 50053)  # proxy/conf/grpc-proxy.conf
# The demo extra's distributions (pyproject.toml): none in a plain install.
DEMO_DISTS = ("grpcio", "grpcio-health-checking", "grpcio-reflection", "rich")


@dataclass
class Installed:
    dist: Path
    venv: Path
    elsewhere: Path  # a working directory with no conf/ in it
    env: dict[str, str]

    @property
    def script(self) -> str:
        return str(self.venv / "bin" / "grpc-proxy")

    def run(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.script, *args],
            cwd=self.elsewhere,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert r.returncode == 0, (
        f"{argv} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    )
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The sdist and the wheel, in ``dist``; the environment to install with."""
    root = tmp_path_factory.mktemp("build")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy(REPO / name, src / name)
    # Nothing from this checkout on the path: only the installed package runs.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", CONFIG_ENV)}
    dist = root / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], root, env, 300)
    return dist, env


def _install(
    tmp_path_factory: pytest.TempPathFactory, dist: Path, env: dict[str, str], extra: str
) -> Installed:
    """The wheel (``extra``: ``"[demo]"`` or ``""``) in a fresh venv."""
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root, env, 120)
    wheels = sorted(dist.glob("grpc_proxy-*.whl"))
    assert len(wheels) == 1, sorted(dist.iterdir())
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheels[0]}{extra}"],
        root,
        env,
        300,
    )
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(dist, venv, elsewhere, env)


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, built: tuple[Path, dict[str, str]]
) -> Installed:
    """``pip install 'WHEEL[demo]'``."""
    return _install(tmp_path_factory, *built, "[demo]")


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory, built: tuple[Path, dict[str, str]]
) -> Installed:
    """``pip install WHEEL``: no extra."""
    return _install(tmp_path_factory, *built, "")


def test_sdist_and_wheel_build_and_pass_twine_check(installed: Installed) -> None:
    sdists = sorted(installed.dist.glob("grpc_proxy-*.tar.gz"))
    wheels = sorted(installed.dist.glob("grpc_proxy-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(installed.dist.iterdir())
    r = _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdists[0]), str(wheels[0])],
        installed.dist,
        installed.env,
        60,
    )
    assert r.stdout.count("PASSED") == 2, r.stdout


def test_the_installed_package_is_the_one_that_runs(installed: Installed) -> None:
    r = _run(
        [str(installed.venv / "bin" / "python"), "-c", "import proxy; print(proxy.__file__)"],
        installed.elsewhere,
        installed.env,
        30,
    )
    assert r.stdout.strip().startswith(str(installed.venv)), r.stdout


def test_check_without_c_reads_the_packaged_config(installed: Installed) -> None:
    if os.path.exists(SYSTEM_CONFIG):
        pytest.skip(f"{SYSTEM_CONFIG} exists here: it would be the default")
    r = installed.run("-t")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    path = r.stdout.removesuffix(": ok\n")
    assert path.startswith(str(installed.venv)) and path.endswith("proxy/conf/grpc-proxy.conf")
    assert Path(path).read_bytes() == (REPO / "conf" / "grpc-proxy.conf").read_bytes()


def test_check_without_c_reads_the_environment_variable(installed: Installed) -> None:
    conf = installed.elsewhere / "mine.conf"
    conf.write_text(
        "upstream u { server 127.0.0.1:1; }\n"
        "server { listen 127.0.0.1:1; location / { grpc_pass u; } }\n"
    )
    r = installed.run("-t", env={CONFIG_ENV: "mine.conf"})
    assert (r.returncode, r.stdout, r.stderr) == (0, "mine.conf: ok\n", "")


def test_echo_subcommand_is_installed(installed: Installed) -> None:
    r = installed.run("echo", "--help")
    assert r.returncode == 0 and "--listen" in r.stdout, r.stdout + r.stderr


@pytest.mark.timeout(200)
def test_demo_runs_from_another_directory(installed: Installed) -> None:
    taken = [p for p in DEMO_PORTS if not port_is_free(p)]
    if taken:
        pytest.skip(f"the demo needs ports {DEMO_PORTS}; in use: {taken}")
    proc = subprocess.Popen(
        [installed.script, "demo", "-n", "20"],
        cwd=installed.elsewhere,
        env=installed.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out_b, err_b = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        out_b, err_b = proc.communicate(timeout=10)
        pytest.fail(f"demo still running after 120s:\n{out_b.decode()}\n{err_b.decode()}")
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "demo ok" in out and "Traceback" not in out + err
    for port in DEMO_PORTS:
        assert port_is_free(port), f"the demo left port {port} in use"


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    for c in children:
        with contextlib.suppress(psutil.Error):
            c.kill()


def test_a_plain_install_has_no_demo_dependencies(plain: Installed) -> None:
    r = _run(
        [str(plain.venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        plain.elsewhere,
        plain.env,
        60,
    )
    names = {line.split("==")[0].lower() for line in r.stdout.splitlines()}
    assert "grpc-proxy" in names
    assert not names & set(DEMO_DISTS), sorted(names)


def test_a_plain_install_checks_and_serves(plain: Installed) -> None:
    """The proxy itself needs none of the demo extra: -t, and a proxy process
    that accepts a connection and drains on SIGTERM."""
    port = free_port()
    conf = plain.elsewhere / "plain.conf"
    conf.write_text(
        "upstream u { server 127.0.0.1:1; }\n"
        f"server {{ listen 127.0.0.1:{port}; location / {{ grpc_pass u; }} }}\n"
    )
    r = plain.run("-t", "-c", str(conf))
    assert (r.returncode, r.stdout) == (0, f"{conf}: ok\n"), r.stderr
    proc = subprocess.Popen(
        [plain.script, "-c", str(conf)],
        cwd=plain.elsewhere,
        env=plain.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for_port(port, timeout=20, proc=proc), proc.poll()
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode(errors="replace")


@pytest.mark.parametrize("command", ["demo", "echo"])
def test_without_the_demo_extra_demo_and_echo_say_so(plain: Installed, command: str) -> None:
    r = plain.run(command)
    assert (r.returncode, r.stdout) == (1, ""), r
    assert r.stderr == (
        f"grpc-proxy {command}: needs the demo extra: pip install 'grpc-proxy[demo]'\n"
    )


def test_default_wheel_is_pure_python(installed: Installed) -> None:
    wheels = sorted(installed.dist.glob("grpc_proxy-*.whl"))
    assert [w.name.endswith("-py3-none-any.whl") for w in wheels] == [True], wheels
    r = installed.run("--version")
    assert r.returncode == 0 and r.stdout.strip().endswith("(pure Python)"), r.stdout + r.stderr


@pytest.mark.timeout(600)
def test_compiled_install_from_the_sdist(
    tmp_path_factory: pytest.TempPathFactory, built: tuple[Path, dict[str, str]]
) -> None:
    """The README's compiled build: mypy and setuptools first, then
    ``GRPC_PROXY_COMPILE=1 pip install --no-build-isolation`` (here from the
    sdist, which must carry setup.py)."""
    dist, env = built
    sdists = sorted(dist.glob("grpc_proxy-*.tar.gz"))
    assert len(sdists) == 1, sorted(dist.iterdir())
    root = tmp_path_factory.mktemp("compiled-install")
    venv = root / "venv"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([sys.executable, "-m", "venv", str(venv)], root, env, 120)
    _run([*pip, "mypy", "setuptools>=77"], root, env, 300)
    compile_env = {**env, "GRPC_PROXY_COMPILE": "1"}
    _run([*pip, "--no-build-isolation", str(sdists[0])], root, compile_env, 600)
    done = Installed(dist, venv, root, env)
    r = done.run("--version")
    assert r.returncode == 0 and r.stdout.strip().endswith("(compiled with mypyc)"), r.stdout
    r = done.run("-t")
    assert r.returncode == 0 and r.stdout.endswith(": ok\n"), r.stdout + r.stderr
