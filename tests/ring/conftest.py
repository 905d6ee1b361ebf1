"""Fixtures for the ring tests: a real CuPy module when a device is visible, and a fake one."""

from __future__ import annotations

import sys
import types
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


class _FakeDeviceArray(np.ndarray):
    """A host array that only crosses to NumPy through get()/set(), as CuPy's does."""

    def get(self, out: np.ndarray | None = None) -> np.ndarray:
        host = np.asarray(self).copy()
        if out is None:
            return host
        assert out.shape == host.shape and out.dtype == host.dtype, "get(out=) shape/dtype"
        out[...] = host
        return out

    def set(self, src: np.ndarray) -> None:
        assert self.flags.c_contiguous, "set() needs a contiguous destination"
        self[...] = src


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> Any:
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
        asarray=lambda a, dtype=None: np.array(a, dtype=dtype).view(_FakeDeviceArray),
        ascontiguousarray=lambda a: np.ascontiguousarray(a).view(_FakeDeviceArray),
    )
    pinned = types.SimpleNamespace(
        __name__="cupyx", empty_pinned=lambda shape, dtype: np.empty(shape, dtype=dtype)
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", pinned)
    return fake
