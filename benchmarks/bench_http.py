"""Replaying N distinct GET requests: plain vcrpy (its own cassette) against pytest_replay.

Both record the same workload from a loopback server in this process (vcrpy
into its own YAML cassette with default matching, pytest_replay into a
cassette's ``http:`` section), then replay it through two clients:
http.client on one kept-alive connection (the lightest client vcrpy stubs,
so the cassette's cost shows) and requests (a heavier client whose own cost
dominates). Printed: cassette load time, bytes per interaction on disk,
microseconds per replayed request, and the ratios, last.

    python benchmarks/bench_http.py            # N = 20, 200, 2000
    python benchmarks/bench_http.py 20 200     # other sizes

Targets (issue 6): >= 100x faster per request than vcrpy at N = 2000;
per-request cost at N = 2000 within 2x of N = 20; load >= 3x faster.
"""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import vcr
from vcr.cassette import Cassette as VcrCassette

from pytest_replay.blobs import BlobStore
from pytest_replay.cassette import Cassette, save_document
from pytest_replay.config import TestSettings
from pytest_replay.context import RecorderContext
from pytest_replay.errors import ReplayError
from pytest_replay.http.section import HttpRecorder
from pytest_replay.modes import Mode

SIZES = (20, 200, 2000)
REPEATS = 3  # best of, for the per-request and load timings
VCR_SAMPLE = 200


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive without 40 ms delayed-ACK stalls

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "items": [1, 2, 3]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def urls(base: str, n: int) -> list[str]:
    return [f"{base}/items/{i}?page={i % 7}&q=item{i}" for i in range(n)]


def _raise(err: ReplayError) -> ReplayError:
    return err


def context(path: Path, mode: Mode, recorded: dict[str, Any] | None) -> RecorderContext:
    return RecorderContext(
        nodeid="bench_http.py::test_n",
        mode=mode,
        run_mode=mode,
        cassette_path=path,
        shown=path.name,
        blobs=BlobStore(path.parent / ".blobs"),
        recorded=recorded,
        settings=TestSettings({}),
        error=_raise,
    )


# --- clients: the same GETs through http.client (keep-alive) and requests ---------------


def via_http_client(targets: list[str]) -> float:
    """Seconds for the GETs over one kept-alive http.client connection (the lightest client)."""
    first = urlsplit(targets[0])
    conn = http.client.HTTPConnection(first.hostname, first.port)
    start = time.perf_counter()
    for url in targets:
        parts = urlsplit(url)
        conn.request("GET", f"{parts.path}?{parts.query}")
        conn.getresponse().read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def via_requests(targets: list[str]) -> float:
    with requests.Session() as session:
        session.trust_env = False  # no proxy lookups through os.environ on every request
        start = time.perf_counter()
        for url in targets:
            session.get(url).content  # noqa: B018 - read the body, as a test would
        return time.perf_counter() - start


CLIENTS = {"http.client": via_http_client, "requests": via_requests}


