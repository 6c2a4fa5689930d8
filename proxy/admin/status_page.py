"""The status page: ``status_page.html`` (package data: inline CSS and JS, no
external assets) with the first /status.json document embedded, so the page
draws at once and then refreshes itself from /status.json every 2 s."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

CONTENT_TYPE = "text/html; charset=utf-8"
PLACEHOLDER = "/*__STATUS__*/null"
# Nothing but the page's own inline script and style, and fetches back to the
# admin listener; never framed (the admin listener has no authentication).
HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


@cache
def template() -> str:
    text = resources.files("proxy.admin").joinpath("status_page.html").read_text("utf-8")
    if PLACEHOLDER not in text:  # pragma: no cover - a broken package
        raise RuntimeError("status_page.html has no status placeholder")
    return text


def embed(doc: Any) -> str:
    """``doc`` as JSON that is safe inside a <script> element: no ``<``, ``>``
    or ``&`` (so no ``</script>`` or ``<!--``), no U+2028/U+2029."""
    text = json.dumps(doc, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def render(doc: Any) -> bytes:
    return template().replace(PLACEHOLDER, embed(doc), 1).encode("utf-8")
