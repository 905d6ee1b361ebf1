"""Redaction: secrets in headers, query strings, form and JSON bodies never reach the cassette."""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit

from ..errors import ConfigError
from .normalise import DATE_PLACEHOLDER, VOLATILE, header, split_hostport

REDACTED = "<redacted>"
# The shortest literal secret redact_values takes. Shorter values ("a", "id",
# "GET") occur in almost any request or response (header values, JSON keys,
# URIs), so scrubbing them corrupts what is recorded and replayed; four
# characters is the shortest real secret (a PIN), and longer ones rarely
# occur by chance.
MIN_SECRET_LENGTH = 4
# What the plugin itself writes into a stored exchange: a listed value is
# never scrubbed out of these, so they stay what replay reads back.
_OWN = re.compile(
    "|".join([*(re.escape(p) for p in (REDACTED, VOLATILE, DATE_PLACEHOLDER)), r"\{port\d+\}"])
)
_BOWN = re.compile(_OWN.pattern.encode())
_BREDACTED = REDACTED.encode()
DEFAULT_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
DEFAULT_FIELDS = frozenset(
    {"api_key", "apikey", "token", "access_token", "key", "sig", "signature"}
)
_JSON_START = (b"{", b"[")


def redact_query(query: str, fields: frozenset[str]) -> str:
    """Replace the values of secret parameters, keeping everything else byte for byte."""
    if not query:
        return query
    out = []
    changed = False
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        if eq and unquote_plus(name).lower() in fields:
            out.append(f"{name}={REDACTED}")
            changed = True
        else:
            out.append(part)
    return "&".join(out) if changed else query


def redact_uri(uri: str, fields: frozenset[str]) -> str:
    """Secret query parameters and the password of ``user:password@`` go."""
    if "?" not in uri and "@" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    userinfo, host, port = split_hostport(netloc)
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" + (f":{port}" if port else "")
    query = redact_query(parts.query, fields)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return parts._replace(netloc=netloc, query=query).geturl()


def _redact_json_value(value: Any, fields: frozenset[str]) -> tuple[Any, bool]:
    if isinstance(value, dict):
        changed = False
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and k.lower() in fields and v != REDACTED:
                out[k] = REDACTED
                changed = True
            else:
                out[k], sub = _redact_json_value(v, fields)
                changed = changed or sub
        return out, changed
    if isinstance(value, list):
        items = [_redact_json_value(v, fields) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


def redact_json(body: bytes, fields: frozenset[str]) -> bytes:
    """Secret fields at any depth of a JSON body; other bodies come back unchanged."""
    if body.lstrip()[:1] not in _JSON_START:
        return body
    try:
        value = json.loads(body)
    except ValueError:
        return body
    value, changed = _redact_json_value(value, fields)
    return json.dumps(value).encode("utf-8") if changed else body


def _header_value(name: str, value: str) -> str:
    """Redact the secret part and keep the shape: scheme, cookie names, cookie attributes."""
    if name in ("authorization", "proxy-authorization"):
        scheme, space, _ = value.partition(" ")
        return f"{scheme} {REDACTED}" if space and scheme.isalpha() else REDACTED
    if name == "cookie":
        pairs = [p.strip().partition("=") for p in value.split(";") if p.strip()]
        return "; ".join(f"{k}={REDACTED}" if eq else REDACTED for k, eq, _ in pairs)
    if name == "set-cookie":
        first, sep, attributes = value.partition(";")
        cookie, eq, _ = first.partition("=")
        return (f"{cookie.strip()}={REDACTED}" if eq else REDACTED) + sep + attributes
    return REDACTED


def redact_headers(headers: dict[str, list[str]], names: frozenset[str]) -> dict[str, list[str]]:
    out = {}
    for key, values in headers.items():
        lower = key.lower()
        out[key] = [_header_value(lower, v) for v in values] if lower in names else values
    return out


def short_values(values: Iterable[str]) -> list[tuple[int, int]]:
    """(position from 1, length) of each value too short to scrub; empty values are skipped."""
    return [
        (i, len(value))
        for i, value in enumerate(values, 1)
        if value and len(value) < MIN_SECRET_LENGTH
    ]


def short_values_error(values: Iterable[str], source: str) -> ConfigError | None:
    """The error for values too short to scrub safely (never showing one), or None."""
    short = short_values(values)
    if not short:
        return None
    which = ", ".join(f"#{i} ({n} character{'s' * (n != 1)})" for i, n in short)
    return ConfigError(
        f"{source}: "
        + (
            f"value {which} is too short to be a secret"
            if len(short) == 1
            else f"values {which} are too short to be secrets"
        )
        + f" (the minimum is {MIN_SECRET_LENGTH} characters)",
        details=[
            "a value that short occurs in ordinary text (header values, JSON keys, URIs, "
            "words), and scrubbing it there would corrupt what is recorded and replayed",
            "values are counted from 1 and never shown: they may be secrets",
        ],
        fix=f"list only secrets of {MIN_SECRET_LENGTH} characters or more in redact_values; "
        "to hide a header or field by its name, use redact=['name']",
    )


def _variants(values: Iterable[str]) -> list[str]:
    """Each secret as written, URL-encoded and JSON-escaped."""
    out = set()
    for value in values:
        if value:
            out.update({value, quote(value, safe=""), quote_plus(value)})
            # Inside a JSON string: '"', '\\', control and (ASCII-only) non-ASCII escaped.
            out.update({json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]})
    return sorted(out, key=len, reverse=True)  # a stable order; overlaps are merged anyway


