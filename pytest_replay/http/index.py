"""Request matching in O(1): a match key per request, a FIFO of recorded responses per key."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from ..canonical import digest
from .normalise import uri_parts

DEFAULT_MATCH_ON = ("method", "scheme", "host", "port", "path", "query")
URI_PARTS = ("scheme", "host", "port", "path", "query")
MATCHERS = frozenset({*DEFAULT_MATCH_ON, "uri", "body", "headers"})
# Request headers that differ run to run without changing what is asked for.
_HEADER_NOISE = frozenset({"content-length", "host", "user-agent", "connection", "accept-encoding"})

# What a key is computed from: (method, uri, headers, body getter).
KeyFunction = Callable[[str, str, dict[str, list[str]], Callable[[], bytes]], Hashable]


def valid_match_on(value: Any) -> bool:
    """A list/tuple of matcher names or callables ``f(request dict) -> hashable``."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return all(callable(v) or (isinstance(v, str) and v in MATCHERS) for v in value)


def body_digest(body: bytes) -> str:
    """JSON bodies by their canonical form (key order and spacing do not count), others raw."""
    if body.lstrip()[:1] in (b"{", b"["):
        try:
            value = json.loads(body)
        except ValueError:
            pass
        else:
            return digest(json.dumps(value, sort_keys=True, separators=(",", ":")))
    return digest(body)


def headers_key(headers: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        sorted((k.lower(), tuple(v)) for k, v in headers.items() if k.lower() not in _HEADER_NOISE)
    )


def key_function(match_on: Sequence[Any] = DEFAULT_MATCH_ON) -> KeyFunction:
    """Compile ``match_on`` into one function from a request to its hashable key."""
    names: list[Any] = []
    for m in match_on:
        if m == "uri":
            names.extend(URI_PARTS)
        else:
            names.append(m)
    positions = {p: i for i, p in enumerate(URI_PARTS)}
    uri_needed = any(isinstance(n, str) and n in positions for n in names)

    def key(
        method: str, uri: str, headers: dict[str, list[str]], body: Callable[[], bytes]
    ) -> Hashable:
        parts = uri_parts(uri) if uri_needed else ()
        out: list[Hashable] = []
        for name in names:
            if name == "method":
                out.append(method.upper())
            elif isinstance(name, str) and name in positions:
                out.append(parts[positions[name]])
            elif name == "body":
                out.append(body_digest(body()))
            elif name == "headers":
                out.append(headers_key(headers))
            else:  # a user key function sees the request as the hook does
                item = {"method": method, "uri": uri, "headers": headers, "body": body()}
                out.append(name(item))
        return tuple(out)

    if tuple(names) == DEFAULT_MATCH_ON:

        def default_key(
            method: str, uri: str, headers: dict[str, list[str]], body: Callable[[], bytes]
        ) -> Hashable:
            return (method.upper(), *uri_parts(uri))

        return default_key
    return key


class FifoIndex:
    """Key -> positions of the recorded interactions with that key, oldest first.

    Taking is ``dict.get`` plus ``deque.popleft`` (atomic in CPython), so
    identical requests from threads or ``asyncio.gather`` get the recorded
    responses in recorded order, each exactly once.
    """

    def __init__(self, keys: Iterable[Hashable]) -> None:
        self._queues: dict[Hashable, deque[int]] = {}
        self._recorded: dict[Hashable, int] = {}
        for position, key in enumerate(keys):
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
            queue.append(position)
        for key, queue in self._queues.items():
            self._recorded[key] = len(queue)

    def take(self, key: Hashable) -> int | None:
        queue = self._queues.get(key)
        if queue is None:
            return None
        try:
            return queue.popleft()
        except IndexError:
            return None

    def recorded(self, key: Hashable) -> int:
        """How many interactions the cassette holds for this key."""
        return self._recorded.get(key, 0)

    def remaining(self) -> list[int]:
        """Positions never taken, in recorded order."""
        return sorted(p for queue in self._queues.values() for p in queue)
