"""The cassette's http section: exchanges recorded through vcrpy's stubs, replayed by key."""

from __future__ import annotations

import difflib
import threading
from collections import Counter
from collections.abc import Hashable
from typing import Any

from ..context import RecorderContext
from ..errors import CassetteError, MissingHttp, NetworkBlocked, ReplayError, rerecord_fix
from ..modes import Mode
from . import patching
from .index import DEFAULT_MATCH_ON, FifoIndex, key_function
from .interaction import (
    HttpRequest,
    HttpResponse,
    body_blob_names,
    body_bytes,
    dump_section,
    headers_from_yaml,
    parse_section,
    request_body,
)
from .network import CONNECT, NetworkGuard
from .normalise import (
    VOLATILE_HEADERS,
    PortMap,
    decode_body,
    encode_body,
    header_lists,
    live_uri_parts,
    looks_like_text,
    set_header,
    settle_headers,
    uri_parts,
)
from .redact import Redactor, redact_query

NEAREST_SHOWN = 3
_LOOPBACK_HINTS = (b"127.", b"localhost", b"[::1]")


class HttpRecorder:
    """One test's HTTP: live and recorded (record), or served from the index (replay, strict).

    vcrpy's stubs call ``play`` and ``record`` through the proxy cassette in
    ``patching``. Requests are normalised (loopback ports, volatile headers)
    and redacted the same way on both sides, so a recorded request and its
    replay have equal keys.
    """

    def __init__(self, ctx: RecorderContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.enabled = bool(settings.get("http", True))
        self.replaying = self.enabled and ctx.mode in (Mode.REPLAY, Mode.STRICT)
        self.recording = self.enabled and ctx.mode is Mode.RECORD
        self.ports = PortMap()
        hook = ctx.hook
        if hook is not None and not hook.pytest_replay_redact.get_hookimpls():
            hook = None  # no implementation: skip the call on every request
        self.redactor = Redactor(
            settings.get("redact") or (), settings.get("redact_values") or (), hook=hook
        )
        extra = settings.get("volatile_headers") or ()
        self.volatile = VOLATILE_HEADERS | frozenset(h.lower() for h in extra)
        match_on = tuple(settings.get("match_on") or DEFAULT_MATCH_ON)
        self.key = key_function(match_on)
        self._default_key = match_on == DEFAULT_MATCH_ON
        # Default matching, no literal values or hook to scrub: the key comes
        # straight from one parse of the URI (the replay hot path).
        self._fast = self._default_key and not self.redactor.values and self.redactor.hook is None
        self.allow_hosts: tuple[str, ...] = tuple(settings.get("allow_hosts") or ())
        self.interactions: list[dict[str, Any]] = []  # recorded by this run, YAML form
        self._stored: list[dict[str, Any]] | None = None
        self._index: FifoIndex | None = None
        self._calls: Counter[Hashable] = Counter()
        self._lock = threading.Lock()
        self._activation: patching.Activation | None = None
        self._watcher: patching.ImportWatcher | None = None
        self._guard: NetworkGuard | None = None

    # -- lifetime: from the replay fixture's setup to its teardown ---------------------

    def start(self) -> None:
        if self.replaying and self.ctx.section("http"):
            # Checked now, so a malformed line or a missing or tampered body blob
            # errors the test at setup (as a bad section of any other kind does),
            # not inside the HTTP client later. The blobs are not hashed again
            # when served (BlobStore.verify).
            try:
                for name in body_blob_names(self.stored):
                    self.ctx.blobs.verify(name)
            except ReplayError as err:
                raise self.ctx.error(err).with_traceback(None) from None
        if self.ctx.run_mode is Mode.STRICT:
            self._guard = NetworkGuard(self.allow_hosts, self._blocked)
            self._guard.install()
        if not (self.replaying or self.recording):
            return
        if patching.clients_imported():
            self._activate()
        else:  # nothing to patch yet: wait for the test to import a client
            self._watcher = patching.ImportWatcher(self._activate)
            self._watcher.install()

    def _activate(self) -> None:
        if self._activation is None:
            self._activation = patching.Activation(self)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.uninstall()
            self._watcher = None
        if self._activation is not None:
            self._activation.undo()
            self._activation = None
        if self._guard is not None:
            self._guard.uninstall()
            self._guard = None

    @property
    def patched(self) -> bool:
        """vcrpy's stubs are in place (False until the test imports a client library)."""
        return self._activation is not None

    # -- called by vcrpy's stubs ---------------------------------------------------------

    def request(self, vcr_request: Any) -> HttpRequest:
        """A vcrpy request, normalised and redacted: what is stored and matched."""
        method = str(vcr_request.method).upper()
        uri = self.ports.normalise_uri(str(vcr_request.uri))
        headers = settle_headers(header_lists(vcr_request.headers), self.volatile, self.ports)
        body = request_body(vcr_request)
        body = self._tokenise(body)
        method, uri, headers, body = self.redactor.request(method, uri, headers, body)
        if body:
            set_header(headers, "content-length", str(len(body)))  # of the body as stored
        return HttpRequest(method, uri, headers, body)

    def play(self, vcr_request: Any) -> dict[str, Any]:
        if self._fast:
            fields = self.redactor.fields
            key: Hashable = (
                str(vcr_request.method).upper(),
                *live_uri_parts(
                    str(vcr_request.uri), self.ports, lambda q: redact_query(q, fields)
                ),
            )
        else:
            req = self.request(vcr_request)
            key = self.key(req.method, req.uri, req.headers, lambda: req.body)
        index = self._index if self._index is not None else self._build_index()
        position = index.take(key)
        self._calls[key] += 1
        if position is None:
            raise _terse(self.ctx.error(self._missing(self.request(vcr_request), key, index)))
        raw = self.stored[position]["response"]
        restore = self.ports.restore
        text = raw.get("body")
        response = HttpResponse(
            raw["status"],
            raw.get("reason") or "",
            {
                k: [restore(v) for v in vs]
                for k, vs in headers_from_yaml(raw.get("headers")).items()
            },
            restore(text).encode("utf-8") if text is not None else body_bytes(raw, self.ctx.blobs),
            raw.get("encoding"),
        )
        return response.to_vcr(wire=patching.wire_bodies())

    def record(self, vcr_request: Any, vcr_response: dict[str, Any]) -> None:
        req = self.request(vcr_request)
        status = vcr_response.get("status") or {}
        headers = header_lists(vcr_response.get("headers"))
        body = (vcr_response.get("body") or {}).get("string") or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        body, encoding = decode_body(headers, bytes(body))
        headers = settle_headers(headers, self.volatile, self.ports)
        code, reason, headers, body = self.redactor.response(
            int(status.get("code", 0)),
            str(status.get("message") or ""),
            headers,
            self._tokenise(body),
        )
        if body:  # a HEAD response keeps the length of what it describes
            set_header(headers, "content-length", str(len(encode_body(body, encoding))))
        response = HttpResponse(code, reason, headers, body, encoding)
        blobs = self.ctx.blobs
        entry = {"request": req.to_yaml(blobs), "response": response.to_yaml(blobs)}
        with self._lock:
            self.interactions.append(entry)

    def _tokenise(self, body: bytes) -> bytes:
        if not body or not any(h in body for h in _LOOPBACK_HINTS):
            return body
        text = looks_like_text(body)
        return body if text is None else self.ports.tokenise(text).encode("utf-8")

    def _blocked(self, host: str, port: Any, action: str = CONNECT) -> ReplayError:
        where = f"{host}:{port}" if port not in (None, 0, "") else host
        return _terse(
            self.ctx.error(
                NetworkBlocked(
                    f"strict mode blocks network access: this test tried to {action} {where}",
                    place=f"{action.split()[0]} {where}",
                    details=[
                        "only loopback addresses and --replay-allow-hosts are reachable in strict"
                    ],
                    fix="record what the test needs from the network: "
                    "pytest --replay=record {test}; "
                    f"or let this host through: pytest --replay=strict --replay-allow-hosts={host}",
                )
            )
        )

    # -- the recorded side -------------------------------------------------------------------

    @property
    def stored(self) -> list[dict[str, Any]]:
        """The cassette's interactions (shape-checked once, at setup; [] when disabled)."""
        if self._stored is None:
            section = self.ctx.section("http") if self.enabled else None
            try:
                self._stored = parse_section(section, self.ctx.shown)
            except CassetteError as err:
                raise self.ctx.error(err) from None  # names the test, fills the Fix
        return self._stored

    def _build_index(self) -> FifoIndex:
        with self._lock:
            if self._index is None:
                requests = [item["request"] for item in self.stored]
                if self._default_key:
                    keys = [(r["method"].upper(), *uri_parts(r["uri"])) for r in requests]
                else:
                    blobs = self.ctx.blobs
                    keys = [
                        self.key(
                            r["method"],
                            r["uri"],
                            headers_from_yaml(r.get("headers")),
                            lambda r=r: body_bytes(r, blobs),
                        )
                        for r in requests
                    ]
                self._index = FifoIndex(keys)
        return self._index

    def _missing(self, req: HttpRequest, key: Hashable, index: FifoIndex) -> MissingHttp:
        recorded = index.recorded(key)
        details = []
        if recorded:
            summary = (
                f"{req.line} was made more often than recorded "
                f"(call {self._calls[key]}, the cassette has {recorded})"
            )
        else:
            summary = f"no recorded HTTP response for {req.line}"
            lines = [f"{i['request']['method']} {i['request']['uri']}" for i in self.stored]
            nearest = difflib.get_close_matches(req.line, lines, n=NEAREST_SHOWN, cutoff=0.0)
            if nearest:
                details.append("nearest recorded requests:")
                details.extend(f"  {line}" for line in nearest)
            else:
                details.append("the cassette has no HTTP interactions")
        ports = self.ports.describe()
        if ports and "{port" in req.uri:
            details.append(f"loopback ports in this run: {', '.join(ports)}")
        return MissingHttp(
            summary,
            place=req.line,
            details=details,
            fix=rerecord_fix(),
            payload={"request": {"method": req.method, "uri": req.uri, "headers": req.headers}},
        )

    # -- Recorder protocol -----------------------------------------------------------------

    def to_yaml(self) -> dict[str, Any]:
        if not self.recording or not self.interactions:
            return {}
        return {"http": dump_section(self.interactions)}

    def unused(self) -> list[str]:
        if not self.replaying or not self.ctx.section("http"):
            return []
        try:
            index = self._index if self._index is not None else self._build_index()
        except CassetteError:
            return []  # a malformed section: the first request already failed on it
        stored = self.stored
        return [
            f"http #{p} {stored[p]['request']['method']} {stored[p]['request']['uri']}"
            for p in index.remaining()
        ]

    @property
    def new_count(self) -> int:
        return 0

    def finish(self) -> None:
        pass

    def save_files(self) -> None:
        pass


def _terse(err: ReplayError) -> ReplayError:
    # Raised deep inside a client library: the report shows the message, not
    # twenty frames of requests and urllib3.
    err.terse = True  # type: ignore[attr-defined]
    return err


def install(session: Any) -> HttpRecorder:
    recorder = HttpRecorder(session.context)
    recorder.start()
    session.http = recorder
    return recorder
