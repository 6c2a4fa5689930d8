"""grpc-proxy: a gRPC HTTP/2 reverse proxy and central load balancer on trio."""

__version__ = "0.1.0"
