"""A small, strict HTTP/2 connection core (RFC 9113) for the relay: bytes in, events out."""


def compiled() -> bool:
    """Whether this core runs compiled (setup.py, ``GRPC_PROXY_COMPILE=1``)."""
    from importlib.machinery import EXTENSION_SUFFIXES

    from proxy.http2 import connection

    return (connection.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))


def build_name() -> str:
    return "HTTP/2 core: compiled with mypyc" if compiled() else "HTTP/2 core: pure Python"
