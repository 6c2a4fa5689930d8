"""Who may talk to the proxy, and how: TLS contexts (``tls``), address rules
(``acl``) and bearer tokens (``tokens``). Pure: no sockets; the trio side is
proxy/runtime/tls.py, the per-call check is ``access.check``."""
