"""Strict mode's network block: connects, name lookups and UDP sends beyond loopback fail."""

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


# (owner, attribute) pairs the guard replaces while it is installed.
_PATCHED = (
    (socket.socket, "connect"),
    (socket.socket, "connect_ex"),
    (socket.socket, "sendto"),
    (socket.socket, "sendmsg"),
    (socket, "create_connection"),
    (socket, "getaddrinfo"),
    (socket, "gethostbyname"),
    (socket, "gethostbyname_ex"),
)

# What a blocked call tried to do, as the failure message says it.
CONNECT, RESOLVE, SEND = "connect to", "resolve", "send a datagram to"


class NetworkGuard:
    """Decides which hosts a test may reach, and patches ``socket`` to ask it.

    Host names are checked before any DNS lookup (``create_connection``,
    ``socket.connect`` with a name, ``getaddrinfo`` and ``gethostbyname``
    themselves, so a lookup is never sent); IP addresses against the
    loopback ranges and the allowed list, on connect and on UDP sends. An
    allowed host *name* lets through the addresses the client's own
    ``getaddrinfo`` found for it: the guard never makes a lookup of its own.
    The machine's own host name resolves as before (from /etc/hosts, as a
    rule, and libraries look it up for logging and mail headers).
    """

    def __init__(
        self, allow: Iterable[str], on_block: Callable[[str, Any, str], BaseException]
    ) -> None:
        self.allow = frozenset(
            str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in parse_hosts(allow)
        )
        self._on_block = on_block
        self._learned: set[str] = set()
        self._saved: tuple[Any, ...] | None = None
        self._own_names: frozenset[str] = frozenset()

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
        host = _text(host)
        if isinstance(host, str) and host.lower() in self.allow:
            with contextlib.suppress(TypeError, IndexError, ValueError):
                self._learned.update(str(ipaddress.ip_address(info[4][0])) for info in infos)

    def check(self, address: Any, action: str = CONNECT) -> None:
        """Raise for an (host, port, ...) address that may not be reached; AF_UNIX paths pass."""
        if not isinstance(address, tuple) or not address:
            return
        host = _text(address[0])
        if not isinstance(host, str) or self.allows(host):
            return
        raise self._on_block(host, address[1] if len(address) > 1 else None, action)

    def check_lookup(self, host: Any, port: Any = None) -> None:
        """Raise before a DNS lookup of a name the test may not reach."""
        host = _text(host)
        if not isinstance(host, str) or self.allows(host) or _is_ip(host.strip("[]").split("%")[0]):
            return
        if host.lower().rstrip(".") in self._own_names:
            return
        raise self._on_block(host, port, RESOLVE)

    # -- patching ------------------------------------------------------------------

    def install(self) -> None:
        global _active
        guard = self
        # sendmsg is missing on Windows: patch what this platform has.
        self._saved = tuple((o, n, getattr(o, n)) for o, n in _PATCHED if hasattr(o, n))
        real = {name: original for _, name, original in self._saved}
        real_getaddrinfo = real["getaddrinfo"]
        with contextlib.suppress(OSError):
            name = socket.gethostname().lower()
            self._own_names = frozenset({name, name.split(".", 1)[0]})
        inet = (socket.AF_INET, socket.AF_INET6)

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in inet:
                guard.check(address)
            return real["connect"](sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family in inet:
                guard.check(address)
            return real["connect_ex"](sock, address)

        def sendto(sock: socket.socket, data: Any, *args: Any) -> int:
            if sock.family in inet and args:
                guard.check(args[-1], SEND)  # sendto(data, address) or (data, flags, address)
            return real["sendto"](sock, data, *args)

        def sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> int:
            if sock.family in inet and len(args) >= 3:
                guard.check(args[2], SEND)  # sendmsg(buffers, ancdata, flags, address)
            return real["sendmsg"](sock, buffers, *args)

        def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            guard.check(tuple(address))
            return real["create_connection"](address, *args, **kwargs)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            guard.check_lookup(host, args[0] if args else kwargs.get("port"))
            infos = real_getaddrinfo(host, *args, **kwargs)
            if guard.allow:
                guard.learn(host, infos)
            return infos

        def gethostbyname(host: Any) -> str:
            guard.check_lookup(host)
            return real["gethostbyname"](host)

        def gethostbyname_ex(host: Any) -> Any:
            guard.check_lookup(host)
            return real["gethostbyname_ex"](host)

        patches = {
            "connect": connect,
            "connect_ex": connect_ex,
            "sendto": sendto,
            "sendmsg": sendmsg,
            "create_connection": create_connection,
            "getaddrinfo": getaddrinfo,
            "gethostbyname": gethostbyname,
            "gethostbyname_ex": gethostbyname_ex,
        }
        for owner, name, _ in self._saved:
            setattr(owner, name, patches[name])
        _active = self

    def uninstall(self) -> None:
        global _active
        if self._saved is None:
            return
        for owner, name, original in self._saved:
            setattr(owner, name, original)
        self._saved = None
        if _active is self:
            _active = None


def _text(host: Any) -> Any:
    return host.decode("ascii", "replace") if isinstance(host, bytes) else host
