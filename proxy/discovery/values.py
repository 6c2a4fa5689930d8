"""What a value under an upstream's etcd prefix may hold: one endpoint.

- ``host:port``
- canonical JSON ``{"address": "host:port", "weight": 2, "meta": {"version": "v1"}}``
- grpc-lb / etcd naming JSON ``{"Addr": "host:port", "Metadata": {...}}``
  (weight from ``Metadata.weight``, the other scalar entries become labels)
- go-micro style ``{"node": {"address": "host:port", "version": "v1", ...}}``
  (scalar fields and ``metadata`` entries become labels, ``weight`` the weight)

``parse_value`` raises ``ValueError`` (a short reason) for anything else.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.config.model import UpstreamServer
from proxy.config.units import UnitError, parse_address

MAX_WEIGHT = 2**31 - 1
MAX_VALUE = 64 << 10  # an endpoint never needs more; bigger values are not parsed
_Scalar = (str, int, float, bool)


def parse_value(value: bytes) -> UpstreamServer:
    if len(value) > MAX_VALUE:
        raise ValueError(f"value is larger than {MAX_VALUE} bytes")
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("value is not UTF-8") from None
    if not text.startswith("{"):
        return UpstreamServer(_address(text))
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("value is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("JSON value is not an object")
    if "address" in doc:
        return _endpoint(doc["address"], doc.get("weight", 1), _labels(doc.get("meta"), "meta"))
    if "Addr" in doc:
        md = doc.get("Metadata")
        weight = md.get("weight", 1) if isinstance(md, dict) else 1
        labels = _labels(md, "Metadata") if isinstance(md, dict) else ()
        return _endpoint(doc["Addr"], weight, tuple(kv for kv in labels if kv[0] != "weight"))
    if "node" in doc:
        node = doc["node"]
        if not isinstance(node, dict):
            raise ValueError('"node" is not an object')
        md = node.get("metadata")
        node_labels = dict(_labels(md, "metadata")) if isinstance(md, dict) else {}
        node_labels.update(
            (k, _text(v))
            for k, v in node.items()
            if k not in ("address", "weight", "metadata") and isinstance(v, _Scalar)
        )
        weight = node.get("weight", node_labels.pop("weight", 1))
        return _endpoint(node.get("address"), weight, tuple(sorted(node_labels.items())))
    raise ValueError('JSON value has none of "address", "Addr" or "node"')


def _endpoint(address: Any, weight: Any, meta: tuple[tuple[str, str], ...]) -> UpstreamServer:
    if not isinstance(address, str):
        raise ValueError("address is not a string")
    return UpstreamServer(_address(address), weight=_weight(weight), meta=meta)


def _address(text: str) -> Any:
    try:
        return parse_address(text)
    except UnitError as e:
        raise ValueError(str(e)) from None


def _weight(value: Any) -> int:
    # Go registries often store numbers as strings in string-valued metadata.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WEIGHT:
        raise ValueError(f"weight {value!r} is not an integer from 1 to {MAX_WEIGHT}")
    return value


def _labels(meta: Any, name: str) -> tuple[tuple[str, str], ...]:
    """Scalar entries of a JSON object as sorted (key, text) labels; nested
    values are not labels and are left out."""
    if meta is None:
        return ()
    if not isinstance(meta, dict):
        raise ValueError(f'"{name}" is not an object')
    return tuple(sorted((str(k), _text(v)) for k, v in meta.items() if isinstance(v, _Scalar)))


def _text(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def canonical_value(address: str, weight: int = 1, meta: dict[str, str] | None = None) -> str:
    """The canonical JSON that ``grpc-proxy register`` writes."""
    doc: dict[str, Any] = {"address": address, "weight": weight}
    if meta:
        doc["meta"] = dict(meta)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)
