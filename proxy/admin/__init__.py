"""The admin listener: /metrics, /healthz, /readyz, /upstreams and the status
page (``/``, ``/status.json``) over HTTP/1.1 (``handlers`` decides, ``server``
speaks h11 on trio, ``status``/``status_board``/``status_page`` make the page)."""
