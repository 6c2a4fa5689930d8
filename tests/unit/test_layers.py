"""The package's layering, as import-linter would check it: every module under
proxy/ is parsed (ast, nothing imported) and each ``import proxy...`` /
``from proxy... import`` it makes, at module level or inside a function, may
name only its own layer or a lower one. ``if TYPE_CHECKING:`` blocks are
skipped: annotations may point anywhere.

Layers, lowest first (a module belongs to the longest matching prefix):

    proxy (the package: __version__)
    http2                        the HTTP/2 state machine
    status, grpc_timeout         gRPC on the wire: statuses, grpc-timeout
    config, security             the file and its model; ACLs, tokens, TLS contexts
    balancing                    endpoints, pools, policies, health state
    relay                        streams paired client to upstream
    discovery, metrics, admin,   what feeds and observes the relay: etcd feeds and
      access_log                 registration, metrics, the admin listener, access logs
    runtime                      the trio process: tasks, listeners, reloads, wiring
    cli, __main__, echo          the command line (echo: python -m proxy.echo's shim)

Also here: discovery never names the relay or the runtime, not even for
types (it publishes through a callback, proxy/runtime/services.py); proxy/
imports only the standard library and its default dependencies
(pyproject.toml), and grpc_proxy_demo only from the command line; and no
module registers into another module's list or dict when imported.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "proxy"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("proxy", ("proxy",)),
    ("http2", ("proxy.http2",)),
    ("grpc wire", ("proxy.status", "proxy.grpc_timeout")),
    ("config/security", ("proxy.config", "proxy.security")),
    ("balancing", ("proxy.balancing",)),
    ("relay", ("proxy.relay",)),
    ("discovery/metrics", ("proxy.discovery", "proxy.metrics", "proxy.admin", "proxy.access_log")),
    ("runtime", ("proxy.runtime",)),
    ("cli", ("proxy.cli", "proxy.__main__", "proxy.echo")),
]
CLI = "cli"
DEMO_PACKAGE = "grpc_proxy_demo"  # shipped beside proxy/, with the demo extra

# Edges that other branches are removing, (importer, imported) as modules.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    module: str  # the importer
    target: str  # the imported module
    path: Path
    line: int
    typing_only: bool  # inside ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.module} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node``, with whether it sits in an ``if TYPE_CHECKING:``
    body (its ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child.test):
            yield child.test, typing_only
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, typing_only
                yield from _walk(stmt, typing_only)
        else:
            yield child, typing_only
            yield from _walk(child, typing_only)


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement names (``from a import b``: ``a.b`` if
    that is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]


@cache
def _imports() -> tuple[Import, ...]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for node, typing_only in _walk(tree):
            for target in _targets(node, module, path.name == "__init__.py"):
                found.append(
                    Import(
                        module,
                        target,
                        path,
                        node.lineno,  # type: ignore[attr-defined]
                        typing_only,
                    )
                )
    return tuple(found)


def _layer(module: str) -> int:
    best, index = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def _internal(imp: Import) -> bool:
    return imp.target == "proxy" or imp.target.startswith("proxy.")


def _violations() -> list[Import]:
    return [
        imp
        for imp in _imports()
        if _internal(imp) and not imp.typing_only and _layer(imp.target) > _layer(imp.module)
    ]


def _describe(imp: Import) -> str:
    return f"{imp} ({LAYERS[_layer(imp.module)][0]} may not import {LAYERS[_layer(imp.target)][0]})"


def test_every_module_has_a_layer() -> None:
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    assert modules and not [m for m in sorted(modules) if _layer(m) < 0]
    assert _layer("proxy.http2.connection") == 1 and _layer("proxy") == 0  # longest prefix


def test_the_parser_sees_every_kind_of_import() -> None:
    """Imports inside functions count; TYPE_CHECKING ones are marked."""
    found = {(i.module, i.target, i.typing_only) for i in _imports()}
    assert ("proxy.cli", "proxy.runtime.main", False) in found  # inside main()
    assert ("proxy.cli", "proxy.config.model", True) in found  # if TYPE_CHECKING
    assert ("proxy.runtime.health", "proxy.balancing.health", False) in found  # from a import b
    assert ("proxy.__main__", "proxy.cli", False) in found


def test_imports_follow_the_layers() -> None:
    bad = _violations()
    assert not bad, f"{len(bad)} import(s) against the layers:\n" + "\n".join(
        _describe(i) for i in bad
    )


def test_no_violation_beyond_the_known_ones() -> None:
    """What holds until the known violations are gone: no new one."""
    bad = [i for i in _violations() if (i.module, i.target) not in KNOWN_VIOLATIONS]
    assert not bad, f"{len(bad)} import(s) against the layers:\n" + "\n".join(
        _describe(i) for i in bad
    )


def test_discovery_names_neither_the_relay_nor_the_runtime() -> None:
    """Not even for type checking: feeds publish through the callback the
    runtime passes in."""
    bad = [
        str(i)
        for i in _imports()
        if i.module.startswith("proxy.discovery")
        and re.match(r"proxy\.(relay|runtime)(\.|$)", i.target)
    ]
    assert not bad, "\n".join(bad)


def _default_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    return {n.lower().replace("-", "_") for n in names}  # prometheus-client: prometheus_client


def test_proxy_imports_only_the_stdlib_and_its_default_dependencies() -> None:
    """A plain ``pip install grpc-proxy`` runs every module: grpcio and rich
    (the demo extra) stay in grpc_proxy_demo, which only the command line
    imports (and says when the extra is missing)."""
    allowed = _default_dependencies() | set(sys.stdlib_module_names) | {"proxy", "__future__"}
    bad = []
    for imp in _imports():
        top = imp.target.split(".")[0]
        if imp.typing_only or top in allowed:
            continue
        if top == DEMO_PACKAGE and LAYERS[_layer(imp.module)][0] == CLI:
            continue
        bad.append(str(imp))
    assert not bad, "\n".join(bad)
    assert "trio" in _default_dependencies() and "grpcio" not in _default_dependencies()


_MUTATORS = {"append", "extend", "insert", "update", "setdefault", "add", "register", "__setitem__"}


def _top_level(tree: ast.Module) -> Iterator[ast.AST]:
    """Nodes that run when the module is imported (not in def or class bodies)."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _changed(node: ast.AST) -> ast.expr | None:
    """What a statement or call changes in place: ``X.append(...)``,
    ``X[k] = ...``, ``X.a = ...``, ``X += ...``; else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _MUTATORS
    ):
        return node.func.value
    if isinstance(node, ast.Assign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return next((t for t in targets if isinstance(t, ast.Attribute | ast.Subscript)), None)
    return None


def test_no_module_registers_into_another_at_import() -> None:
    """A module may fill its own tables when imported, never another module's
    list or dict (wiring is explicit: proxy/runtime/services.py)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        imported = {
            (a.asname or a.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for a in node.names
        }
        for node in _top_level(tree):
            target = _changed(node)
            if target is not None and _root(target) in imported:
                bad.append(
                    f"{path.relative_to(REPO)}:{node.lineno}: "  # type: ignore[attr-defined]
                    f"{ast.unparse(node)[:80]}"
                )
    assert not bad, "\n".join(sorted(bad))
