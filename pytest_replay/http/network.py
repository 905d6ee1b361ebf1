"""Strict mode's network block: connects, DNS lookups and UDP sends beyond loopback fail."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .normalise import is_loopback

_active: NetworkGuard | None = None


def current() -> NetworkGuard | None:
    """The guard of the running test, if its run is strict."""
    return _active


def _entries(values: Iterable[str]) -> list[str]:
    """The hosts of ``"a.example, 10.0.0.5"`` and lists of such strings, as written."""
    return [part for value in values for part in str(value).replace(",", " ").split()]


def parse_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """``"a.example, 10.0.0.5"`` and lists of such strings -> lower-case host names."""
    out: list[str] = []
    for part in _entries(values):
        host = part.strip().lower().strip("[]")
        if host and host not in out:
            out.append(host)
    return tuple(out)


# One DNS label; '_' too, as container and compose service names use it.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)
_PORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*):(\d{1,5})")


def host_problem(entry: str) -> tuple[str, str | None] | None:
    """Why one allow-hosts entry is not a host name or IP address, and what to write instead.

    The guard compares a connection's host with each entry as a whole (an
    address, or a name as the client sends it), on every port: so a port, a
    URL, a wildcard, a network or a trailing dot would never match anything.
    None when the entry is fine.
    """
    if _is_ip(entry.strip("[]")) and (entry.startswith("[") == entry.endswith("]")):
        return None
    if "://" in entry:
        host = urlsplit(entry).hostname
        return "is a URL, not a host", host
    port = _PORT.fullmatch(entry)
    if port and host_problem(port[1]) is None:
        return f"has a port (:{port[2]}); a host is let through on every port", port[1]
    if "*" in entry:
        return "is a pattern; entries are compared whole, so list each host", None
    if "/" in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return "is not a host name or an IP address", None
        return "is a network; entries are single addresses, so list each one", None
    if entry.endswith(".") and host_problem(entry[:-1]) is None:
        return "ends with '.'; entries are compared with the name the client uses", entry[:-1]
    name = entry
    if not entry.isascii():  # an international name: its labels are checked as sent (IDNA)
        try:
            name = entry.encode("idna").decode("ascii")
        except UnicodeError:
            return "is not a host name or an IP address", None
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "is not a host name or an IP address", None
    if labels[-1].isdigit():  # a name's last label is never all digits: a mistyped address
        return "is not an IP address (nor a host name)", None
    return None


def allow_hosts_error(
    values: Iterable[str], source: str, form: str, example: str = "db.internal,10.0.0.5"
) -> ConfigError | None:
    """The error for the first bad entry of an allow-hosts list, or None when all are fine.

    ``source`` names where the list came from; ``form`` is how to write a list
    there, with ``{}`` for the hosts (``"--replay-allow-hosts={}"``), filled
    with the entry as it should be written, or else with ``example``.
    """
    for entry in _entries(values):
        problem = host_problem(entry)
        if problem is not None:
            why, instead = problem
            return ConfigError(
                f"{source}: {entry!r} {why}",
                details=[
                    "strict lets through host names and IP addresses, each on every port "
                    "(besides loopback, always reachable)"
                ],
                fix=f"write {form.format(instead or example)}",
            )
    return None


def allowed_hosts(ini: Iterable[str], option: Iterable[str]) -> tuple[str, ...]:
    """The run's allowed hosts, from the ini and the command line; a bad entry is a ConfigError."""
    ini, option = list(ini), list(option)
    for values, source, form, example in (
        (
            ini,
            "ini option replay_allow_hosts",
            "replay_allow_hosts = {} in the [pytest] section",
            "db.internal 10.0.0.5",
        ),
        (option, "--replay-allow-hosts", "--replay-allow-hosts={}", "db.internal,10.0.0.5"),
    ):
        error = allow_hosts_error(values, source, form, example)
        if error is not None:
            raise error
    return parse_hosts([*ini, *option])


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
    (socket, "gethostbyaddr"),
    (socket, "getnameinfo"),
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
    rule, and libraries look it up for logging and mail headers).  Reverse
    lookups (``gethostbyaddr``, ``getnameinfo`` without NI_NUMERICHOST) send
    a PTR query, so they pass only for loopback, allowed and own names.
    """

    def __init__(
        self, allow: Iterable[str], on_block: Callable[[str, Any, str], BaseException]
    ) -> None:
        self.allow = frozenset(_forms(parse_hosts(allow)))
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

    def check_lookup(self, host: Any, port: Any = None, *, reverse: bool = False) -> None:
        """Raise before a DNS lookup of a name the test may not reach.

        A forward lookup of an IP literal sends no query; a ``reverse`` (PTR)
        lookup of an address does, so only a reachable address passes.
        """
        host = _text(host)
        if not isinstance(host, str) or self.allows(host):
            return
        if not reverse and _is_ip(host.strip("[]").split("%")[0]):
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

        def gethostbyaddr(host: Any) -> Any:
            guard.check_lookup(host, reverse=True)
            return real["gethostbyaddr"](host)

        def getnameinfo(address: Any, flags: int) -> Any:
            if not flags & socket.NI_NUMERICHOST and isinstance(address, tuple) and address:
                guard.check_lookup(address[0], reverse=True)
            return real["getnameinfo"](address, flags)

        patches = {
            "connect": connect,
            "connect_ex": connect_ex,
            "sendto": sendto,
            "sendmsg": sendmsg,
            "create_connection": create_connection,
            "getaddrinfo": getaddrinfo,
            "gethostbyname": gethostbyname,
            "gethostbyname_ex": gethostbyname_ex,
            "gethostbyaddr": gethostbyaddr,
            "getnameinfo": getnameinfo,
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


def _forms(hosts: Iterable[str]) -> Iterable[str]:
    """Each allowed host as the guard compares it: an address normalised, and an
    international name also in its ASCII form, which clients look up and connect to.
    """
    for host in hosts:
        if _is_ip(host):
            yield str(ipaddress.ip_address(host))
            continue
        yield host
        if not host.isascii():
            with contextlib.suppress(UnicodeError):
                yield host.encode("idna").decode("ascii")


def _text(host: Any) -> Any:
    return host.decode("ascii", "replace") if isinstance(host, bytes) else host
