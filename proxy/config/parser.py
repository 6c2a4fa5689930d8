"""Tokens -> a tree of directives, with ``include`` expanded in place.

``include PATTERN;`` works at any level and splices the included file's
directives where it stands, as nginx does. A relative PATTERN is resolved
against the directory of the file that contains the ``include`` (nginx
uses the directory of the main file, which is the same for the common
one-level case). Glob patterns are sorted; a glob matching nothing is
fine, a plain path that cannot be read is an error, as in nginx.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from proxy.config.errors import ConfigError, quote
from proxy.config.lexer import Kind, Token, last_line, tokenize
from proxy.config.model import Source

MAX_INCLUDE_DEPTH = 32
_GLOB_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True, slots=True)
class Directive:
    """``name args... ;`` (``block`` is None) or ``name args... { block }``."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[Directive, ...] | None = None

    @property
    def source(self) -> Source:
        return Source(self.file, self.line)


@dataclass(slots=True)
class _Frame:
    """A block being read: its opening words and the directives so far."""

    head: list[Token]
    children: list[Directive] = field(default_factory=list)


def parse_file(path: str) -> tuple[Directive, ...]:
    """Read and parse the main file; ``path`` appears as given in errors."""
    return _parse(_read(path, None), path, ())


def parse_text(text: str, file: str) -> tuple[Directive, ...]:
    """Parse ``text`` as if read from ``file`` (includes resolve beside it)."""
    return _parse(text, file, ())


def _parse(text: str, file: str, stack: tuple[str, ...]) -> tuple[Directive, ...]:
    """Build the tree with an explicit stack: deep nesting cannot overflow
    Python's recursion limit. ``stack`` holds the real paths of the files
    being included, to catch include cycles."""
    stack = (*stack, os.path.realpath(file))
    frames = [_Frame(head=[])]
    words: list[Token] = []
    for tok in tokenize(text, file):
        if tok.kind is Kind.WORD:
            words.append(tok)
            continue
        if tok.kind is Kind.CLOSE:
            if words or len(frames) == 1:
                raise ConfigError(file, tok.line, 'unexpected "}"')
            done = frames.pop()
            _add(frames[-1], _directive(done.head, file, tuple(done.children)), stack)
        elif not words:
            raise ConfigError(file, tok.line, f'unexpected "{tok.value}"')
        elif tok.kind is Kind.OPEN:
            frames.append(_Frame(head=words))
        else:
            _add(frames[-1], _directive(words, file, None), stack)
        words = []
    _check_eof(text, file, words, frames)
    return tuple(frames[0].children)


def _directive(words: list[Token], file: str, block: tuple[Directive, ...] | None) -> Directive:
    args = tuple(w.value for w in words[1:])
    return Directive(words[0].value, args, file, words[0].line, block)


def _check_eof(text: str, file: str, words: list[Token], frames: list[_Frame]) -> None:
    if words:
        msg = 'unexpected end of file, expecting ";" or "}"'
        raise ConfigError(file, last_line(text), msg)
    if len(frames) > 1:
        opener = frames[-1].head[0]
        msg = (
            f'unexpected end of file, expecting "}}" '
            f"to close {quote(opener.value)} at line {opener.line}"
        )
        raise ConfigError(file, last_line(text), msg)


def _add(frame: _Frame, d: Directive, stack: tuple[str, ...]) -> None:
    if d.name == "include":
        frame.children.extend(_include(d, stack))
    else:
        frame.children.append(d)


def _include(d: Directive, stack: tuple[str, ...]) -> list[Directive]:
    if d.block is not None:
        raise ConfigError(d.file, d.line, 'directive "include" is not terminated by ";"')
    if len(d.args) != 1:
        raise ConfigError(d.file, d.line, 'invalid number of arguments in "include" directive')
    if len(stack) > MAX_INCLUDE_DEPTH:
        raise ConfigError(d.file, d.line, "includes are nested too deeply")
    pattern = os.path.join(os.path.dirname(d.file), d.args[0])
    paths = sorted(glob.glob(pattern)) if _GLOB_MAGIC.search(d.args[0]) else [pattern]
    out: list[Directive] = []
    for path in paths:
        if os.path.realpath(path) in stack:
            msg = f"include cycle: {quote(path, shorten=False)} includes itself"
            raise ConfigError(d.file, d.line, msg)
        out.extend(_parse(_read(path, d), path, stack))
    return out


def _read(path: str, include: Directive | None) -> str:
    """The file's text; errors point at the ``include`` line, or at line 0
    of the main file."""
    where = (include.file, include.line) if include else (path, 0)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(*where, f"cannot open {quote(path, shorten=False)}: {reason}") from None
    except ValueError as e:  # an embedded NUL in the path
        raise ConfigError(*where, f"cannot open {quote(path, shorten=False)}: {e}") from None
    try:
        return data.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(path, line, "invalid UTF-8") from None
