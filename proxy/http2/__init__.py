"""A small, strict HTTP/2 connection core (RFC 9113) for the relay: bytes in, events out."""
