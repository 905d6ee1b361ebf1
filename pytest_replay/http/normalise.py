"""Byte-stable HTTP: loopback ports as tokens, volatile headers, content encodings, URI parts."""

from __future__ import annotations

import functools
import gzip
import ipaddress
import re
import threading
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}

# Values that change on every request while the behaviour does not. Each is
# stored as a fixed placeholder; Date keeps a well-formed HTTP date.
VOLATILE_HEADERS = frozenset(
    {
        "date",
        "server",
        "age",
        "x-request-id",
        "x-correlation-id",
        "x-amzn-requestid",
        "x-amz-request-id",
        "x-amz-id-2",
        "cf-ray",
        "x-runtime",
        "x-response-time",
        "server-timing",
        "x-envoy-upstream-service-time",
        "x-timer",
        "user-agent",  # the client's version: re-recording after an upgrade changes nothing
    }
)
DATE_PLACEHOLDER = "Thu, 01 Jan 1970 00:00:00 GMT"
_PLACEHOLDERS = {"date": DATE_PLACEHOLDER, "age": "0"}
VOLATILE = "<volatile>"

_LOOPBACK = r"(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])"
_HOSTPORT = re.compile(rf"(?<![\w.-])({_LOOPBACK}):(\d{{1,5}})(?!\d)", re.IGNORECASE)
_TOKEN = re.compile(rf"(?<![\w.-])({_LOOPBACK}):\{{port(\d+)\}}", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, ``localhost`` and ``*.localhost`` (RFC 6761)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_hostport(netloc: str) -> tuple[str, str, str]:
    """``userinfo@host:port`` -> (userinfo, host, port); IPv6 keeps its brackets."""
    userinfo, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    return userinfo, host, port


class PortMap:
    """Loopback ports <-> ``{portN}`` tokens, numbered by first appearance in one test.

    A loopback server gets a new ephemeral port on every run; storing the
    token instead keeps the cassette bytes equal, and replay maps the
    token back to whatever port the test uses this time.
    """

    def __init__(self) -> None:
        self._tokens: dict[int, str] = {}
        self._ports: dict[str, int] = {}
        self._lock = threading.Lock()

    def token(self, port: int) -> str:
        token = self._tokens.get(port)
        if token is None:
            with self._lock:
                token = self._tokens.get(port)
                if token is None:
                    token = f"{{port{len(self._tokens) + 1}}}"
                    self._tokens[port] = token
                    self._ports[token] = port
        return token

    def port(self, token: str) -> int | None:
        return self._ports.get(token)

    def describe(self) -> list[str]:
        return [f"{token} = port {port}" for port, token in self._tokens.items()]

    def tokenise(self, text: str) -> str:
        """``127.0.0.1:43121`` -> ``127.0.0.1:{port1}`` for ports this test already used."""
        if ":" not in text or not self._tokens:
            return text

        def sub(m: re.Match[str]) -> str:
            token = self._tokens.get(int(m.group(2)))
            return f"{m.group(1)}:{token}" if token else m.group(0)

        return _HOSTPORT.sub(sub, text)

    def restore(self, text: str) -> str:
        """The reverse of ``tokenise``: tokens this run has seen become real ports again."""
        if "{port" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            port = self._ports.get(f"{{port{m.group(2)}}}")
            return f"{m.group(1)}:{port}" if port is not None else m.group(0)

        return _TOKEN.sub(sub, text)

    def normalise_uri(self, uri: str) -> str:
        """Give a loopback URI's port a token (assigned here, in call order)."""
        parts = urlsplit(uri)
        userinfo, host, port = split_hostport(parts.netloc)
        if not port.isdigit() or not is_loopback(host):
            return uri
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{host}:{self.token(int(port))}"
        return parts._replace(netloc=netloc).geturl()


UriParts = tuple[str, str, str, str, tuple[tuple[str, str], ...]]


def uri_parts(uri: str) -> UriParts:
    """(scheme, host, port, path, sorted query pairs): what requests are matched on.

    Parses the netloc itself: a stored URI has ``{portN}`` where a number was.
    """
    parts = urlsplit(uri)
    _, host, port = split_hostport(parts.netloc)
    return _parts(parts.scheme, host, port, parts.path, parts.query)


def _parts(scheme: str, host: str, port: str, path: str, query: str) -> UriParts:
    scheme = scheme.lower()
    pairs = tuple(sorted(parse_qsl(query, keep_blank_values=True)))
    return scheme, host.lower(), port or DEFAULT_PORTS.get(scheme, ""), path or "/", pairs


def live_uri_parts(uri: str, ports: PortMap, redact: Any) -> UriParts:
    """``uri_parts`` of what ``normalise_uri`` then ``redact(query)`` would store, in one parse.

    The replay hot path: equal to ``uri_parts`` of the stored form of the same URI.
    """
    parts = urlsplit(uri)
    _, host, port = split_hostport(parts.netloc)
    if port.isdigit() and is_loopback(host):
        port = ports.token(int(port))
    return _parts(parts.scheme, host, port, parts.path, redact(parts.query))


# --- headers ------------------------------------------------------------------------


def header_lists(headers: Any) -> dict[str, list[str]]:
    """Any header shape vcrpy hands over -> ``{name: [values]}`` of str."""
    out: dict[str, list[str]] = {}
    items: Iterable[tuple[Any, Any]]
    if headers is None:
        return out
    if isinstance(headers, Mapping) or hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        out.setdefault(_text(name), []).extend(_text(v) for v in values)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else str(value)


def settle_headers(
    headers: dict[str, list[str]], volatile: frozenset[str], ports: PortMap
) -> dict[str, list[str]]:
    """Volatile values become placeholders; loopback ports in values become tokens."""
    out = {}
    for name, values in headers.items():
        lower = name.lower()
        if lower in volatile:
            out[name] = [_PLACEHOLDERS.get(lower, VOLATILE) for _ in values]
        else:
            out[name] = [ports.tokenise(v) for v in values]
    return out


def header(headers: Mapping[str, list[str]], name: str) -> str | None:
    """First value of a header, by case-insensitive name."""
    name = name.lower()
    for key, values in headers.items():
        if key.lower() == name and values:
            return values[0]
    return None


def set_header(headers: dict[str, list[str]], name: str, value: str) -> None:
    """Replace a header that is present (any case); absent headers stay absent."""
    for key in headers:
        if key.lower() == name:
            headers[key] = [value]


# --- content encodings ----------------------------------------------------------------


def decode_body(headers: Mapping[str, list[str]], body: bytes) -> tuple[bytes, str | None]:
    """The body without gzip/deflate, and the encoding replay must re-apply (or None).

    http.client and httpx hand over the bytes as sent; urllib3 and aiohttp
    hand them over already decoded while the header still says gzip. Either
    way the decoded body is stored (readable) and flagged with the encoding.
    """
    encoding = (header(headers, "content-encoding") or "").strip().lower()
    if not body or encoding not in ("gzip", "x-gzip", "deflate"):
        return body, None
    if encoding in ("gzip", "x-gzip"):
        if body[:2] != b"\x1f\x8b":
            return body, "gzip"  # decoded by the client already
        try:
            return gzip.decompress(body), "gzip"
        except (OSError, EOFError, zlib.error):
            return body, None  # says gzip, is not: keep the bytes as they came
    try:
        return zlib.decompress(body), "deflate"
    except zlib.error:
        pass
    try:
        return zlib.decompress(body, -zlib.MAX_WBITS), "deflate-raw"
    except zlib.error:
        return body, "deflate"  # decoded by the client already


def encode_body(body: bytes, encoding: str | None) -> bytes:
    """Re-apply what ``decode_body`` undid, deterministically (gzip mtime 0)."""
    if encoding == "gzip":
        return gzip.compress(body, mtime=0)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "deflate-raw":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(body) + c.flush()
    return body


ENCODINGS = frozenset({"gzip", "deflate", "deflate-raw"})


def looks_like_text(body: bytes) -> str | None:
    """The body as str when it is UTF-8 text, else None (it then goes to a blob)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text
