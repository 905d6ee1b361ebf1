"""Strict mode's network block: socket connects to anything but loopback and allowed hosts fail."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

from .normalise import is_loopback

_active: NetworkGuard | None = None


def current() -> NetworkGuard | None:
    """The guard of the running test, if its run is strict."""
    return _active


def parse_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """``"a.example, 10.0.0.5"`` and lists of such strings -> lower-case host names."""
    out: list[str] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            host = part.strip().lower().strip("[]")
            if host and host not in out:
                out.append(host)
    return tuple(out)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class NetworkGuard:
    """Decides which socket connects may go out, and patches ``socket`` to ask it.

    Host names are checked before any DNS lookup (``create_connection`` and
    ``socket.connect`` with a name); IP addresses against the loopback
    ranges and the allowed list. An allowed host *name* lets through the
    addresses the client's own ``getaddrinfo`` found for it: the guard never
    makes a lookup of its own.
    """

    def __init__(self, allow: Iterable[str], on_block: Callable[[str, Any], BaseException]) -> None:
        self.allow = frozenset(
            str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in parse_hosts(allow)
        )
        self._on_block = on_block
        self._learned: set[str] = set()
        self._saved: tuple[Any, ...] | None = None

    def allows(self, host: str) -> bool:
        host = host.strip("[]").lower()
        if not host or is_loopback(host) or host in self.allow or host in self._learned:
            return True
        if _is_ip(host):
            ip = ipaddress.ip_address(host.split("%", 1)[0])
            return ip.is_unspecified or str(ip) in self._learned or str(ip) in self.allow
        return False

    def learn(self, host: Any, infos: Any) -> None:
        """Addresses an allowed name resolved to are allowed too."""
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if isinstance(host, str) and host.lower() in self.allow:
            with contextlib.suppress(TypeError, IndexError, ValueError):
                self._learned.update(str(ipaddress.ip_address(info[4][0])) for info in infos)

    def check(self, address: Any) -> None:
        """Raise for an (host, port, ...) address that may not be reached; AF_UNIX paths pass."""
        if not isinstance(address, tuple) or not address:
            return
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str) or self.allows(host):
            return
        raise self._on_block(host, address[1] if len(address) > 1 else None)

    # -- patching ------------------------------------------------------------------

    def install(self) -> None:
        global _active
        guard = self
        self._saved = (
            socket.socket.connect,
            socket.socket.connect_ex,
            socket.create_connection,
            socket.getaddrinfo,
        )
        real_connect, real_connect_ex, real_create_connection, real_getaddrinfo = self._saved

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard.check(address)
            return real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard.check(address)
            return real_connect_ex(sock, address)

        def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            guard.check(tuple(address))
            return real_create_connection(address, *args, **kwargs)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            infos = real_getaddrinfo(host, *args, **kwargs)
            if guard.allow:
                guard.learn(host, infos)
            return infos

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.create_connection = create_connection
        socket.getaddrinfo = getaddrinfo
        _active = self

    def uninstall(self) -> None:
        global _active
        if self._saved is None:
            return
        (
            socket.socket.connect,  # type: ignore[method-assign]
            socket.socket.connect_ex,  # type: ignore[method-assign]
            socket.create_connection,
            socket.getaddrinfo,
        ) = self._saved
        self._saved = None
        if _active is self:
            _active = None
