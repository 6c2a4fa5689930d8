"""Prometheus metrics: names and labels (``names``), per-call aggregation in
plain ints (``observer``), and the prometheus-client side (``export``)."""
