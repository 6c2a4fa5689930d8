"""config is the model layer and security holds the run-time checks built
from it: security may import config, config never imports security (not
even for type checking)."""

from __future__ import annotations

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[2] / "proxy"


def _imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every ``proxy.*`` import in ``package``."""
    found = []
    for path in sorted((PROXY / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((path.name, node.lineno, node.module))
            elif isinstance(node, ast.Import):
                found += [(path.name, node.lineno, a.name) for a in node.names]
    return [f for f in found if f[2].startswith("proxy.")]


def test_config_never_imports_security() -> None:
    bad = [f for f in _imports("config") if f[2].startswith("proxy.security")]
    assert not bad, bad


def test_security_imports_config_values_only() -> None:
    """The checks take config's values (rules, token digests, the model's
    ``Access``); they read no file and build nothing of the configuration."""
    uses = {f[2] for f in _imports("security") if f[2].startswith("proxy.config")}
    assert uses <= {"proxy.config.acl", "proxy.config.tokens", "proxy.config.model"}, uses
