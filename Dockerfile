# grpc-proxy container image: slim Python, non-root, the package from this repository.
#   docker build -t grpc-proxy .
#   docker run -p 8080:8080 -p 127.0.0.1:9901:9901 -v /path/to/conf:/etc/grpc-proxy:ro grpc-proxy
# The bundled /etc/grpc-proxy/grpc-proxy.conf is conf/grpc-proxy.conf, a sample
# that listens on 127.0.0.1 (unreachable from outside the container): mount a
# directory whose grpc-proxy.conf listens on 0.0.0.0 (see conf/compose/).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md setup.py ./
COPY proxy ./proxy
COPY grpc_proxy_demo ./grpc_proxy_demo
# With the demo extra: docker-compose.yml's backends run `grpc-proxy echo` from
# this image. The proxy alone needs none of it: `pip install .`.
RUN pip install '.[demo]' && rm -rf /src

# The default configuration; mount your own over /etc/grpc-proxy.
COPY conf /etc/grpc-proxy
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin grpc-proxy
USER grpc-proxy
WORKDIR /

EXPOSE 8080 9901
# SIGTERM drains: listeners close, clients get a graceful GOAWAY, in-flight calls
# finish (up to shutdown_timeout), then the process exits 0. Give docker stop at
# least that long: docker stop -t 35, or stop_grace_period in compose.
STOPSIGNAL SIGTERM
CMD ["grpc-proxy", "-c", "/etc/grpc-proxy/grpc-proxy.conf"]
