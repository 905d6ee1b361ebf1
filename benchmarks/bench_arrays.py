"""Benchmark: compare_arrays vs np.allclose / np.array_equal, and on a GPU vs memory bandwidth;
check_array's replay of a .npy blob (checked at setup) vs the read-hash-load-compare it replaced.
"""

# python benchmarks/bench_arrays.py [--mib 256] [--repeat 5] [--gpu-gib 1] [--check]
# Anchors are measured in the same run and the ratios printed last; --check
# exits 1 when a CPU target is missed.

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from pytest_replay import blobs
from pytest_replay.arrays import ArrayChecks
from pytest_replay.blobs import BlobStore
from pytest_replay.canonical import digest
from pytest_replay.compare.arrays import (
    array_to_npy_bytes,
    check_arguments,
    compare_arrays,
    npy_bytes_to_array,
)
from pytest_replay.context import RecorderContext
from pytest_replay.modes import Mode
from pytest_replay.ring import output_digest

NEAR_TARGET = 3.0  # compare_arrays >= 3x faster than np.allclose on nearly-equal data
EXACT_TARGET = 0.5  # compare_arrays >= 50% of np.array_equal's speed on equal data
REPLAY_TARGET = 1.0  # setup check + check_array no slower than the old hash-at-use path
GIB = 1 << 30


