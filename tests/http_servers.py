"""Loopback HTTP servers the HTTP tests start: a threaded http.server and an aiohttp one.

Both serve the same routes and count the requests they get, so a test can
assert that a replay never reached the server.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BINARY = bytes(range(256)) * 4  # not UTF-8: goes to the blob store
TEXT = "line one\nline two: ünïcode ✓\n" * 20


@dataclass
class Server:
    base: str
    hits: list[str] = field(default_factory=list)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def next_count(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter


def route(server: Server, method: str, target: str, headers: dict[str, str], body: bytes):
    """(status, headers, body) for a request; the same logic for both servers."""
    server.hits.append(f"{method} {target}")
    parts = urlsplit(target)
    path = parts.path
    if path == "/ok":
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
    if path == "/count":
        n = server.next_count()
        return 200, {"Content-Type": "application/json"}, json.dumps({"n": n}).encode()
    if path == "/gzip":
        data = gzip.compress(TEXT.encode("utf-8"))  # mtime differs run to run
        return 200, {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}, data
    if path == "/binary":
        return 200, {"Content-Type": "application/octet-stream"}, BINARY
    if path == "/secret":
        payload = {"access_token": "RESPONSE-SECRET-7", "user": "ada", "nested": {"sig": "RSIG-8"}}
        return (
            200,
            {
                "Content-Type": "application/json",
                "Set-Cookie": "session=COOKIE-SECRET-9; Path=/",
                "X-Request-Id": f"req-{server.next_count()}",
            },
            json.dumps(payload).encode(),
        )
    if path == "/next":
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"next": f"{server.base}/echo?page=2"}).encode(),
        )
    if path == "/redirect":
        return 302, {"Location": f"{server.base}/echo?from=redirect"}, b""
    if path == "/status":
        code = int(dict(parse_qsl(parts.query)).get("code", "200"))
        return code, {"Content-Type": "text/plain"}, f"status {code}".encode()
    echo = {
        "method": method,
        "path": path,
        "query": parts.query,
        "body": body.decode("utf-8", "replace"),
        "content_type": headers.get("content-type", ""),
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(echo, sort_keys=True).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_ref: Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, data = route(self.server_ref, self.command, self.path, headers, body)
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def sync_server() -> Iterator[Server]:
    """A threaded http.server on 127.0.0.1 and a fresh ephemeral port."""
    handler = type("Handler", (_Handler,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # keep-alive handlers may still wait for their client
    server = Server(f"http://127.0.0.1:{httpd.server_address[1]}")
    handler.server_ref = server
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def async_server() -> Iterator[Server]:
    """An aiohttp.web server on its own event loop in a thread (for async clients)."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, out_headers, data = route(
            holder["server"], request.method, request.path_qs, headers, body
        )
        return web.Response(status=status, headers=out_headers, body=data)

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        holder["runner"] = runner
        holder["server"] = Server(f"http://127.0.0.1:{port}")
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield holder["server"]
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
