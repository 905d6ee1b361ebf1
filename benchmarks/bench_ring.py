"""Ring recorder throughput against ndarray.tofile of the same bytes, measured in one run.

    python benchmarks/bench_ring.py [--n 1000000] [--xp numpy|cupy] [--repeat 11]

Prints publish_many + write_log time for n records next to ``tofile`` of the
same 64-byte records (the anchor), the single-publish rate, reading the log,
the replay diff and the output-digest cost, and last the anchor and the
ratio.  The anchor and the ring runs alternate, so both see the same machine
load; each line gives the best run and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pytest_replay.ring import (
    MAX_RECORDS,
    RingRecorder,
    array_module,
    diff_streams,
    output_digest,
    read_records,
)
from pytest_replay.ring.backend import is_device

# A case is (setup, timed): setup() runs untimed and its result goes to timed().
Case = tuple[Callable[[], Any], Callable[[Any], Any]]


def alternate(repeat: int, cases: dict[str, Case], sync: Callable[[], None]) -> dict[str, list]:
    """Run every case once per round, ``repeat`` rounds; seconds per case, sorted."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (setup, timed) in cases.items():
            state = setup()
            sync()
            start = time.perf_counter()
            timed(state)
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t) for name, t in times.items()}


def line(label: str, t: list[float], mib: float | None = None) -> str:
    text = f"{label:34s} best {t[0] * 1e3:7.1f} ms  median {statistics.median(t) * 1e3:7.1f} ms"
    if mib is not None:
        text += f"  ({mib / t[0]:6.0f} MiB/s best)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="records to publish")
    parser.add_argument("--xp", choices=["numpy", "cupy"], default=None, help="array module")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--singles", type=int, default=300_000, help="single publishes to time")
    parser.add_argument("--dir", default=None, help="where to write the logs (default: a tmpdir)")
    opts = parser.parse_args()
    xp = array_module(opts.xp)
    n = opts.n
    capacity = min(n, MAX_RECORDS)
    mib = n * 64 / 2**20

    def sync() -> None:
        if is_device(xp):
            xp.cuda.Device().synchronize()

    rng = np.random.default_rng(0)
    opcodes = xp.asarray(rng.integers(0, 2**32, n, dtype=np.uint32))
    tenants = xp.asarray(rng.integers(0, 16, n, dtype=np.uint32))
    args = xp.asarray(rng.integers(0, 2**32, (n, 4), dtype=np.uint32))

    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        ours_path = Path(tmp, "bench.ring.vrrl")
        anchor_path = Path(tmp, "anchor.bin")
        print(f"array module: {xp.__name__}; {n} records ({mib:.1f} MiB), capacity {capacity}")

        def fresh_ring() -> RingRecorder:
            if ours_path.exists():
                os.unlink(ours_path)
            return RingRecorder("bench", capacity, xp)

        def publish_and_write(ring: RingRecorder) -> None:
            ring.publish_many(opcodes, tenants, args)
            ring.write_log(ours_path)

        ring = fresh_ring()
        publish_and_write(ring)
        stream = ring.stream()

        def no_anchor_file() -> None:
            if anchor_path.exists():
                os.unlink(anchor_path)

        # The ring is made before the clock starts, as replay.ring() runs at the
        # top of a test; making it (allocating and zeroing the slot table) is
        # timed on its own and in the end-to-end line.
        t = alternate(
            opts.repeat,
            {
                "anchor": (no_anchor_file, lambda _: stream.tofile(anchor_path)),
                "ours": (fresh_ring, publish_and_write),
                "publish": (fresh_ring, lambda r: r.publish_many(opcodes, tenants, args)),
                "make": (lambda: None, lambda _: fresh_ring()),
                "total": (lambda: None, lambda _: publish_and_write(fresh_ring())),
            },
            sync,
        )
        print(line("make the ring (slot table):", t["make"]))
        print(line("publish_many:", t["publish"]))
        print(line("publish_many + write_log:", t["ours"], mib))
        print(line("make + publish_many + write_log:", t["total"], mib)
              + f"  {t['anchor'][0] / t['total'][0]:.2f} of tofile")  # fmt: skip

        # Single publishes: a ring small enough to wrap and drain as it goes.
        single = RingRecorder("single", min(65536, capacity), xp)
        publish = single.publish
        count = opts.singles
        sync()
        start = time.perf_counter()
        for i in range(count):
            publish(7, 3, (i, 1, 2, 3))
        single.drain()
        sync()
        rate = count / (time.perf_counter() - start)
        print(f"{'single publish:':34s} {rate / 1e3:7.0f} k/s (target >= 200 k/s)")

        recorded = read_records(ours_path)
        current = ring.stream()
        changed = current.copy()
        changed["opcode"][n // 2 :: 1000] += 1
        n_bad = len(changed[n // 2 :: 1000])
        # blake3 runs on the CPU: a device array is copied to the host first.
        out = xp.asarray(rng.standard_normal(n * 16, dtype=np.float32))
        nothing = lambda: None  # noqa: E731
        r = alternate(
            opts.repeat,
            {
                "read": (nothing, lambda _: read_records(ours_path)),
                "diff": (nothing, lambda _: diff_streams(recorded, current, "bench")),
                "diff_bad": (nothing, lambda _: diff_streams(recorded, changed, "bench")),
                "digest": (nothing, lambda _: output_digest(out)),
            },
            sync,
        )
        print(line("read_records of the log:", r["read"], mib))
        print(line("diff_streams, equal:", r["diff"]))
        print(line(f"diff_streams, {n_bad} records differ:", r["diff_bad"]))
        where = "device->host copy + blake3" if is_device(xp) else "blake3, host memory"
        print(line(f"output_digest {mib:.0f} MiB ({where}):", r["digest"], mib))

        print(line(f"anchor: ndarray.tofile of {mib:.1f} MiB:", t["anchor"], mib))
        print(
            "ratio: publish_many + write_log bandwidth / tofile bandwidth = "
            f"{t['anchor'][0] / t['ours'][0]:.2f} best, "
            f"{statistics.median(t['anchor']) / statistics.median(t['ours']):.2f} median "
            "(target >= 0.50)"
        )


if __name__ == "__main__":
    main()
