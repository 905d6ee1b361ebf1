"""HTTP through vcrpy into the cassette: clients, order, threads, redaction, strict, stability."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from .conftest import tree_digest

INNER_CONFTEST = """
import pytest
from tests.http_servers import async_server, sync_server

@pytest.fixture
def server():
    with sync_server() as s:
        yield s

@pytest.fixture
def aserver():
    with async_server() as s:
        yield s

@pytest.fixture
def live(replay):
    # record runs live; replay and strict must never reach the server
    return replay.mode.value == "record"
"""


@pytest.fixture
def hrt(rt):
    rt.pytester.makeconftest(INNER_CONFTEST)
    return rt


def http_lines(rt, test: str) -> list[dict]:
    """The interactions of a cassette's http section, parsed."""
    import yaml

    doc = yaml.safe_load(rt.cassette(test).read_text(encoding="utf-8"))
    values = [json.loads(line[2:]) for line in doc["http"].splitlines()]
    return [{"request": a, "response": b} for a, b in zip(values[0::2], values[1::2], strict=True)]


CLIENTS = """
import asyncio, gzip, json, urllib.request
import aiohttp, httpx, pytest, requests, urllib3
from tests.http_servers import BINARY, TEXT

def test_requests(replay, server, live):
    r = requests.get(server.base + "/echo?x=1", headers={"Accept": "application/json"})
    assert r.json()["query"] == "x=1"
    posted = requests.post(server.base + "/echo", json={"b": 2}).json()
    assert json.loads(posted["body"]) == {"b": 2}
    assert requests.get(server.base + "/redirect").json()["query"] == "from=redirect"
    missing = requests.get(server.base + "/status?code=404")
    assert missing.status_code == 404 and missing.text == "status 404"
    head = requests.head(server.base + "/binary")
    assert head.headers["Content-Length"] == "1024" and head.content == b""
    with requests.Session() as session:
        session.get(server.base + "/secret")
        assert list(session.cookies.keys()) == ["session"]  # the value is redacted
    assert len(server.hits) == (7 if live else 0)

def test_urllib_http_client(replay, server, live):
    with urllib.request.urlopen(server.base + "/echo?via=urllib") as resp:
        assert json.loads(resp.read())["query"] == "via=urllib"
    assert len(server.hits) == (1 if live else 0)

def test_urllib3(replay, server, live):
    pool = urllib3.PoolManager()
    r = pool.request("PUT", server.base + "/echo?via=urllib3", body=b"raw body")
    assert r.json()["body"] == "raw body" and r.json()["method"] == "PUT"
    assert pool.request("GET", server.base + "/binary").data == BINARY
    assert len(server.hits) == (2 if live else 0)

def test_httpx_sync(replay, server, live):
    with httpx.Client() as client:
        assert client.get(server.base + "/echo", params={"via": "httpx"}).json()["query"] == "via=httpx"
        assert client.get(server.base + "/gzip").text == TEXT
    assert len(server.hits) == (2 if live else 0)

def test_httpx_async(replay, aserver, live):
    async def main():
        async with httpx.AsyncClient() as client:
            r = await client.post(aserver.base + "/echo?via=httpx-async", content=b"hi")
            return r.json()
    out = asyncio.run(main())
    assert out["query"] == "via=httpx-async" and out["body"] == "hi"
    assert len(aserver.hits) == (1 if live else 0)

def test_aiohttp(replay, aserver, live):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(aserver.base + "/echo?via=aiohttp") as r:
                first = await r.json()
            async with session.get(aserver.base + "/gzip") as r:
                text = await r.text()
            async with session.get(aserver.base + "/redirect") as r:
                redirected = await r.json()
        return first, text, redirected
    first, text, redirected = asyncio.run(main())
    assert first["query"] == "via=aiohttp" and text == TEXT
    assert redirected["query"] == "from=redirect"
    assert len(aserver.hits) == (4 if live else 0)
"""


