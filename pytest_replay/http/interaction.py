"""One HTTP exchange as the cassette stores it: request, response, bodies as text or blobs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..blobs import BlobStore
from ..cassette import Block
from ..errors import CassetteError
from .normalise import ENCODINGS, encode_body, looks_like_text, set_header

TEXT_INLINE_MAX = 1 << 20  # text bodies larger than this go to a .txt blob
REQUEST_MARK, RESPONSE_MARK = "> ", "< "
# JSON leaves these raw with ensure_ascii=False, but they would end a line of
# the block or make YAML quote the whole block (libyaml takes no 4-byte UTF-8
# in a block scalar): escaped, astral characters as surrogate pairs.
_UNSAFE = re.compile("[^\x20-\x7e\xa0-\ud7ff\ue000-\ufffd]|[\u2028\u2029\ufeff]")
_json_loads = json.JSONDecoder().decode
_RESTORE = "restore the cassette from version control, or re-record: pytest --replay=record {test}"


def body_yaml(body: bytes, blobs: BlobStore) -> dict[str, Any]:
    """``{"body": text}`` for UTF-8 text, ``{"body_blob": name}`` for binary or large bodies."""
    if not body:
        return {}
    text = looks_like_text(body)
    if text is not None and len(body) <= TEXT_INLINE_MAX:
        return {"body": text}
    return {"body_blob": blobs.put(body, "txt" if text is not None else "bin")}


def headers_to_yaml(headers: dict[str, list[str]]) -> dict[str, str | list[str]]:
    """One value as a plain string, repeated headers (Set-Cookie) as a list."""
    return {k: v[0] if len(v) == 1 else list(v) for k, v in headers.items()}


def headers_from_yaml(value: Any) -> dict[str, list[str]]:
    if not value:
        return {}
    return {k: [v] if isinstance(v, str) else list(v) for k, v in value.items()}


def body_bytes(raw: dict[str, Any], blobs: BlobStore) -> bytes:
    """The body of a stored request or response (blobs are verified by digest)."""
    text = raw.get("body")
    if text is not None:
        return text.encode("utf-8")
    name = raw.get("body_blob")
    return blobs.get(name) if name else b""


@dataclass
class HttpRequest:
    """A request after normalisation and redaction: what is stored and what keys are made of."""

    method: str
    uri: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def to_yaml(self, blobs: BlobStore) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "uri": self.uri}
        if self.headers:
            out["headers"] = headers_to_yaml(dict(sorted(self.headers.items())))
        out.update(body_yaml(self.body, blobs))
        return out

    @property
    def line(self) -> str:
        return f"{self.method} {self.uri}"


@dataclass
class HttpResponse:
    """A response with its body decoded (``encoding`` says what replay must re-apply)."""

    status: int
    reason: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    encoding: str | None = None

    def to_yaml(self, blobs: BlobStore) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if self.headers:
            out["headers"] = headers_to_yaml(dict(sorted(self.headers.items())))
        out.update(body_yaml(self.body, blobs))
        if self.encoding:
            out["encoding"] = self.encoding
        return out

    @classmethod
    def from_yaml(cls, raw: dict[str, Any], blobs: BlobStore) -> HttpResponse:
        return cls(
            status=raw["status"],
            reason=raw.get("reason") or "",
            headers=headers_from_yaml(raw.get("headers")),
            body=body_bytes(raw, blobs),
            encoding=raw.get("encoding"),
        )

    def to_vcr(self, *, wire: bool = True) -> dict[str, Any]:
        """The dict vcrpy's stubs build a client response from (a fresh one each time).

        ``wire``: the body goes out re-encoded as recorded (gzip with mtime 0)
        for clients that read it as sent (http.client, httpx); decoded for
        the stubs that hand clients a decoded body (urllib3, aiohttp).
        """
        encoded = encode_body(self.body, self.encoding)
        headers = {k: list(v) for k, v in self.headers.items()}
        if encoded:  # the body may have changed length (redaction, ports, re-encoding)
            set_header(headers, "content-length", str(len(encoded)))
        return {
            "status": {"code": self.status, "message": self.reason},
            "headers": headers,
            "body": {"string": encoded if wire else self.body},
        }


def request_body(vcr_request: Any) -> bytes:
    """A vcrpy request's body as bytes, whatever shape the client passed."""
    body = getattr(vcr_request, "body_bytes", None)
    if body is None:
        body = getattr(vcr_request, "_body", None)
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, list) and all(isinstance(c, (bytes, bytearray)) for c in body):
        return b"".join(body)
    try:
        # aiohttp hands over json={...} (and data={...}) unencoded: store it as
        # aiohttp's default serialiser sends it.
        return json.dumps(body).encode("utf-8")
    except (TypeError, ValueError):
        return repr(body).encode("utf-8")


