"""Tokens of the nginx syntax, with the line each one starts on.

Follows nginx's ``ngx_conf_read_token``: whitespace is space, tab, CR and LF;
``#`` starts a comment only where a token could start; ``;`` ``{`` ``}`` are
tokens of their own; a quoted string must be followed by whitespace, ``;``,
``{`` or ``}``; ``\\"``, ``\\'``, ``\\\\``, ``\\t``, ``\\r``, ``\\n`` are
unescaped, any other backslash is kept. One deliberate difference: nginx
reads ``a}`` as a single word, here ``}`` always ends a word, so a missing
``;`` before ``}`` is reported where it happens.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from proxy.config.errors import ConfigError, quote

_SPACE = " \t\r\n"
_SPECIAL = ";{}"
_ENDS_WORD = _SPACE + _SPECIAL
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


class Kind(enum.Enum):
    WORD = "word"
    SEMICOLON = ";"
    OPEN = "{"
    CLOSE = "}"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    value: str
    line: int


@dataclass(slots=True)
class _Scanner:
    text: str
    file: str
    pos: int = 0
    line: int = 1

    def advance(self, end: int) -> str:
        """Consume ``text[pos:end]``, counting its newlines; return it."""
        chunk = self.text[self.pos : end]
        self.line += chunk.count("\n")
        self.pos = end
        return chunk


def tokenize(text: str, file: str) -> list[Token]:
    """All tokens of ``text``; raises ConfigError on a lexical error."""
    nul = text.find("\0")
    if nul >= 0:
        # A text file has none: a binary or damaged file (say, zeros after a
        # crash), which would otherwise read as one long word and end in
        # "unexpected end of file" far from the damage.
        raise ConfigError(file, text.count("\n", 0, nul) + 1, "unexpected NUL byte")
    s = _Scanner(text, file)
    tokens: list[Token] = []
    while s.pos < len(text):
        c = text[s.pos]
        if c in _SPACE:
            s.advance(s.pos + 1)
        elif c == "#":
            end = text.find("\n", s.pos)
            s.advance(len(text) if end < 0 else end)
        elif c in _SPECIAL:
            tokens.append(Token(Kind(c), c, s.line))
            s.advance(s.pos + 1)
        elif c in "\"'":
            tokens.append(_quoted(s))
        else:
            tokens.append(_word(s))
    return tokens


def last_line(text: str) -> int:
    """The line an "unexpected end of file" is reported on: the last line
    that exists in an editor (a final newline does not start a new one)."""
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def _word(s: _Scanner) -> Token:
    line, start, text = s.line, s.pos, s.text
    pos = start
    while pos < len(text) and text[pos] not in _ENDS_WORD:
        # A backslash protects the next character, even a space or ";".
        pos += 2 if text[pos] == "\\" else 1
    pos = min(pos, len(text))
    return Token(Kind.WORD, _unescape(s.advance(pos)), line)


def _quoted(s: _Scanner) -> Token:
    line, text = s.line, s.text
    q = text[s.pos]
    pos = s.pos + 1
    while pos < len(text) and text[pos] != q:
        pos += 2 if text[pos] == "\\" else 1
    if pos >= len(text):
        raise ConfigError(s.file, line, "unterminated quoted string")
    raw = s.advance(pos + 1)[1:-1]
    if s.pos < len(text) and text[s.pos] not in _ENDS_WORD:
        raise ConfigError(s.file, s.line, f"unexpected {quote(text[s.pos])}")
    return Token(Kind.WORD, _unescape(raw), line)


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        if raw[i] == "\\" and nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)