def test_each_client_records_then_replays_without_reaching_the_server(hrt):
    hrt.module(CLIENTS)
    hrt.record().assert_outcomes(passed=6)
    names = sorted(p.name for p in hrt.cassettes())
    assert len(names) == 6
    before = tree_digest(hrt.root / "cassettes")
    hrt.run().assert_outcomes(passed=6)
    strict = hrt.run("--replay=strict")
    strict.assert_outcomes(passed=6)
    strict.stdout.fnmatch_lines(["*mode strict: 6 test(s) used replay; 6 replayed*"])
    assert tree_digest(hrt.root / "cassettes") == before  # replaying writes nothing
    text = hrt.cassette("test_requests").read_text(encoding="utf-8")
    assert "http: |" in text  # one readable block, not a nested YAML tree
    assert "http://127.0.0.1:{port1}/echo?x=1" in text
    assert not re.search(r"127\.0\.0\.1:\d", text)  # no ephemeral port stored


def test_identical_requests_replay_in_recorded_order(hrt):
    hrt.module(
        """
        import requests
        def test_counts(replay, server, live):
            got = [requests.get(server.base + "/count").json()["n"] for _ in range(4)]
            assert got == [1, 2, 3, 4]
            assert server.counter == (4 if live else 0)
        """
    )
    hrt.record().assert_outcomes(passed=1)
    assert [i["response"]["body"] for i in http_lines(hrt, "test_counts")] == [
        '{"n": 1}',
        '{"n": 2}',
        '{"n": 3}',
        '{"n": 4}',
    ]
    hrt.run("--replay=strict").assert_outcomes(passed=1)


def test_concurrent_requests_from_threads_and_asyncio_gather(hrt):
    hrt.module(
        """
        import asyncio
        from concurrent.futures import ThreadPoolExecutor
        import aiohttp, httpx, requests

        def test_threads(replay, server, live):
            urls = [server.base + f"/echo?i={i}" for i in range(24)]
            with ThreadPoolExecutor(8) as pool:
                out = list(pool.map(lambda u: requests.get(u).json()["query"], urls))
                counts = sorted(pool.map(lambda _: requests.get(server.base + "/count").json()["n"], range(8)))
            assert out == [f"i={i}" for i in range(24)]
            assert counts == list(range(1, 9))  # each recorded response served exactly once
            assert len(server.hits) == (32 if live else 0)

        def test_gather(replay, aserver, live):
            async def main():
                async with aiohttp.ClientSession() as session:
                    async def get(path):
                        async with session.get(aserver.base + path) as r:
                            return await r.json()
                    distinct = await asyncio.gather(*(get(f"/echo?i={i}") for i in range(12)))
                    counts = await asyncio.gather(*(get("/count") for _ in range(6)))
                async with httpx.AsyncClient() as client:
                    more = await asyncio.gather(*(client.get(aserver.base + f"/echo?h={i}") for i in range(6)))
                return distinct, counts, more
            distinct, counts, more = asyncio.run(main())
            assert [d["query"] for d in distinct] == [f"i={i}" for i in range(12)]
            assert sorted(c["n"] for c in counts) == list(range(1, 7))
            assert [m.json()["query"] for m in more] == [f"h={i}" for i in range(6)]
            assert len(aserver.hits) == (24 if live else 0)
        """
    )
    hrt.record().assert_outcomes(passed=2)
    for _ in range(3):  # thread and task interleavings differ run to run
        hrt.run("--replay=strict").assert_outcomes(passed=2)


MISSING = """
import os, requests
def test_t(replay, server):
    requests.get(server.base + "/echo?x=1")
    for _ in range(int(os.environ.get("REPEAT", "1"))):
        try:
            requests.get(server.base + "/echo?" + os.environ.get("Q", "y=1"))
        except Exception:
            if not os.environ.get("CATCH"):
                raise  # else: code under test that swallows errors
"""


