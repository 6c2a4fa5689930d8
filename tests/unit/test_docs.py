"""The operator's guide keeps up with the code: every directive the config
builder accepts has a heading in docs/configuration.md whose section gives its
syntax, default, context and nginx equivalent; every relative link between the
docs points at a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.config.builder import TABLE

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
REFERENCE = DOCS / "configuration.md"


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading text, body up to the next heading of any level), outside code fences."""
    out: list[tuple[str, list[str]]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            out.append((line.lstrip("#").strip(), []))
        elif out:
            out[-1][1].append(line)
    return [(h, "\n".join(body)) for h, body in out]


def _names_in(heading: str) -> set[str]:
    """Directive names a heading documents; "(in upstream)"-style notes excluded."""
    return set(re.findall(r"[a-z0-9_]+", re.sub(r"\(.*?\)", "", heading.replace("`", ""))))


DIRECTIVES = sorted({(str(ctx.name).lower(), row.name) for row in TABLE for ctx in row.contexts})


@pytest.mark.parametrize(("context", "name"), DIRECTIVES, ids=[f"{c}.{n}" for c, n in DIRECTIVES])
def test_every_directive_is_documented(context: str, name: str) -> None:
    sections = _sections(REFERENCE.read_text())
    mine = [(h, b) for h, b in sections if name in _names_in(h)]
    assert mine, f"docs/configuration.md has no heading naming {name!r}"
    for heading, body in mine:
        syntax = re.search(r"^Syntax:(.*(?:\n {8,}.*)*)", body, re.M)
        assert syntax and re.search(rf"\b{name}\b", syntax.group(1)), (heading, "Syntax:")
        assert re.search(r"^Default:", body, re.M), (heading, "Default:")
        assert re.search(r"^Context:", body, re.M), (heading, "Context:")
        assert re.search(r"nginx", body, re.I), (heading, "no word on nginx")
    in_context = [b for _, b in mine if re.search(rf"^Context:.*\b{context}\b", b, re.M)]
    if not in_context:  # a directive of a block's own context, e.g. admin's listen
        block = [
            b
            for h, b in sections
            if context in _names_in(h) and re.search(rf"^Syntax:.*\b{name}\b", b, re.M)
        ]
        assert block, f"{name!r} is not documented in the {context!r} context"


def test_reference_documents_nothing_the_builder_rejects() -> None:
    known = {name for _, name in DIRECTIVES} | {"include"}
    for heading, body in _sections(REFERENCE.read_text()):
        for m in re.finditer(r"^Syntax:\s+(\w+)", body, re.M):
            assert m.group(1) in known, (heading, m.group(1))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def test_relative_links_resolve() -> None:
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    checked = 0
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s):, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), f"{page.name}: broken link {target}"
            if anchor and dest.suffix == ".md":
                anchors = {_anchor(h) for h, _ in _sections(dest.read_text())}
                assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {dest.name}"
            checked += 1
    assert checked >= 10


def test_coming_from_nginx_example_is_a_valid_config(tmp_path: Path) -> None:
    from proxy.cli import main

    text = (DOCS / "coming-from-nginx.md").read_text()
    after = text.split("## The same with grpc-proxy", 1)[1]
    block = re.search(r"```nginx\n(.*?)```", after, re.S)
    assert block
    conf = tmp_path / "from-nginx.conf"
    # -t opens the access log (as nginx's): the example's directory, here in tmp_path.
    logs = "/var/log/grpc-proxy/"
    assert logs in block.group(1)
    conf.write_text(block.group(1).replace(logs, f"{tmp_path}/"))
    assert main(["-t", "-c", str(conf)]) == 0


def test_readme_starts_with_the_two_commands_and_its_example_is_valid(tmp_path: Path) -> None:
    from proxy.cli import main

    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block and text.index("```sh") < text.index("\n## ")
    commands = [ln for ln in first_block.group(1).splitlines() if ln and not ln.startswith("#")]
    # The demo's dependencies are the demo extra's (pyproject.toml).
    assert any("'.[demo]'" in c and "grpc-proxy demo" in c for c in commands)
    assert any("'.[test]'" in c and "pytest" in c for c in commands)
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block
    conf = tmp_path / "readme.conf"
    conf.write_text(block.group(1))
    assert main(["-t", "-c", str(conf)]) == 0
