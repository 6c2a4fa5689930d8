"""Run-time security checks, built from the configuration: the per-call
access check (``access.check``: ``acl`` address rules, then ``tokens``) and
what a TLS handshake tells about the peer (``tls``). Pure: no sockets; the
trio side is proxy/runtime/tls.py.

Layering: security imports proxy.config, never the reverse. The values the
checks use (``Rule``, ``BearerTokens``, the TLS contexts) are read and built
when the configuration is loaded: proxy/config/acl.py, tokens.py, tls.py."""
