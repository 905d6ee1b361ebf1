"""Array-module selection (CuPy on a device, else NumPy) and host/device copies and digests."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from pytest_replay.ring.log import digest_bytes, digest_hex


@functools.lru_cache(maxsize=1)
def _default_module() -> ModuleType:
    try:
        import cupy
    except Exception:  # not installed, or installed without a usable CUDA runtime
        return np
    try:
        return cupy if cupy.is_available() else np
    except Exception:
        return np


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """Why CuPy cannot run on a device here, or None when it can (asked once)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'pytest-replay-cassettes[gpu]')"
    except Exception as exc:  # installed, but its CUDA libraries fail to load
        return f"CuPy cannot be imported: {type(exc).__name__}: {exc}"
    try:
        available = cupy.is_available()
    except Exception as exc:  # a broken CUDA install raises instead of answering
        return f"CuPy cannot query CUDA: {exc}"
    return None if available else "CuPy sees no CUDA device"


def array_module(xp: ModuleType | str | None = None) -> ModuleType:
    """The array module a ring uses: ``xp`` if given, else CuPy when it sees a device."""
    if xp is None:
        return _default_module()
    if isinstance(xp, str):
        if xp == "numpy":
            return np
        if xp == "cupy":
            import cupy

            return cupy
        raise ValueError(f"unknown array module {xp!r}; use 'numpy' or 'cupy'")
    return xp


def is_device(xp: ModuleType) -> bool:
    """True when arrays of ``xp`` live outside host memory (CuPy)."""
    return xp is not np and getattr(xp, "__name__", "") == "cupy"


def is_device_array(array: Any) -> bool:
    """True for a CuPy array (decided without importing CuPy)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(array, cupy.ndarray)


def module_of(array: Any) -> ModuleType:
    """NumPy or CuPy, whichever owns ``array``."""
    return sys.modules["cupy"] if is_device_array(array) else np


_CACHE_LINE = 64


def aligned_empty(shape: tuple[int, ...], dtype: Any, file_offset: int = 0) -> np.ndarray:
    """An uninitialised host array whose data shares ``file_offset``'s cache-line phase.

    Writing a buffer to a file is about twice as fast when the source address
    and the file offset agree modulo the cache line, and ring records sit at
    file offset 32 + 64*i.
    """
    return _placed(np.empty, shape, dtype, file_offset)


def zeros(xp: ModuleType, shape: tuple[int, ...], dtype: Any, file_offset: int = 0) -> Any:
    """A zeroed ``xp`` array; on the host placed as aligned_empty places it.

    Host memory comes from calloc, so a large table's pages are zero-filled
    by the OS when first written rather than all at once here: a ring of
    capacity 1M that takes a hundred publishes costs only the pages it uses.
    """
    if is_device(xp):
        table = xp.zeros(shape, dtype=dtype)
        # The zeroing kernel runs on the stream current now; publishes may run on
        # another (a non-blocking one the test enters later) and must not race it.
        synchronize_device(table)
        return table
    return _placed(np.zeros, shape, dtype, file_offset)


def _placed(
    allocate: Callable[..., np.ndarray], shape: tuple[int, ...], dtype: Any, file_offset: int
) -> np.ndarray:
    """A host array from ``allocate`` (np.empty or np.zeros) at ``file_offset``'s phase."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = allocate(nbytes + _CACHE_LINE, dtype=np.uint8)
    skip = (file_offset - raw.ctypes.data) % _CACHE_LINE
    return raw[skip : skip + nbytes].view(dtype).reshape(shape)


def host_empty(xp: ModuleType, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A host array for staging copies; page-locked on CuPy so transfers can use DMA."""
    if is_device(xp):
        import cupyx

        return cupyx.empty_pinned(shape, dtype=dtype)
    return np.empty(shape, dtype=dtype)


def copy_to_device(dst: Any, src: np.ndarray) -> None:
    """Copy host ``src`` into the contiguous device (or host) view ``dst``."""
    if is_device_array(dst):
        dst.set(src)
        # set() copies asynchronously on the current stream (always in recent CuPy,
        # on any non-default stream before): wait, so the caller may reuse ``src``
        # (the ring's pinned staging rows are refilled by the next publish).
        sys.modules["cupy"].cuda.get_current_stream().synchronize()
    else:
        dst[...] = src


def synchronize_device(array: Any) -> None:
    """Wait for all work queued on a CuPy array's device, on every stream; no-op on NumPy.

    Ring kernels run on whatever stream is current at each call, and get()
    orders only against the current stream: a test that publishes inside
    ``with cupy.cuda.Stream(non_blocking=True):`` and drains outside it would
    otherwise read rows before the fill has written them.
    """
    if is_device_array(array):
        array.device.synchronize()


def copy_to_host(dst: np.ndarray, src: Any, bounce: np.ndarray | None = None) -> None:
    """Copy ``src`` into host ``dst`` (same shape), through the pinned ``bounce`` rows if given."""
    if not is_device_array(src):
        dst[...] = src
        return
    synchronize_device(src)
    if bounce is None:
        src.get(out=dst)
        return
    step = len(bounce)
    for start in range(0, len(src), step):
        stop = min(start + step, len(src))
        part = bounce[: stop - start]
        src[start:stop].get(out=part)
        dst[start:stop] = part


def to_host(array: Any) -> np.ndarray:
    """``array`` as a NumPy array; a CuPy array is copied device -> host."""
    if is_device_array(array):
        return array.get()
    return np.asarray(array)


def host_bytes(data: Any) -> memoryview:
    """The C-order bytes of ``data`` as a host buffer.

    NumPy arrays that are already C-contiguous are not copied; CuPy arrays
    are copied to the host in full, because blake3 runs on the CPU.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    array = to_host(data)
    if array.dtype.hasobject:
        raise TypeError(f"cannot digest an array of dtype {array.dtype} (it holds Python objects)")
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def output_digest(data: Any) -> int:
    """The VRRL output digest of bytes or an array (NumPy or CuPy): blake3's first 8 bytes, LE."""
    return digest_bytes(host_bytes(data))


def hex_digest(data: Any) -> str:
    """Full blake3 hex digest of bytes or an array's C-order host bytes."""
    return digest_hex(host_bytes(data))