def test_requests_missing_from_the_cassette_fail_clearly(hrt, monkeypatch):
    hrt.module(MISSING)
    hrt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("Q", "y=2")
    for mode in ("replay", "strict"):
        result = hrt.run(f"--replay={mode}")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*replay_missing_http: no recorded HTTP response for GET http://127.0.0.1:{port1}/echo?y=2",
                "*test:*test_mod.py::test_t",
                "*cassette:*cassettes/test_mod/test_t.yaml",
                "*nearest recorded requests:",
                "*GET http://127.0.0.1:{port1}/echo?y=1",
                "*loopback ports in this run: {port1} = port *",
                "*Fix: re-record this test: pytest --replay=record 'test_mod.py::test_t'",
            ]
        )
        assert "Traceback" not in result.stdout.str()
    # The code under test swallowing the error does not make the test pass.
    monkeypatch.setenv("CATCH", "1")
    caught = hrt.run()
    caught.assert_outcomes(failed=1)
    caught.stdout.fnmatch_lines(["*replay_missing_http*", "*caught by the code*"])
    # One request more often than recorded.
    monkeypatch.delenv("Q")
    monkeypatch.delenv("CATCH")
    monkeypatch.setenv("REPEAT", "2")
    more = hrt.run()
    more.assert_outcomes(failed=1)
    more.stdout.fnmatch_lines(
        [
            "*replay_missing_http: GET http://127.0.0.1:{port1}/echo?y=1 was made more often "
            "than recorded (call 2, the cassette has 1)",
        ]
    )
    # One fewer: replay reports it, strict fails on it.
    monkeypatch.setenv("REPEAT", "0")
    hrt.run().assert_outcomes(passed=1)
    unused = hrt.run("--replay=strict")
    unused.assert_outcomes(failed=1)
    unused.stdout.fnmatch_lines(
        [
            "*replay_unused: 1 recorded item(s) were never used by the test",
            "*at:*http #1 GET http://127.0.0.1:{port1}/echo?y=1",
        ]
    )


BLOCKED = """
import asyncio, socket, time
import pytest
from pytest_replay.http import network

def timed(fn):
    start = time.perf_counter()
    try:
        fn()
    finally:
        print("ELAPSED", time.perf_counter() - start)

def strict_only(replay):
    # Recorded empty: the network part runs only under strict.
    return replay.mode.value == "strict"

def test_raw_socket(replay):
    if not strict_only(replay):
        return
    sock = socket.socket()
    sock.settimeout(5)
    timed(lambda: sock.connect(("192.0.2.1", 80)))  # TEST-NET-1: never routed

def test_connect_ex(replay):
    if not strict_only(replay):
        return
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    timed(lambda: sock.connect_ex(("2001:db8::1", 443)))

def test_create_connection_blocks_names_before_dns(replay):
    if not strict_only(replay):
        return
    timed(lambda: socket.create_connection(("api.example.invalid", 443), timeout=5))

def test_asyncio(replay):
    if not strict_only(replay):
        return
    timed(lambda: asyncio.run(asyncio.wait_for(asyncio.open_connection("192.0.2.1", 80), 5)))

def test_name_lookup(replay):
    if not strict_only(replay):
        return
    timed(lambda: socket.getaddrinfo("api.example.invalid", 443))

def test_udp_send(replay):
    if not strict_only(replay):
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        timed(lambda: sock.sendto(b"query", ("192.0.2.1", 53)))

def test_loopback_passes(replay, server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /ok HTTP/1.0\\r\\n\\r\\n")
        assert b"200 OK" in sock.recv(100)

def test_allowed_hosts(replay):
    guard = network.current()
    if replay.mode.value != "strict":
        assert guard is None
        return
    assert guard.allows("192.0.2.7") and guard.allows("API.example.com")
    assert guard.allows("127.0.0.5") and guard.allows("::1") and guard.allows("localhost")
    assert not guard.allows("192.0.2.1") and not guard.allows("example.com")
"""


def test_strict_blocks_non_loopback_connects_before_they_happen(hrt):
    real = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.create_connection,
        socket.getaddrinfo,
    )
    hrt.module(BLOCKED)
    hrt.record().assert_outcomes(passed=8)
    result = hrt.run("--replay=strict", "-s", "-k", "not allowed")
    result.assert_outcomes(passed=1, failed=6, deselected=1)
    out = result.stdout.str()
    for test, what in [
        ("test_raw_socket", "connect to 192.0.2.1:80"),
        ("test_connect_ex", "connect to 2001:db8::1:443"),
        ("test_create_connection_blocks_names_before_dns", "connect to api.example.invalid:443"),
        ("test_asyncio", "connect to 192.0.2.1:80"),
        ("test_name_lookup", "resolve api.example.invalid:443"),
        ("test_udp_send", "send a datagram to 192.0.2.1:53"),
    ]:
        assert (
            f"replay_missing_http: strict mode blocks network access: this test tried to {what}"
        ) in out
        assert f"test:      test_mod.py::{test}" in out
    assert "at:        resolve api.example.invalid:443" in out
    assert "Fix: record what the test needs from the network" in out
    # Refused at once: a real connect to TEST-NET would hang until the timeout.
    elapsed = [float(x) for x in re.findall(r"ELAPSED ([0-9.e-]+)", out)]
    assert len(elapsed) == 6 and max(elapsed) < 1.0
    assert (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.create_connection,
        socket.getaddrinfo,
    ) == real
    allowed = hrt.run("--replay=strict", "-k", "allowed", "--replay-allow-hosts=192.0.2.7")
    allowed.assert_outcomes(failed=1, deselected=7)  # api.example.com is not in this list
    hrt.run(
        "--replay=strict", "-k", "allowed", "--replay-allow-hosts=192.0.2.7, api.example.com"
    ).assert_outcomes(passed=1, deselected=7)


def test_allowed_hosts_come_from_the_ini_too(hrt):
    hrt.pytester.makeini("[pytest]\nreplay_allow_hosts = 192.0.2.7 api.example.com\n")
    hrt.module(BLOCKED)
    hrt.record().assert_outcomes(passed=8)
    hrt.run("--replay=strict", "-k", "allowed").assert_outcomes(passed=1, deselected=7)


SECRETS = {
    "Authorization": "Bearer HDR-SECRET-1",
    "X-Api-Key": "APIKEY-SECRET-2",
    "Cookie": "sid=COOKIE-SECRET-3",
    "query": ["QUERY-SECRET-4", "TOKEN-SECRET-5"],
    "json": ["BODY-SECRET-6", "NESTED-SECRET-10"],
    "response": ["RESPONSE-SECRET-7", "RSIG-8", "COOKIE-SECRET-9"],
    "custom": ["CUSTOM-SECRET-11", "LITERAL-SECRET-12", "HOOK-SECRET-13", "FORM-SECRET-14"],
}
ALL_SECRETS = [
    v if isinstance(v, str) else s
    for v in SECRETS.values()
    for s in (v if isinstance(v, list) else [v])
]

CANARY = """
import os, requests, pytest
from tests.http_servers import sync_server

def s(name):  # a secret; replays run with rotated values and must still match
    return name + os.environ.get("ROTATE", "")

@pytest.mark.replay(redact=["X-Session", "password"], redact_values=[s("LITERAL-SECRET-12")])
def test_secrets(replay, server):
    requests.post(
        server.base + "/ok",
        params={"api_key": s("QUERY-SECRET-4"), "token": s("TOKEN-SECRET-5"), "page": "1"},
        headers={
            "Authorization": "Bearer " + s("HDR-SECRET-1"),
            "X-Api-Key": s("APIKEY-SECRET-2"),
            "Cookie": "sid=" + s("COOKIE-SECRET-3"),
            "X-Session": s("CUSTOM-SECRET-11"),
            "X-Hooked": s("HOOK-SECRET-13"),
        },
        json={"access_token": s("BODY-SECRET-6"), "items": [{"signature": s("NESTED-SECRET-10")}],
              "note": "has " + s("LITERAL-SECRET-12") + " inside"},
    )
    requests.post(server.base + "/ok", data={"password": s("FORM-SECRET-14"), "user": "ada"})
    r = requests.get(server.base + "/secret" + os.environ.get("EXTRA", ""))
    assert r.json()["user"] == "ada"
"""

CANARY_HOOK = """
def pytest_replay_redact(kind, item):
    if kind == "http_request" and "X-Hooked" in item["headers"]:
        item["headers"]["X-Hooked"] = ["<hooked>"]
"""


