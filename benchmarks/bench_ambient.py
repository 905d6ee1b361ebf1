"""Benchmark: what ambient determinism costs a test, against the same test without it.

Not a test. Run from the repository root:

    python benchmarks/bench_ambient.py [--sessions N] [--reads N]

(a) the anchor: build and close N record-mode replay sessions with nothing on;
(b) the same with clock="tick", random=True and uuid=True: recording the start
    values, patching, restoring (time-machine and NumPy already imported);
(c) clock reads: time.time() unpatched (anchor) against patched, tick mode;
(d) uuid.uuid4() unpatched (anchor) against patched (one recorded fact each).

Every figure is the best of 3 runs (time.perf_counter); the ratios print last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy  # noqa: F401 - imported up front, as in a test process that uses it
import time_machine  # noqa: F401

from pytest_replay.blobs import BlobStore
from pytest_replay.config import merge_settings
from pytest_replay.diffs import DiffStore
from pytest_replay.modes import Mode
from pytest_replay.session import ReplaySession

REPEATS = 3
ON = {"clock": "tick", "random": True, "uuid": True}


def best(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def session(root: Path, i: int, settings: dict[str, Any]) -> ReplaySession:
    return ReplaySession(
        nodeid=f"test_m.py::test_{i}",
        mode=Mode.RECORD,
        cassette_path=root / f"test_{i}.yaml",
        shown=f"test_{i}.yaml",
        blobs=BlobStore(root / ".blobs"),
        diffs=DiffStore(root / "diffs", "diffs"),
        settings=merge_settings({}, None, settings),
        threshold=4096,
    )


def sessions(root: Path, n: int, settings: dict[str, Any]) -> None:
    for i in range(n):
        session(root, i, settings).close()


def reads(n: int) -> None:
    clock = time.time
    for _ in range(n):
        clock()


def uuids(n: int) -> None:
    make = uuid.uuid4
    for _ in range(n):
        make()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2_000)
    parser.add_argument("--reads", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = args.sessions
        off = best(lambda: sessions(root, n, {}))
        on = best(lambda: sessions(root, n, ON))
        print(f"(a) session, nothing on:        {off / n * 1e6:8.1f} us")
        print(f"(b) session, clock+random+uuid: {on / n * 1e6:8.1f} us")

        m = args.reads
        real_read = best(lambda: reads(m))
        real_uuid = best(lambda: uuids(m // 10))
        live = session(root, n, ON)
        try:
            tick_read = best(lambda: reads(m))
            fact_uuid = best(lambda: uuids(m // 10))
        finally:
            live.close()
        print(
            f"(c) time.time(): real {real_read / m * 1e9:6.0f} ns, "
            f"tick {tick_read / m * 1e9:6.0f} ns"
        )
        print(
            f"(d) uuid4():     real {real_uuid / (m // 10) * 1e9:6.0f} ns, "
            f"fact {fact_uuid / (m // 10) * 1e9:6.0f} ns"
        )
        print(
            f"ratios: session {on / off:.1f}x (+{(on - off) / n * 1e6:.0f} us), "
            f"clock read {tick_read / real_read:.1f}x, uuid4 {fact_uuid / real_uuid:.1f}x"
        )


if __name__ == "__main__":
    main()
