"""The admin listener: /metrics, /healthz, /readyz, /upstreams over HTTP/1.1
(``handlers`` decides, ``server`` speaks h11 on trio)."""
