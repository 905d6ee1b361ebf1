"""HTTP: a client under test talks to a local server; the exchange is recorded once.

The ``weather_api`` fixture starts a real HTTP server on 127.0.0.1 with a
fresh port each run. Recording, the client's requests reach it and go into
the test's cassette (``http:`` section, the API key redacted, the port
stored as ``{port1}``); replaying, the server is started but never reached:
every response comes from the cassette, in recorded order.

    pytest examples/test_http.py --replay=record   # talk to the server, write cassettes
    pytest examples/test_http.py --replay=strict   # serve everything from the cassettes
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "demo-key-not-a-secret"


class WeatherApi(BaseHTTPRequestHandler):
    """A stand-in for a remote API: forecasts, and a report job that takes a while."""

    protocol_version = "HTTP/1.1"
    polls = 0

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/forecast/paris"):
            self._send(200, {"city": "Paris", "days": [{"high": 21, "low": 12}, {"high": 19}]})
        elif self.path.startswith("/jobs/7"):
            type(self).polls += 1
            self._send(200, {"job": 7, "state": "done" if self.polls >= 3 else "running"})
        else:
            self._send(404, {"error": f"no such resource: {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.headers.get("X-Api-Key") != API_KEY:
            self._send(401, {"error": "bad key"})
        else:
            self._send(201, {"job": 7, "cities": request["cities"]})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def weather_api() -> Iterator[str]:
    handler = type("Handler", (WeatherApi,), {"polls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- the code under test: a plain urllib client -------------------------------------


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def start_report(base: str, cities: list[str]) -> int:
    request = urllib.request.Request(
        f"{base}/reports",
        data=json.dumps({"cities": cities}).encode(),
        headers={"Content-Type": "application/json", "X-Api-Key": API_KEY},
        method="POST",
    )
    with urllib.request.urlopen(request) as resp:
        return json.loads(resp.read())["job"]


def wait_for(base: str, job: int) -> list[str]:
    """Poll until done: the same request three times, three different answers."""
    states = []
    while not states or states[-1] != "done":
        states.append(get_json(f"{base}/jobs/{job}")[1]["state"])
    return states


# --- tests --------------------------------------------------------------------------------


def test_forecast(replay, weather_api):
    status, forecast = get_json(f"{weather_api}/forecast/paris?days=2")
    assert status == 200
    assert [day["high"] for day in forecast["days"]] == [21, 19]


def test_unknown_city_is_a_404(replay, weather_api):
    status, body = get_json(f"{weather_api}/forecast/atlantis")
    assert status == 404 and "atlantis" in body["error"]


def test_report_job_polls_until_done(replay, weather_api):
    job = start_report(weather_api, ["Paris", "Oslo"])
    assert wait_for(weather_api, job) == ["running", "running", "done"]


@pytest.mark.replay(http=False)
def test_live_when_opted_out(replay, weather_api):
    """http=False: this test always talks to the server (loopback, so strict allows it)."""
    status, _ = get_json(f"{weather_api}/forecast/paris")
    assert status == 200