def best_of(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    """Fastest of ``repeat`` runs: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def row(label: str, seconds: float, nbytes: int) -> None:
    print(f"  {label:<44} {seconds * 1e3:10.2f} ms  {nbytes / seconds / 1e9:8.2f} GB/s")


def bench_cpu(mib: int, repeat: int) -> tuple[list[str], bool]:
    n = mib * (1 << 20) // 4
    rng = np.random.default_rng(0)
    rec = rng.standard_normal(n, dtype=np.float32)
    # Within float32's default tolerance everywhere, but different in nearly
    # every element: the bytes fast path gives up at the first block.
    near = rec + rec * np.float32(4e-7)
    same = rec.copy()
    assert compare_arrays("bench", rec, near).ok
    assert compare_arrays("bench", rec, same).ok
    assert np.allclose(near, rec, rtol=1.3e-6, atol=1e-5)

    print(f"cpu: {mib} MiB float32 ({n:,} elements) per array, best of {repeat}")
    two = 2 * rec.nbytes  # both operands are read once
    t_allclose = best_of(lambda: np.allclose(near, rec, rtol=1.3e-6, atol=1e-5), repeat)
    row("np.allclose, nearly equal (anchor)", t_allclose, two)
    t_near = best_of(lambda: compare_arrays("bench", rec, near), repeat)
    row("compare_arrays, nearly equal", t_near, two)
    t_equal = best_of(lambda: np.array_equal(rec, same), repeat)
    row("np.array_equal, equal (anchor)", t_equal, two)
    t_exact = best_of(lambda: compare_arrays("bench", rec, same), repeat)
    row("compare_arrays, equal", t_exact, two)

    near_ratio = t_allclose / t_near
    exact_ratio = t_equal / t_exact
    ok = near_ratio >= NEAR_TARGET and exact_ratio >= EXACT_TARGET
    return [
        f"ratio near-equal: compare_arrays {near_ratio:.2f}x faster than np.allclose "
        f"(target >= {NEAR_TARGET:g}x): {'met' if near_ratio >= NEAR_TARGET else 'MISSED'}",
        f"ratio exact: compare_arrays at {exact_ratio:.0%} of np.array_equal's speed "
        f"(target >= {EXACT_TARGET:.0%}): {'met' if exact_ratio >= EXACT_TARGET else 'MISSED'}",
    ], ok


def replay_times(n: int, repeat: int) -> tuple[float, float, float]:
    """A replayed check_array of one recorded array of ``n`` float32, blob on disk.

    Anchor: what check_array did before blobs were checked at setup (check
    its arguments, read the blob, blake3 it on one thread, load it, compare). Now: the setup check
    (BlobStore.verify: the file mapped and hashed, on all cores when large)
    then check_array, which reads the blob straight into the array without
    hashing it again; and, for a blob this run already checked (another test
    using it), the setup check is one stat.
    """
    array = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = BlobStore(root, ".blobs")
        name = store.put(array_to_npy_bytes(array), "npy")
        store.flush()
        path = store.path_for(name)
        # A file changed in the last _RACY_NS is checked at every use; a
        # committed blob is older than that.
        wait = blobs._RACY_NS / 1e9 - (time.time() - path.stat().st_ctime)
        if wait > 0:
            time.sleep(wait + 0.05)
        entry = {"name": "a", "ordinal": 0, "blob": name, "shape": [n], "dtype": "float32"}
        ctx = RecorderContext(
            nodeid="bench.py::test_a",
            mode=Mode.STRICT,
            run_mode=Mode.STRICT,
            cassette_path=root / "test_a.yaml",
            shown="test_a.yaml",
            blobs=store,
            recorded={"arrays": [entry]},
            settings={},
            error=lambda err: err,
        )

        def before() -> None:
            check_arguments("a", array, rtol=None, atol=None, max_mismatch=0, ulp=None)
            data = path.read_bytes()
            assert digest(data) == name.split(".")[0]
            assert compare_arrays("a", npy_bytes_to_array(data), array).ok

        def replay(forget: bool) -> None:
            if forget:
                blobs._VERIFIED.clear()  # the first test of a run to use this blob
            checks = ArrayChecks(ctx)  # setup: BlobStore.verify
            checks.check_array("a", array)

        return (
            best_of(before, repeat),
            best_of(lambda: replay(True), repeat),
            best_of(lambda: replay(False), repeat),
        )


def bench_replay(mib: int, repeat: int) -> tuple[list[str], bool]:
    n = mib * (1 << 20) // 4
    print(f"check_array replay: {mib} MiB float32 blob, best of {repeat}")
    t_before, t_first, t_again = replay_times(n, repeat)
    row("read + blake3 + load + compare (anchor)", t_before, 4 * n)
    row("setup check + check_array, first use", t_first, 4 * n)
    row("setup check + check_array, blob known", t_again, 4 * n)
    small = 4096
    print(f"check_array replay: {4 * small // 1024} KiB float32 blob, best of {repeat * 200}")
    s_before, s_first, s_again = replay_times(small, repeat * 200)
    for label, seconds in (
        ("read + blake3 + load + compare (anchor)", s_before),
        ("setup check + check_array, first use", s_first),
        ("setup check + check_array, blob known", s_again),
    ):
        print(f"  {label:<44} {seconds * 1e6:10.1f} us")
    ratio = t_before / t_first
    ok = ratio >= REPLAY_TARGET
    return [
        f"ratio check_array replay {mib} MiB: setup check + check_array at {ratio:.2f}x the "
        f"speed of the old hash-at-use path (target >= {REPLAY_TARGET:g}x): "
        f"{'met' if ok else 'MISSED'}; {t_before / t_again:.2f}x for a blob this run already "
        "checked",
        f"ratio check_array replay {4 * small // 1024} KiB: {s_before / s_first:.2f}x first use, "
        f"{s_before / s_again:.2f}x blob known (per-call overhead, no target)",
    ], ok


def gpu_module() -> Any | None:
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # not installed, or no driver/device behind it
        print(f"gpu: skipped ({type(exc).__name__}: {exc})")
        return None
    if count == 0:
        print("gpu: skipped (CuPy sees no CUDA device)")
        return None
    return cupy


def peak_bandwidth(cupy: Any) -> float | None:
    """Bytes/s the device's memory can move: 2 transfers a clock x bus width."""
    dev = cupy.cuda.Device().id
    props = cupy.cuda.runtime.getDeviceProperties(dev)
    clock_khz, bus_bits = props.get("memoryClockRate"), props.get("memoryBusWidth")
    if not clock_khz or not bus_bits:
        # CUDA 13 dropped these fields from cudaDeviceProp; the attributes remain.
        try:
            clock_khz = cupy.cuda.runtime.deviceGetAttribute(36, dev)  # MemoryClockRate
            bus_bits = cupy.cuda.runtime.deviceGetAttribute(37, dev)  # GlobalMemoryBusWidth
        except Exception:
            return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8


def bench_gpu(cupy: Any, gib: int, repeat: int) -> list[str]:
    n = gib * GIB // 4
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    peak = peak_bandwidth(cupy)
    sync = cupy.cuda.Device().synchronize
    rec = cupy.random.default_rng(0).standard_normal(n, dtype=cupy.float32)
    near = rec + rec * cupy.float32(4e-7)
    same = rec.copy()
    # The recorded array lives on the host in real use; here it is put on the
    # device beforehand so that the timing is the comparison, not the upload.
    small = cupy.arange(1024, dtype=cupy.float32)
    compare_arrays("warm", small, small * cupy.float32(1 + 1e-7))  # compile kernels
    assert compare_arrays("bench", rec, near).ok
    assert compare_arrays("bench", rec, same).ok

    peak_text = f"{peak / 1e9:.0f} GB/s" if peak else "unknown"
    print(f"gpu: {name}, {gib} GiB float32 per array, peak memory bandwidth {peak_text}")
    two = 2 * rec.nbytes
    t_near = best_of(lambda: compare_arrays("bench", rec, near), repeat, sync)
    row("compare_arrays on device, nearly equal", t_near, two)
    t_exact = best_of(lambda: compare_arrays("bench", rec, same), repeat, sync)
    row("compare_arrays on device, equal", t_exact, two)
    t_equal = best_of(lambda: bool(cupy.array_equal(rec, same)), repeat, sync)
    row("cupy.array_equal, equal (reference)", t_equal, two)
    # What a replay does: the recorded array comes from a .npy blob on the host.
    rec_host = rec.get()
    t_upload = best_of(lambda: compare_arrays("bench", rec_host, near), repeat, sync)
    row("compare_arrays, recorded on host (+ upload)", t_upload, two)

    # blake3 runs on the host: the digest of a device array is a device-to-host
    # copy (into pinned memory, reused) plus a multithreaded hash.
    pinned = cupy.cuda.alloc_pinned_memory(rec.nbytes)
    host = np.frombuffer(pinned, dtype=np.uint8, count=rec.nbytes)
    t_copy = best_of(lambda: rec.view(cupy.uint8).get(out=host), repeat, sync)
    row("device-to-host copy into pinned memory", t_copy, rec.nbytes)
    t_hash = best_of(lambda: blake3.blake3(host, max_threads=blake3.blake3.AUTO).digest(), repeat)
    row("blake3 of the host copy (all threads)", t_hash, rec.nbytes)
    row("pinned copy + blake3 (a lower bound)", t_copy + t_hash, rec.nbytes)
    # What ring.complete(output=a) runs: get() into fresh pageable memory + blake3.
    t_digest = best_of(lambda: output_digest(rec), repeat, sync)
    row("output_digest (what complete() runs)", t_digest, rec.nbytes)

    lines = []
    if peak:
        for label, seconds, nbytes in (
            ("gpu compare near-equal", t_near, two),
            ("gpu compare equal", t_exact, two),
            ("gpu digest (output_digest)", t_digest, rec.nbytes),
        ):
            lines.append(
                f"ratio {label}: {nbytes / seconds / 1e9:.0f} GB/s = "
                f"{nbytes / seconds / peak:.0%} of device memory bandwidth"
            )
    else:
        lines.append("ratio gpu: device memory bandwidth unknown; see GB/s above")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="CPU array size (default 256)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (best counts)")
    parser.add_argument("--gpu-gib", type=int, default=1, help="GPU array size (default 1)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a CPU target is missed")
    args = parser.parse_args(argv)

    ratios, ok = bench_cpu(args.mib, args.repeat)
    replay_ratios, replay_ok = bench_replay(args.mib, args.repeat)
    ratios += replay_ratios
    ok = ok and replay_ok
    cupy = gpu_module()
    if cupy is not None:
        ratios += bench_gpu(cupy, args.gpu_gib, args.repeat)
    print()
    for line in ratios:
        print(line)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