# --- validation of a stored section ---------------------------------------------------


def _bad(shown: str, index: int, what: str) -> CassetteError:
    return CassetteError(
        f"http interaction #{index} is malformed: {what}",
        cassette=shown,
        place=f"http interaction #{index}",
        fix=_RESTORE,
    )


def _check_headers(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict)
        and all(
            isinstance(k, str)
            and (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)))
            for k, v in value.items()
        )
    )


def _check_body(raw: dict[str, Any]) -> bool:
    body, blob = raw.get("body"), raw.get("body_blob")
    return (body is None or isinstance(body, str)) and (blob is None or isinstance(blob, str))


def _line(mark: str, value: dict[str, Any]) -> str:
    text = _UNSAFE.sub(_escape, json.dumps(value, ensure_ascii=False))
    return f"{mark}{text}\n"


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def dump_section(interactions: list[dict[str, Any]]) -> Block:
    """The ``http:`` block: per interaction a ``> request`` and a ``< response`` JSON line.

    One YAML scalar for the whole section: PyYAML builds a Python object per
    YAML node, which made a nested section as slow to load as vcrpy's own
    cassettes; these lines are parsed by one C-level JSON call instead.
    """
    return Block(
        "".join(
            _line(REQUEST_MARK, i["request"]) + _line(RESPONSE_MARK, i["response"])
            for i in interactions
        )
    )


def parse_section(section: Any, shown: str) -> list[dict[str, Any]]:
    """The ``http:`` block as ``[{request, response}]``, every line checked.

    Bad input of any kind is one CassetteError naming the interaction.
    """
    if section is None:
        return []
    if not isinstance(section, str):
        raise CassetteError(
            "section 'http' must be a text block of '> request' / '< response' JSON lines",
            cassette=shown,
            fix=_RESTORE,
        )
    lines = section.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if (
        len(lines) % 2
        or not all(line.startswith(REQUEST_MARK) for line in lines[0::2])
        or not all(line.startswith(RESPONSE_MARK) for line in lines[1::2])
    ):
        for number, line in enumerate(lines):
            mark = REQUEST_MARK if number % 2 == 0 else RESPONSE_MARK
            if not line.startswith(mark):
                raise _bad(shown, number // 2, f"line {number + 1} should start with {mark!r}")
        raise _bad(shown, len(lines) // 2, "a request line has no response line")
    try:
        values = _json_loads("[" + ",".join([line[2:] for line in lines]) + "]")
    except ValueError:
        values = None
    if values is None or len(values) != len(lines):
        for number, line in enumerate(lines):
            try:
                _json_loads(line[2:])
            except ValueError as exc:
                raise _bad(shown, number // 2, f"line {number + 1} is not JSON ({exc})") from None
        raise _bad(shown, 0, "not one JSON object per line")
    interactions = [
        {"request": req, "response": resp}
        for req, resp in zip(values[0::2], values[1::2], strict=True)
    ]
    check_section(interactions, shown)
    return interactions


def check_section(section: list[Any], shown: str) -> None:
    """Every interaction's shape; the first bad one is a CassetteError."""
    for i, item in enumerate(section):
        req, resp = item.get("request"), item.get("response")
        if not isinstance(req, dict) or not isinstance(resp, dict):
            raise _bad(shown, i, "request and response must be JSON objects")
        if not isinstance(req.get("method"), str) or not isinstance(req.get("uri"), str):
            raise _bad(shown, i, "request needs 'method' and 'uri' strings")
        status = resp.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 999:
            raise _bad(shown, i, "response 'status' must be an HTTP status code")
        if not isinstance(resp.get("reason", ""), (str, type(None))):
            raise _bad(shown, i, "response 'reason' must be a string")
        if not _check_headers(req.get("headers")) or not _check_headers(resp.get("headers")):
            raise _bad(shown, i, "headers must map names to a string or a list of strings")
        if not _check_body(req) or not _check_body(resp):
            raise _bad(shown, i, "'body' must be text and 'body_blob' a blob name")
        if resp.get("encoding") is not None and resp["encoding"] not in ENCODINGS:
            raise _bad(shown, i, f"'encoding' must be one of {', '.join(sorted(ENCODINGS))}")


def body_blob_names(interactions: list[dict[str, Any]]) -> list[str]:
    """The body blobs parsed interactions name, requests' and responses'."""
    return [
        part["body_blob"]
        for item in interactions
        for part in (item["request"], item["response"])
        if part.get("body_blob")
    ]


def check_blobs(section: Any, blobs: BlobStore, shown: str) -> int:
    """Parse a stored section and verify every body blob it names; returns the count."""
    interactions = parse_section(section, shown)
    for name in body_blob_names(interactions):
        blobs.get(name)
    return len(interactions)