def sample(targets: list[str]) -> list[str]:
    """At most VCR_SAMPLE evenly spaced targets: vcrpy's cost grows with the position."""
    step = max(1, len(targets) // VCR_SAMPLE)
    return targets[::step]


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- vcrpy ----------------------------------------------------------------------------


def vcr_record(tmp: Path, targets: list[str]) -> Path:
    path = tmp / f"vcr_{len(targets)}.yaml"
    with vcr.VCR(record_mode="once").use_cassette(str(path)):
        via_http_client(targets)
    return path


def vcr_replay(path: Path, targets: list[str], client: Any) -> float:
    """Mean seconds per request; a sample spread over the cassette when N is large."""
    chosen = sample(targets)
    best = float("inf")
    for _ in range(REPEATS):
        with vcr.VCR(record_mode="none").use_cassette(str(path)) as cassette:
            best = min(best, client(chosen) / len(chosen))
            assert cassette.play_count == len(chosen)
    return best


def vcr_load(path: Path) -> float:
    return min(_timed(lambda: VcrCassette.load(path=str(path))) for _ in range(REPEATS))


# --- pytest_replay --------------------------------------------------------------------


def ours_record(tmp: Path, targets: list[str]) -> Path:
    path = tmp / f"ours_{len(targets)}.yaml"
    recorder = HttpRecorder(context(path, Mode.RECORD, None))
    recorder.start()
    try:
        via_http_client(targets)
    finally:
        recorder.close()
    save_document(path, Cassette.new_document("bench_http.py::test_n", recorder.to_yaml()))
    return path


def ours_player(path: Path) -> HttpRecorder:
    """Load the cassette and build the index, as a test's first request would."""
    doc = Cassette.load(path, blobs=BlobStore(path.parent / ".blobs")).doc
    player = HttpRecorder(context(path, Mode.STRICT, doc))
    player._build_index()
    return player


def ours_replay(path: Path, targets: list[str], client: Any) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        player = ours_player(path)
        player.start()
        try:
            best = min(best, client(targets) / len(targets))
        finally:
            player.close()
        assert not player.unused(), "every recorded request is replayed once"
    return best


def ours_load(path: Path) -> float:
    return min(_timed(lambda: ours_player(path)) for _ in range(REPEATS))


def overhead(tmp: Path, rounds: int = 2000) -> dict[str, float]:
    """Microseconds HTTP adds to a test that makes no request, per test."""
    from pytest_replay.http import patching

    path = tmp / "none.yaml"

    def lifecycle(mode: Mode) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            recorder = HttpRecorder(context(path, mode, {}))
            recorder.start()
            recorder.unused()
            recorder.close()
        return (time.perf_counter() - start) / rounds * 1e6

    def watcher() -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            w = patching.ImportWatcher(lambda: None)
            w.install()
            w.uninstall()
        return (time.perf_counter() - start) / rounds * 1e6

    lifecycle(Mode.REPLAY)  # the stubs are built once per process
    return {
        "no client imported yet (import watcher only)": watcher(),
        "replay, clients imported (stubs in and out)": lifecycle(Mode.REPLAY),
        "strict (stubs and the network block)": lifecycle(Mode.STRICT),
    }


def main(sizes: tuple[int, ...]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rows = []
    try:
        with tempfile.TemporaryDirectory() as raw:
            tmp = Path(raw)
            for n in sizes:
                targets = urls(base, n)
                theirs, ours = vcr_record(tmp, targets), ours_record(tmp, targets)
                row: dict[str, Any] = {
                    "n": n,
                    "vcr_load": vcr_load(theirs),
                    "ours_load": ours_load(ours),
                    "vcr_bytes": theirs.stat().st_size / n,
                    "ours_bytes": ours.stat().st_size / n,
                }
                for name, client in CLIENTS.items():
                    row[f"vcr_{name}"] = vcr_replay(theirs, targets, client)
                    row[f"ours_{name}"] = ours_replay(ours, targets, client)
                rows.append(row)
            costs = overhead(tmp)
    finally:
        server.shutdown()
        server.server_close()

    print(f"replaying N distinct GETs from a loopback server's recording (best of {REPEATS};")
    print(f"vcrpy timed on {VCR_SAMPLE} requests spread over the cassette when N is larger)")
    print()
    print(f"{'N':>6}  {'load ms':>17}  {'bytes/interaction':>17}")
    print(f"{'':>6}  {'vcrpy':>8} {'ours':>8}  {'vcrpy':>8} {'ours':>8}")
    for r in rows:
        print(
            f"{r['n']:>6}  {r['vcr_load'] * 1e3:>8.1f} {r['ours_load'] * 1e3:>8.1f}  "
            f"{r['vcr_bytes']:>8.0f} {r['ours_bytes']:>8.0f}"
        )
    for name in CLIENTS:
        print()
        print(f"us/request through {name}")
        print(f"{'N':>6}  {'vcrpy':>10} {'ours':>8} {'ratio':>7}")
        for r in rows:
            theirs, ours = r[f"vcr_{name}"] * 1e6, r[f"ours_{name}"] * 1e6
            print(f"{r['n']:>6}  {theirs:>10.1f} {ours:>8.1f} {theirs / ours:>6.1f}x")
    print()
    print("HTTP's cost for a test that uses replay but makes no request, us per test")
    for what, us in costs.items():
        print(f"  {what:<48} {us:>7.1f}")
    first, last = rows[0], rows[-1]
    print()
    for name in CLIENTS:
        growth = last[f"ours_{name}"] / first[f"ours_{name}"]
        print(f"ours, {name}: us/request at N={last['n']} is {growth:.2f}x that at N={first['n']}")
    print(f"load at N={last['n']}: {last['vcr_load'] / last['ours_load']:.1f}x faster than vcrpy")
    for name in CLIENTS:
        ratio = last[f"vcr_{name}"] / last[f"ours_{name}"]
        print(f"per request at N={last['n']} through {name}: {ratio:.1f}x faster than vcrpy")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
