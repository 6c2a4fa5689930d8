"""The nginx-style configuration: ``load(path)`` -> ``Config`` or ``ConfigError``.

Pipeline: ``lexer`` (tokens with lines) -> ``parser`` (directive tree,
includes expanded) -> ``builder`` (the directive table, ``builder.TABLE``:
checks, typed ``model``). The directives' parsers are ``core_directives``,
``security_directives``, ``http2_directives`` and ``etcd_directives``; the
values the file names are read by ``tls`` (certificates), ``tokens`` and
``acl``. Nothing here imports proxy.security, which builds on this.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.config.builder import build
from proxy.config.checks import warnings
from proxy.config.errors import ConfigError
from proxy.config.model import Config
from proxy.config.parser import Directive, parse_file, parse_text

__all__ = ["Config", "ConfigError", "load", "parse_string", "warnings"]


def load(path: str) -> Config:
    """Read, check and build the configuration in ``path`` (and its includes)."""
    return _guarded(path, lambda: parse_file(path))


def parse_string(text: str, file: str = "<string>") -> Config:
    """Like ``load``, for text in memory; ``file`` names it in errors and is
    the base for relative includes (its directory; the cwd for "<string>")."""
    return _guarded(file, lambda: parse_text(text, file))


def _guarded(file: str, parse: Callable[[], tuple[Directive, ...]]) -> Config:
    try:
        return build(parse(), file)
    except ConfigError:
        raise
    except Exception as e:  # RecursionError included
        # A bug here must not show a traceback to someone checking a file;
        # the fuzz test makes sure this line is never reached.
        raise ConfigError(file, 0, f"internal error while reading the configuration: {e!r}") from e
