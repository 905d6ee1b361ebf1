"""Benchmark: load a 100k-fact cassette and replay its facts; compare with a dict.

Not a test. Run from the repository root:

    python benchmarks/bench_facts.py [--facts N]

(a) record N facts with a FactLog and save them as a cassette in a temp dir;
(b) time loading it (Cassette.load + FactLog in replay mode), target < 1 s;
(c) time replaying all N facts through FactLog.fact, target >= 300k facts/s;
(d) the anchor, measured in the same run: a plain dict lookup of the same keys.

Half the facts are distinct keys with one value each; the other half are a
few keys called many times (sequences: the k-th call gets the k-th value).
Every figure is the best of 3 runs (time.perf_counter).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_replay.blobs import BlobStore
from pytest_replay.cassette import Cassette, parse_document, save_document
from pytest_replay.config import DEFAULT_BLOB_THRESHOLD
from pytest_replay.facts import FactLog
from pytest_replay.modes import Mode

REPEATS = 3
SEQUENCE_KEYS = 5
LOAD_TARGET_S = 1.0
REPLAY_TARGET = 300_000


def make_calls(n: int) -> list[tuple[str, Any]]:
    """(key, value) in call order: n/2 distinct keys, n/2 calls over a few keys."""
    distinct = n // 2
    calls: list[tuple[str, Any]] = []
    for i in range(distinct):
        kind = i % 3
        if kind == 0:
            value: Any = i
        elif kind == 1:
            value = f"value-{i}"
        else:
            value = {"id": i, "price": round(i * 0.01, 2), "ok": True}
        calls.append((f"http:GET /items/{i}", value))
    for j in range(n - distinct):
        calls.append((f"clock:tick/{j % SEQUENCE_KEYS}", 1_700_000_000_000 + j))
    return calls


def _never() -> Any:
    raise AssertionError("replay called the live function")


def new_log(mode: Mode, blobs: BlobStore, recorded: Any = None) -> FactLog:
    return FactLog(
        mode=mode,
        blobs=blobs,
        threshold=DEFAULT_BLOB_THRESHOLD,
        retryable=False,
        recorded=recorded,
    )


def best_of(fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(REPEATS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=100_000)
    n = parser.parse_args().facts
    calls = make_calls(n)
    keys = [key for key, _ in calls]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blobs = BlobStore(root / ".blobs")
        path = root / "bench.yaml"

        # (a) record and save
        t0 = time.perf_counter()
        log = new_log(Mode.RECORD, blobs)
        for key, value in calls:
            log.fact(key, lambda v=value: v)
        save_document(path, Cassette.new_document("bench::facts", log.to_yaml()))
        record_s = time.perf_counter() - t0
        size = path.stat().st_size

        # (b) load: parse the YAML, then build the fact index and payload table
        def load_once() -> float:
            t = time.perf_counter()
            cassette = Cassette.load(path, blobs=blobs)
            new_log(Mode.REPLAY, blobs, cassette.doc)
            return time.perf_counter() - t

        load_s = best_of(load_once)
        data = path.read_bytes()

        def parse_once() -> float:
            t = time.perf_counter()
            parse_document(data, path, str(path))
            return time.perf_counter() - t

        parse_s = best_of(parse_once)
        recorded = Cassette.load(path, blobs=blobs).doc

        # (c) replay every fact, in call order, through FactLog.fact
        def replay_once() -> float:
            replaying = new_log(Mode.REPLAY, blobs, recorded)
            fact = replaying.fact
            t = time.perf_counter()
            for key in keys:
                fact(key, _never)
            elapsed = time.perf_counter() - t
            assert replaying.served == n and not replaying.unused()
            return elapsed

        replay_s = best_of(replay_once)

        # check once that replay serves the recorded values, in order
        check = new_log(Mode.REPLAY, blobs, recorded)
        assert all(check.fact(key, _never) == value for key, value in calls)

    # (d) anchor: a plain dict lookup of the same keys
    table = dict(calls)

    def dict_once() -> float:
        get = table.__getitem__
        t = time.perf_counter()
        for key in keys:
            get(key)
        return time.perf_counter() - t

    dict_s = best_of(dict_once)

    rate = n / replay_s
    print(f"facts: {n} ({n // 2} distinct keys, {n - n // 2} calls over {SEQUENCE_KEYS} keys)")
    print(f"record + save: {record_s:.3f} s, cassette {size / 1e6:.1f} MB")
    verdict = "ok" if load_s < LOAD_TARGET_S else "SLOW"
    print(f"load:   {load_s:.3f} s  (target < {LOAD_TARGET_S:.0f} s: {verdict})")
    print(
        f"  of which YAML parse {parse_s:.3f} s, fact and payload tables {load_s - parse_s:.3f} s"
    )
    verdict = "ok" if rate >= REPLAY_TARGET else "SLOW"
    target = f"target >= {REPLAY_TARGET:,}: {verdict}"
    print(f"replay: {rate:,.0f} facts/s, {replay_s:.3f} s  ({target})")
    print(f"dict:   {n / dict_s:,.0f} lookups/s, {dict_s:.4f} s  (anchor, same run)")
    print(f"ratio replay/dict: {replay_s / dict_s:.1f}x the time of a dict lookup")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