def _files_with_secrets(root) -> dict[str, list[str]]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = [s for s in ALL_SECRETS if s.encode() in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def test_redaction_canary_no_secret_byte_reaches_the_cassette_directory(hrt, monkeypatch):
    hrt.pytester.makeconftest(INNER_CONFTEST + CANARY_HOOK)
    hrt.module(CANARY)
    hrt.record().assert_outcomes(passed=1)
    cassettes = hrt.root / "cassettes"
    assert hrt.cassette("test_secrets").exists()
    assert _files_with_secrets(cassettes) == {}
    text = hrt.cassette("test_secrets").read_text(encoding="utf-8")
    assert text.count("<redacted>") >= 12 and "<hooked>" in text
    assert "page=1" in text and "user=ada" in text  # the rest stays readable
    # Rotated secrets still match their redacted recording.
    monkeypatch.setenv("ROTATE", "-rotated")
    hrt.run("--replay=strict").assert_outcomes(passed=1)
    # A miss persists a diff payload: it holds the redacted request only.
    monkeypatch.setenv("EXTRA", "?api_key=QUERY-SECRET-4")
    monkeypatch.setenv("ROTATE", "")
    hrt.run().assert_outcomes(failed=1)
    assert _files_with_secrets(hrt.root / ".pytest_cache") == {}
    assert _files_with_secrets(cassettes) == {}


OWN_PLACEHOLDERS = """
import pytest, requests

# Each value also occurs in a placeholder the plugin writes: <volatile>, the
# Date placeholder's 1970, {port1}, <redacted>. None of those may change.
@pytest.mark.replay(redact_values=["vola", "1970", "port", "dact", "SECRET-VALUE-15"])
def test_scrub(replay, server, live):
    r = requests.post(
        server.base + "/echo?token=abc&s=SECRET-VALUE-15", json={"note": "SECRET-VALUE-15"}
    )
    assert r.json()["method"] == "POST" and r.json()["path"] == "/echo"
    # The echoed query is a string in the response: the name 'token' does not reach it.
    assert r.json()["query"] == "token=abc&s=" + ("SECRET-VALUE-15" if live else "<redacted>")
    assert len(server.hits) == (1 if live else 0)
"""


def test_redact_values_leave_the_plugins_placeholders_whole_and_replay(hrt):
    hrt.module(OWN_PLACEHOLDERS)
    hrt.record().assert_outcomes(passed=1)
    text = hrt.cassette("test_scrub").read_text(encoding="utf-8")
    assert "SECRET-VALUE-15" not in text
    request, response = http_lines(hrt, "test_scrub")[0].values()
    assert request["uri"] == "http://127.0.0.1:{port1}/echo?token=<redacted>&s=<redacted>"
    assert request["headers"]["User-Agent"] == "<volatile>"
    assert response["headers"]["Server"] == "<volatile>"
    assert response["headers"]["Date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert json.loads(request["body"]) == {"note": "<redacted>"}
    hrt.run("--replay=strict").assert_outcomes(passed=1)


SHORT_SECRET = """
import pytest, requests

@pytest.mark.replay(redact_values=["long-enough-secret", "q#"])
def test_short(replay, server):
    requests.get(server.base + "/echo")
"""


def test_a_redact_value_too_short_to_be_a_secret_errors_the_test_at_setup(hrt):
    hrt.module(SHORT_SECRET)
    result = hrt.record()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "ERROR at setup of test_short" in out
    assert (
        "replay_config: replay setting redact_values in replay marker: value #2 (2 characters) "
        "is too short to be a secret (the minimum is 4 characters)"
    ) in out
    assert "test:      test_mod.py::test_short" in out
    assert "Fix: list only secrets of 4 characters or more in redact_values" in out
    assert "long-enough-secret" not in out and not hrt.cassette("test_short").exists()


def test_bad_allow_hosts_are_refused_naming_where_the_entry_and_a_fix(hrt):
    hrt.module(
        "import pytest\n\n"
        "@pytest.mark.replay(allow_hosts=['db.internal:5432'])\n"
        "def test_port(replay):\n    pass\n"
    )
    for args, source in [
        (["--replay-allow-hosts=db.internal,:::"], "--replay-allow-hosts"),
        (["-o", "replay_allow_hosts=:::"], "ini option replay_allow_hosts"),
    ]:
        result = hrt.run("--replay=strict", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        err = result.stderr.str()
        assert f"replay_config: {source}: ':::' is not a host name or an IP address" in err
        assert "Fix: write " in err
    result = hrt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert (
        "replay setting allow_hosts in replay marker: 'db.internal:5432' has a port (:5432)"
    ) in out
    assert "test:      test_mod.py::test_port" in out
    assert "Fix: write allow_hosts=['db.internal']" in out


STABLE = """
import requests
from tests.http_servers import BINARY, TEXT

def test_stable(replay, server):
    assert requests.get(server.base + "/echo?a=1").json()["query"] == "a=1"
    assert requests.get(server.base + "/gzip").text == TEXT  # gzip mtime differs per run
    assert requests.get(server.base + "/binary").content == BINARY
    assert requests.get(server.base + "/next").json()["next"] == server.base + "/echo?page=2"
    assert requests.get(server.base + "/secret").headers["X-Request-Id"]  # differs per run
"""


def test_recording_twice_on_different_ports_gives_the_same_bytes(hrt):
    hrt.module(STABLE)
    hrt.record().assert_outcomes(passed=1)
    first = tree_digest(hrt.root / "cassettes")
    text = hrt.cassette("test_stable").read_text(encoding="utf-8")
    shutil.rmtree(hrt.root / "cassettes")
    hrt.record().assert_outcomes(passed=1)  # a new server, a new ephemeral port
    assert tree_digest(hrt.root / "cassettes") == first
    assert hrt.cassette("test_stable").read_text(encoding="utf-8") == text
    blobs = list((hrt.root / "cassettes" / ".blobs").iterdir())
    assert [p.suffix for p in blobs] == [".bin"]  # the binary body; text stays inline
    lines = {i["request"]["uri"]: i["response"] for i in http_lines(hrt, "test_stable")}
    gz = lines["http://127.0.0.1:{port1}/gzip"]
    assert gz["encoding"] == "gzip" and gz["body"].startswith("line one\nline two: ü")
    assert lines["http://127.0.0.1:{port1}/next"]["body"] == (
        '{"next": "http://127.0.0.1:{port1}/echo?page=2"}'
    )
    secret = lines["http://127.0.0.1:{port1}/secret"]["headers"]
    assert secret["X-Request-Id"] == "<volatile>"
    assert secret["Date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    hrt.run("--replay=strict").assert_outcomes(passed=1)  # ports restored in bodies too


def test_gzip_bodies_replay_as_each_client_sees_them_live(hrt):
    hrt.module(
        """
        import asyncio, gzip, urllib.request
        import aiohttp, httpx, requests
        from tests.http_servers import TEXT

        def test_gzip(replay, server, aserver):
            assert requests.get(server.base + "/gzip").text == TEXT
            with httpx.Client() as client:
                assert client.get(server.base + "/gzip").text == TEXT
            raw = urllib.request.urlopen(server.base + "/gzip").read()  # urllib does not decode
            assert gzip.decompress(raw).decode("utf-8") == TEXT
            async def main():
                async with aiohttp.ClientSession() as s:
                    async with s.get(aserver.base + "/gzip") as r:
                        return await r.text(), r.headers["Content-Encoding"]
            assert asyncio.run(main()) == (TEXT, "gzip")
        """
    )
    hrt.record().assert_outcomes(passed=1)
    responses = [i["response"] for i in http_lines(hrt, "test_gzip")]
    assert [r["encoding"] for r in responses] == ["gzip"] * 4
    assert all(r["body"].startswith("line one") for r in responses)
    hrt.run("--replay=strict").assert_outcomes(passed=1)


def test_http_false_opts_out(hrt):
    hrt.module(
        """
        import pytest, requests
        @pytest.mark.replay(http=False)
        def test_live(replay, server):
            requests.get(server.base + "/ok")
            assert len(server.hits) == 1  # live in every mode
        """
    )
    hrt.record().assert_outcomes(passed=1)
    assert "http:" not in hrt.cassette("test_live").read_text(encoding="utf-8")
    hrt.run().assert_outcomes(passed=1)


def test_the_marker_alone_turns_recording_on(hrt):
    hrt.module(
        """
        import pytest, requests
        @pytest.mark.replay
        def test_marked(server):
            assert requests.get(server.base + "/echo?m=1").json()["query"] == "m=1"
            print("HITS", len(server.hits))
        """
    )
    hrt.record("-s").stdout.fnmatch_lines(["*HITS 1*"])
    assert "http: |" in hrt.cassette("test_marked").read_text(encoding="utf-8")
    strict = hrt.run("--replay=strict", "-s")
    strict.assert_outcomes(passed=1)
    strict.stdout.fnmatch_lines(["*HITS 0*"])


def test_match_on_body_tells_posts_to_one_url_apart(hrt, monkeypatch):
    hrt.module(
        """
        import os, pytest, requests
        @pytest.mark.replay(match_on=["method", "uri", "body"])
        def test_posts(replay, server):
            order = os.environ.get("ORDER", "ab")
            got = {c: requests.post(server.base + "/count", json={"c": c}).json()["n"] for c in order}
            assert got == {"a": 1, "b": 2}
        """
    )
    hrt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("ORDER", "ba")  # without the body in the key the FIFO would swap them
    hrt.run("--replay=strict").assert_outcomes(passed=1)


def test_bad_http_settings_name_the_valid_values(hrt):
    hrt.module(
        """
        import pytest
        @pytest.mark.replay(match_on=["method", "bogus"])
        def test_t(replay):
            pass
        """
    )
    result = hrt.run()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "replay setting match_on=['method', 'bogus'] in replay marker is not valid" in out
    assert "Fix: match_on must be a list of method, scheme, host, port, path, query, uri" in out


def test_a_corrupt_http_section_is_a_clear_error(hrt):
    hrt.module(
        """
        import requests
        def test_t(replay, server):
            requests.get(server.base + "/ok")
        """
    )
    hrt.record().assert_outcomes(passed=1)
    path = hrt.cassette("test_t")
    path.write_text(path.read_text().replace('"status": 200', '"status": "ok"'))
    result = hrt.run("-s")
    # At setup, before the body (and its request) runs, with the test named.
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_t*",
            "*replay_cassette: http interaction #0 is malformed: response 'status' must be an HTTP status code",
            "*test:      test_mod.py::test_t",
            "*Fix: restore the cassette from version control, or re-record: "
            "pytest --replay=record 'test_mod.py::test_t'",
        ]
    )
    assert "<test node id>" not in result.stdout.str()
    assert "requests/" not in result.stdout.str()  # no traceback through the client


LAZY_CONFTEST = """
import pytest

@pytest.fixture
def server():
    from tests.http_servers import sync_server  # http.server imports http.client

    with sync_server() as s:
        yield s

@pytest.fixture
def live(replay):
    return replay.mode.value == "record"
"""


def test_no_http_library_no_vcrpy_and_a_late_import_is_still_recorded(rt, monkeypatch):
    """In a fresh process: a test that makes no request never imports vcrpy."""
    # The fresh process imports tests.http_servers (and this checkout's plugin).
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    rt.pytester.makeconftest(LAZY_CONFTEST)
    rt.module(
        """
        import sys
        def test_a_no_http(replay):
            assert replay.fact("x", lambda: 1) == 1
            assert "vcr" not in sys.modules and "http.client" not in sys.modules
            assert not replay.http.patched

        def test_b_imports_late(replay, server, live):
            import requests
            assert replay.http.patched  # since the server fixture imported http.client
            assert requests.get(server.base + "/echo?late=1").json()["query"] == "late=1"
            assert len(server.hits) == (1 if live else 0)
        """
    )
    result = rt.pytester.runpytest_subprocess("-p", "no:randomly", "--replay=record")
    result.assert_outcomes(passed=2)
    strict = rt.pytester.runpytest_subprocess("-p", "no:randomly", "--replay=strict")
    strict.assert_outcomes(passed=2)


def test_import_vcr_turns_a_vcrpy_cassette_into_one_that_replays_in_strict(hrt, capsys):
    import requests
    import vcr

    from pytest_replay.review.cli import main

    from .http_servers import sync_server

    source = hrt.root / "cassettes" / "test_mod" / "test_t.yaml"
    with sync_server() as server, vcr.use_cassette(str(source)):
        requests.get(server.base + "/ok?from=vcr&api_key=VCR-SECRET-1")
        requests.get(server.base + "/binary")
    assert "interactions:" in source.read_text()
    assert main(["import-vcr", str(hrt.root / "cassettes")]) == 0
    assert "1 imported, 0 failed" in capsys.readouterr().out
    text = source.read_text()
    assert text.startswith("pytest_replay: 1\ntest: test_mod.py::test_t\nhttp: |\n")
    assert "VCR-SECRET-1" not in text and "/ok?from=vcr&api_key=<redacted>" in text
    assert main(["import-vcr", str(source)]) == 1  # already converted: not a vcrpy cassette
    assert "not a vcrpy cassette" in capsys.readouterr().err
    hrt.module(
        """
        import requests
        from tests.http_servers import BINARY
        def test_t(replay, server):
            assert requests.get(server.base + "/ok?from=vcr&api_key=other").json() == {"ok": True}
            assert requests.get(server.base + "/binary").content == BINARY
            assert server.hits == []
        """
    )
    hrt.run("--replay=strict").assert_outcomes(passed=1)


def test_check_and_show_read_http_sections(hrt, capsys):
    from pytest_replay.review.cli import main

    hrt.module(
        """
        import requests
        def test_t(replay, server):
            requests.get(server.base + "/binary")
        """
    )
    hrt.record().assert_outcomes(passed=1)
    assert main(["check", str(hrt.root / "cassettes")]) == 0
    assert main(["show", str(hrt.cassette("test_t"))]) == 0
    shown = capsys.readouterr().out
    assert "http: 1 item(s)\n  http/0  GET http://127.0.0.1:{port1}/binary -> 200" in shown
    [blob] = (hrt.root / "cassettes" / ".blobs").iterdir()
    blob.write_bytes(b"tampered")
    assert main(["check", str(hrt.root / "cassettes")]) == 1
    assert "does not match its digest" in capsys.readouterr().out


def test_a_tampered_body_blob_errors_the_test_at_setup_before_its_body_runs(hrt):
    hrt.module(
        """
        import pathlib, requests
        def test_t(replay, server):
            pathlib.Path("body-ran").write_text("x")
            assert requests.get(server.base + "/binary").content
        """
    )
    hrt.record().assert_outcomes(passed=1)
    (hrt.root / "body-ran").unlink()
    [blob] = (hrt.root / "cassettes" / ".blobs").iterdir()
    blob.write_bytes(b"tampered")
    result = hrt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    assert not (hrt.root / "body-ran").exists()
    out = result.stdout.str()
    assert f"blob {blob.name} does not match its digest" in out
    assert "test:      test_mod.py::test_t" in out
    blob.unlink()
    result = hrt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    assert f"blob {blob.name} cannot be read" in result.stdout.str()
    assert not (hrt.root / "body-ran").exists()


def test_a_hand_written_cassette_serves_https_to_every_client_in_strict(hrt):
    interaction = (
        '> {"method": "GET", "uri": "https://api.example.com/v1/items?page=1"}\n'
        '< {"status": 200, "reason": "OK", "headers": {"Content-Type": "application/json"}, '
        '"body": "{\\"items\\": [1, 2]}"}\n'
    )
    path = hrt.cassette("test_https")
    path.parent.mkdir(parents=True)
    path.write_text(
        "pytest_replay: 1\ntest: test_mod.py::test_https\nhttp: |\n"
        + "".join("  " + line + "\n" for line in (interaction * 4).splitlines())
    )
    hrt.module(
        """
        import asyncio, json, urllib.request
        import aiohttp, httpx, requests

        URL = "https://api.example.com/v1/items?page=1"

        def test_https(replay):
            with urllib.request.urlopen(URL) as resp:  # http.client's HTTPSConnection
                assert json.loads(resp.read()) == {"items": [1, 2]}
            assert requests.get(URL).json() == {"items": [1, 2]}
            assert httpx.get(URL).json() == {"items": [1, 2]}
            async def main():
                async with aiohttp.ClientSession() as session:
                    async with session.get(URL) as r:
                        return await r.json()
            assert asyncio.run(main()) == {"items": [1, 2]}
        """
    )
    hrt.run("--replay=strict").assert_outcomes(passed=1)