def _scrub(text: Any, values: list[Any], own: re.Pattern[Any], placeholder: Any) -> Any:
    """Replace every stretch of ``text`` that any value covers, however the values overlap.

    Spans are found for each value, overlapping occurrences included, and
    overlapping spans are merged before anything is replaced: replacing one
    value at a time would leave the part of a second value that the first
    one's placeholder did not cover (``abcd`` and ``bcdefgh`` in
    ``abcdefgh`` leave ``a``). The plugin's own placeholders are cut out of
    the spans first, so they stay whole whatever a value overlaps.
    """
    spans = []
    for value in values:
        start = text.find(value)
        while start >= 0:
            spans.append((start, start + len(value)))
            start = text.find(value, start + 1)
    if not spans:
        return text
    keep = [m.span() for m in own.finditer(text)]  # sorted, not overlapping
    if keep:
        spans = _outside(spans, keep)
        if not spans:
            return text
    spans.sort()
    out = []
    at = 0
    end = -1
    for a, b in spans:
        if a < end:  # overlaps the stretch being built: extend it
            end = max(end, b)
            continue
        if end >= 0:
            out.append(placeholder)
            at = end
        out.append(text[at:a])
        end = b
    out.append(placeholder)
    out.append(text[end:])
    return text[:0].join(out)


def _outside(spans: list[tuple[int, int]], keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``spans`` outside every ``keep`` interval (sorted, disjoint)."""
    ends = [e for _, e in keep]
    out = []
    for a, b in spans:
        i = bisect.bisect_right(ends, a)  # the first kept interval that ends after a
        while i < len(keep) and keep[i][0] < b:
            k, e = keep[i]
            if a < k:
                out.append((a, k))
            a = max(a, e)
            i += 1
        if a < b:
            out.append((a, b))
    return out


class Redactor:
    """Everything that makes a request or response safe to write down.

    Built-in names (headers, query/form/JSON fields) plus the test's
    ``redact`` names, literal ``redact_values`` scrubbed anywhere but in
    header names and the plugin's own placeholders, then the
    ``pytest_replay_redact`` hook. Requests are redacted on replay too, so a
    recorded ``token=<redacted>`` still matches a live ``token=abc``.
    """

    def __init__(
        self, names: Iterable[str] = (), values: Iterable[str] = (), hook: Any = None
    ) -> None:
        extra = frozenset(n.lower() for n in names)
        self.headers = DEFAULT_HEADERS | extra
        self.fields = DEFAULT_FIELDS | extra
        self.values = _variants(values)
        self._bvalues = [v.encode("utf-8") for v in self.values]
        self.hook = hook

    def _text(self, text: str) -> str:
        return _scrub(text, self.values, _OWN, REDACTED)

    def _bytes(self, data: bytes) -> bytes:
        return _scrub(data, self._bvalues, _BOWN, _BREDACTED)

    def _common(
        self, headers: dict[str, list[str]], body: bytes
    ) -> tuple[dict[str, list[str]], bytes]:
        headers = redact_headers(headers, self.headers)
        if body:
            ctype = (header(headers, "content-type") or "").lower()
            if "x-www-form-urlencoded" in ctype:
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    body = redact_query(text, self.fields).encode("utf-8")
            else:
                body = redact_json(body, self.fields)
        if self.values:
            headers = {k: [self._text(v) for v in vs] for k, vs in headers.items()}
            body = self._bytes(body)
        return headers, body

    def request(
        self, method: str, uri: str, headers: dict[str, list[str]], body: bytes
    ) -> tuple[str, str, dict[str, list[str]], bytes]:
        uri = redact_uri(uri, self.fields)
        if self.values:
            uri = self._text(uri)
        headers, body = self._common(headers, body)
        if self.hook is not None:
            item = {"method": method, "uri": uri, "headers": headers, "body": body}
            self.hook.pytest_replay_redact(kind="http_request", item=item)
            method, uri = str(item["method"]), str(item["uri"])
            headers, body = _hook_headers(item["headers"]), _hook_body(item["body"])
        return method, uri, headers, body

    def response(
        self, status: int, reason: str, headers: dict[str, list[str]], body: bytes
    ) -> tuple[int, str, dict[str, list[str]], bytes]:
        headers, body = self._common(headers, body)
        if self.hook is not None:
            item = {"status": status, "reason": reason, "headers": headers, "body": body}
            self.hook.pytest_replay_redact(kind="http_response", item=item)
            status, reason = int(item["status"]), str(item["reason"])
            headers, body = _hook_headers(item["headers"]), _hook_body(item["body"])
        return status, reason, headers, body


def _hook_headers(headers: Any) -> dict[str, list[str]]:
    return {
        str(k): [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        for k, v in dict(headers).items()
    }


def _hook_body(body: Any) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)
