"""The blob store: digests checked on read and at setup, each file hashed once per run."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_replay import blobs
from pytest_replay.blobs import BlobStore
from pytest_replay.errors import BlobError


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the inputs hashed, in order (blobs._hasher wrapped)."""
    seen: list[int] = []
    real = blobs._hasher

    def counting(size: int):  # type: ignore[no-untyped-def]
        seen.append(size)
        return real(size)

    monkeypatch.setattr(blobs, "_hasher", counting)
    monkeypatch.setattr(blobs, "_VERIFIED", {})
    return seen


def stored(root: Path, data: bytes, ext: str = "npy") -> tuple[BlobStore, str]:
    store = BlobStore(root, "cassettes/.blobs")
    name = store.put(data, ext)
    store.flush()
    return store, name


def test_a_blob_checked_at_setup_is_not_hashed_again_when_read(tmp_path, hashes, monkeypatch):
    monkeypatch.setattr(blobs, "_RACY_NS", 0)  # the file counts as settled at once
    data = os.urandom(3 << 20)
    store, name = stored(tmp_path, data)
    hashes.clear()
    store.verify(name)
    assert hashes == [len(data)]
    assert store.get(name) == data
    assert BlobStore(tmp_path).get(name) == data  # another test's store: still known
    BlobStore(tmp_path).verify(name)
    assert hashes == [len(data)]


def test_a_blob_changed_after_its_check_is_hashed_again_and_fails(tmp_path, hashes, monkeypatch):
    monkeypatch.setattr(blobs, "_RACY_NS", 0)
    data = b"x" * 5000
    store, name = stored(tmp_path, data)
    store.verify(name)
    path = tmp_path / name
    # In place, same size (the times moved on by hand: this test does not wait a tick) ...
    with open(path, "r+b") as fh:
        fh.write(b"y")
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1))
    # (bytes kept from the check are served as checked: read from the file anew)
    with pytest.raises(BlobError, match="does not match its digest"):
        BlobStore(tmp_path).get(name)
    # ... and replaced by another file, as git checkout does.
    path.write_bytes(data)
    store.verify(name)
    (tmp_path / "other").write_bytes(b"z" * 5000)
    os.replace(tmp_path / "other", path)
    with pytest.raises(BlobError, match="does not match its digest"):
        store.verify(name)


def test_open_reads_a_large_checked_blob_from_the_file_and_checks_any_other(
    tmp_path, hashes, monkeypatch
):
    monkeypatch.setattr(blobs, "_RACY_NS", 0)
    large, small = os.urandom(blobs._LARGE_BYTES), b"s" * 100
    store, big = stored(tmp_path, large)
    _, little = stored(tmp_path, small)
    hashes.clear()
    with store.open(big) as fh:  # not checked yet: read and hashed
        assert isinstance(fh, io.BytesIO) and fh.read() == large
    with store.open(big) as fh:  # checked and unchanged: the file itself, no hash
        assert isinstance(fh, io.BufferedReader) and fh.read() == large
    assert hashes == [len(large)]
    store.verify(little)
    (tmp_path / little).unlink()  # its bytes were kept by the check
    with store.open(little) as fh:
        assert fh.read() == small
    with pytest.raises(BlobError, match="cannot be read"):
        store.open(little)  # kept for one read only
    (tmp_path / "other").write_bytes(b"x" * len(large))
    os.replace(tmp_path / "other", tmp_path / big)  # another file: its stamp differs
    with pytest.raises(BlobError, match="does not match its digest"):
        store.open(big)


def test_a_blob_changed_this_very_moment_is_checked_every_time(tmp_path, hashes):
    # Its times may not move on a write in the same clock tick: not remembered.
    store, name = stored(tmp_path, b"a" * 100)
    hashes.clear()
    store.verify(name)
    store.get(name)  # the bytes the check read: not hashed again
    assert hashes == [100]
    store.get(name)  # read anew: hashed, as the file was not remembered
    assert hashes == [100, 100]


def test_verify_names_a_missing_blob_and_passes_a_staged_one(tmp_path, hashes):
    store = BlobStore(tmp_path, "cassettes/.blobs")
    staged = store.put(b"not written yet", "bin")
    store.verify(staged)
    name = "0" * 64 + ".npy"
    with pytest.raises(BlobError, match="cannot be read") as info:
        store.verify(name)
    assert info.value.place == f"cassettes/.blobs/{name}"
    assert "commit the .blobs directory" in (info.value.fix or "")
    with pytest.raises(BlobError, match="is not '<64 hex digits>"):
        store.verify("../secret.npy")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.binary(max_size=3000), bad=st.binary(max_size=3000))
def test_verify_and_get_accept_exactly_the_bytes_named(tmp_path, good, bad):
    store, name = stored(tmp_path, good, "bin")
    (tmp_path / name).write_bytes(bad)
    if bad == good:
        store.verify(name)
        assert store.get(name) == good
    else:
        with pytest.raises(BlobError, match="does not match its digest"):
            store.verify(name)
        with pytest.raises(BlobError, match="does not match its digest"):
            store.get(name)
