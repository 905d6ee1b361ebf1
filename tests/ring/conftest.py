"""Fixtures for the ring tests: a real CuPy module when a device is visible, and a fake one."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pytest_replay.ring.backend import gpu_unavailable_reason


@pytest.fixture
def gpu() -> Any:
    """The cupy module; skips with the reason when CuPy or a CUDA device is missing."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    import cupy

    return cupy


# Host-to-device copies queued on the fake stream, as cudaMemcpyAsync from pinned
# memory queues them: the source is read when the stream runs, not at set().
_queued: list[tuple[np.ndarray, np.ndarray]] = []
# Shapes of the device arrays whose device was synchronised (Device.synchronize()).
synchronized: list[tuple[int, ...]] = []


def _run_stream() -> None:
    while _queued:
        dst, src = _queued.pop(0)
        np.ndarray.__setitem__(dst, Ellipsis, src)


class _FakeDeviceArray(np.ndarray):
    """A host array that only crosses to NumPy through get()/set(), as CuPy's does.

    set() is asynchronous like CuPy's: a caller that reuses its source buffer
    before synchronising the stream sees the later bytes land on the device.
    """

    def __index__(self) -> int:
        # CuPy arrays define __int__ but not __index__: struct and np.array refuse them.
        raise TypeError("only integer scalar arrays can be converted to a scalar index")

    @property
    def device(self) -> Any:
        synchronized.append(self.shape)
        return types.SimpleNamespace(synchronize=_run_stream)

    def get(self, out: np.ndarray | None = None) -> np.ndarray:
        _run_stream()  # get() waits for the stream
        host = np.asarray(self).copy()
        if out is None:
            return host
        assert out.shape == host.shape and out.dtype == host.dtype, "get(out=) shape/dtype"
        out[...] = host
        return out

    def set(self, src: np.ndarray) -> None:
        assert self.flags.c_contiguous, "set() needs a contiguous destination"
        assert src.shape == self.shape, "set() shape"
        _queued.append((self, src))

    def __setitem__(self, key: Any, value: Any) -> None:
        _run_stream()  # kernels run in stream order, after queued copies
        super().__setitem__(key, value)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _run_stream()  # kernels run in stream order, after queued copies
        plain = [np.asarray(x) if isinstance(x, _FakeDeviceArray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) for o in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        return result.view(_FakeDeviceArray) if isinstance(result, np.ndarray) else result


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A module named ``cupy`` whose arrays live "elsewhere", to drive the device code paths.

    It exercises staging, pinned bounce buffers and get()/set() transfers on
    a machine with no GPU; the gpu-marked tests run the real thing.
    """
    fake = types.SimpleNamespace(
        __name__="cupy",
        ndarray=_FakeDeviceArray,
        uint32=np.uint32,
        uint64=np.uint64,
        int64=np.int64,
        is_available=lambda: True,
        zeros=lambda *a, **k: np.zeros(*a, **k).view(_FakeDeviceArray),
        arange=lambda *a, **k: np.arange(*a, **k).view(_FakeDeviceArray),
        add=np.add,
        asarray=lambda a, dtype=None: np.array(a, dtype=dtype).view(_FakeDeviceArray),
        ascontiguousarray=lambda a: np.ascontiguousarray(a).view(_FakeDeviceArray),
        cuda=types.SimpleNamespace(
            get_current_stream=lambda: types.SimpleNamespace(synchronize=_run_stream)
        ),
    )
    pinned = types.SimpleNamespace(
        __name__="cupyx", empty_pinned=lambda shape, dtype: np.empty(shape, dtype=dtype)
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", pinned)
    yield fake
    _queued.clear()
    synchronized.clear()


# --- a fake CuPy array module, for code written over ``xp`` (compare/arrays.py) ------------


class FakeCupyArray(_FakeDeviceArray):
    """A fake device array that passes for CuPy's: module name, ``device.id``, get()."""

    __module__ = "cupy._core.core"
    device = types.SimpleNamespace(id=0)


class _FakeReductionKernel:
    """Stand-in for the two ``cupy.ReductionKernel``s compare/arrays.py builds, by name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.name = args[6] if len(args) > 6 else kwargs["name"]

    def __call__(self, *args: Any) -> Any:
        host = [np.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        if self.name == "pytest_replay_words_differ":
            a, b = host
            count = np.count_nonzero(a != b)
        elif self.name.startswith("pytest_replay_suspects_"):
            c, r, rtol, atol = host
            real = type(rtol)
            tol = np.abs(r.astype(real)) * rtol + atol
            with np.errstate(all="ignore"):
                excess = np.abs(c.astype(real) - r.astype(real)) - tol
            count = np.count_nonzero(~(excess <= 0))
        else:
            raise AssertionError(f"no stand-in for reduction kernel {self.name!r}")
        return np.asarray(np.int64(count)).view(FakeCupyArray)  # a 0-d device result


class FakeArrayModule(types.ModuleType):
    """NumPy's functions under the name ``cupy``, returning :class:`FakeCupyArray`s."""

    ndarray = FakeCupyArray
    ReductionKernel = _FakeReductionKernel

    def __init__(self) -> None:
        super().__init__("cupy")

    def get_array_module(self, *arrays: Any) -> Any:
        return self if any(isinstance(a, _FakeDeviceArray) for a in arrays) else np

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes (int64, uint8...) and constants

        def on_device(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            return out.view(FakeCupyArray) if isinstance(out, np.ndarray) else out

        return on_device


def install_fake_cupy_arrays(monkeypatch: pytest.MonkeyPatch) -> FakeArrayModule:
    """Put a :class:`FakeArrayModule` in ``sys.modules['cupy']`` for this test."""
    fake = FakeArrayModule()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake
