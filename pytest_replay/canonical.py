"""Canonical JSON bytes and blake3 digests: the identity of every recorded value."""

from __future__ import annotations

import json
import math
from typing import Any

import blake3

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
)


class NotCanonical(TypeError):
    """A value with no canonical JSON form (sets, objects, non-str keys...)."""


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types, or raise NotCanonical.

    Tuples become lists and NumPy scalars become Python numbers, as they
    would after a round trip through the cassette; dict keys must be str.
    """
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, (bool, int, float, str)):
        return plain_scalar(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotCanonical(f"dict key {k!r} is {type(k).__name__}, not str")
            out[k] = jsonable(v)
        return out
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        return jsonable(item())  # NumPy/CuPy scalar
    raise NotCanonical(f"{type(value).__name__} has no JSON form")


_PLAIN = (bool, int, float, str)


def plain_scalar(value: bool | int | float | str) -> bool | int | float | str:
    """The built-in value of a subclass (np.float64, np.str_, IntEnum...).

    YAML and JSON writers only know the exact built-in types; a subclass
    would fail at save time, after the test already passed.
    """
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return str.__str__(value)


def copy_json(value: Any) -> Any:
    """A fresh copy of a JSON value, so a caller that mutates it changes nothing recorded."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def is_array(value: Any) -> bool:
    """A NumPy/CuPy-like array (or anything exposing an array interface)."""
    return hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text: equal values give equal text."""
    return _ENCODER.encode(jsonable(value))


def digest(data: bytes | str) -> str:
    """blake3 hex digest (64 chars) of bytes or UTF-8 text."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return blake3.blake3(data).hexdigest()


def value_digest(value: Any) -> str:
    """Digest of a value's canonical JSON form."""
    return digest(canonical_json(value))


def floats_equal(a: float, b: float) -> bool:
    """Equality that treats NaN as equal to NaN (recorded NaN replays as NaN)."""
    return a == b or (math.isnan(a) and math.isnan(b))
