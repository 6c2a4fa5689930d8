"""The one exception the configuration loader raises: ``FILE:LINE: message``."""

from __future__ import annotations

_MAX_SHOWN = 64  # longer values are cut so a message stays readable


class ConfigError(Exception):
    """A configuration problem, located at ``file:line``.

    ``str()`` is exactly ``FILE:LINE: message`` on one line, ready for stderr.
    Line 0 means the file as a whole (for example, it cannot be opened).
    """

    def __init__(self, file: str, line: int, message: str) -> None:
        # Passing every field to Exception keeps the error picklable.
        super().__init__(file, line, message)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def quote(value: str, *, shorten: bool = True) -> str:
    """``value`` in double quotes, escaped (and shortened unless it is a path)
    to fit on one line.

    Values come from the user's file and may hold newlines or control bytes;
    an error message must still be exactly one line.
    """
    shown = value if len(value) <= _MAX_SHOWN or not shorten else value[:_MAX_SHOWN] + "..."
    escaped = "".join(_escape(c) for c in shown)
    return f'"{escaped}"'


def _escape(c: str) -> str:
    if c == '"' or c == "\\":
        return "\\" + c
    if c.isprintable():
        return c
    return repr(c)[1:-1]  # \n, \t, \x00, \u2028 ...
