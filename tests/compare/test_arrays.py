"""Tests for the array comparator: tolerances, NaN/inf, ULPs, blocks, messages, .npy blobs, CuPy."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_replay.compare import arrays
from pytest_replay.compare.arrays import (
    DEFAULT_TOLERANCES,
    KIND,
    array_to_npy_bytes,
    compare_arrays,
    default_tolerances,
    npy_bytes_to_array,
)
from pytest_replay.ring import backend
from tests.ring.conftest import FakeCupyArray, install_fake_cupy_arrays


@contextlib.contextmanager
def small_blocks(nbytes: int = 64) -> Iterator[None]:
    """Shrink the CPU block so small arrays cross many block boundaries."""
    saved = arrays._CPU_BLOCK_BYTES
    arrays._CPU_BLOCK_BYTES = nbytes
    try:
        yield
    finally:
        arrays._CPU_BLOCK_BYTES = saved


def strict_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, allow_nan=False, sort_keys=True)


# --- the straightforward reference the comparator must agree with -------------------------


def reference_mismatches(
    rec: np.ndarray, cur: np.ndarray, rtol: float, atol: float, equal_nan: bool = True
) -> np.ndarray:
    """Element-wise failure mask, written the obvious (full-size temporaries) way."""
    compute = np.float32 if rec.dtype == np.float16 else rec.dtype
    r, c = rec.astype(compute), cur.astype(compute)
    real = np.finfo(compute).dtype.type
    with np.errstate(all="ignore"):
        close = np.abs(c - r) <= real(atol) + real(rtol) * np.abs(r)
    rnan, cnan = np.isnan(r), np.isnan(c)
    inf = np.isinf(r) | np.isinf(c)
    ok = np.where(rnan | cnan, rnan & cnan & equal_nan, np.where(inf, c == r, close))
    return ~ok


def reference_ulp(a: float, b: float, width: int) -> int:
    """ULP distance from sign-magnitude bits, one pair at a time, in Python ints."""
    fmt, ifmt = {2: ("e", "H"), 4: ("f", "I"), 8: ("d", "Q")}[width]
    sign = 1 << (8 * width - 1)

    def line(x: float) -> int:
        (bits,) = struct.unpack(ifmt, struct.pack(fmt, x))
        return -(bits & (sign - 1)) if bits & sign else bits

    return abs(line(a) - line(b))


# --- defaults per dtype ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float16, (1e-3, 1e-5)),
        (np.float32, (1.3e-6, 1e-5)),
        (np.float64, (1e-7, 1e-7)),
        (np.complex64, (1.3e-6, 1e-5)),
        (np.complex128, (1e-7, 1e-7)),
        (np.int8, (0.0, 0.0)),
        (np.uint64, (0.0, 0.0)),
        (np.bool_, (0.0, 0.0)),
    ],
)
def test_default_tolerances_follow_torch(dtype: Any, expected: tuple[float, float]) -> None:
    assert default_tolerances(dtype) == expected


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64, np.complex128])
def test_default_tolerance_boundary_per_float_dtype(dtype: Any) -> None:
    rtol, atol = default_tolerances(dtype)
    rec = np.full(8, 2.0, dtype=dtype)
    inside = rec + np.asarray(0.5 * (atol + rtol * 2.0), dtype=dtype)
    outside = rec.copy()
    outside[5] = rec[5] + np.asarray(4 * (atol + rtol * 2.0), dtype=dtype)
    assert compare_arrays("x", rec, inside).ok
    res = compare_arrays("x", rec, outside)
    assert not res.ok
    assert res.kind == KIND
    assert res.payload["mismatches"] == 1
    assert res.place == "array 'x' index (5,)"
    assert f"defaults for {np.dtype(dtype).name}" in "\n".join(res.details)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64])
def test_integers_compare_exactly_by_default(dtype: Any) -> None:
    rec = np.arange(10, dtype=dtype)
    cur = rec.copy()
    cur[7] += 1
    assert compare_arrays("i", rec, rec.copy()).ok
    res = compare_arrays("i", rec, cur)
    assert not res.ok
    assert res.payload["mismatches"] == 1
    assert "(exact comparison)" in res.summary
    assert "max abs error: 1 at index (7,) (recorded 7, current 8)" in res.details


def test_integer_tolerance_runs_in_float64_without_overflow() -> None:
    rec = np.array([100, 5], dtype=np.int8)
    cur = np.array([-100, 5], dtype=np.int8)
    assert not compare_arrays("i", rec, cur, atol=199).ok
    assert compare_arrays("i", rec, cur, atol=200).ok


@pytest.mark.parametrize(
    ("dtype", "rec", "cur", "abs_error"),
    [
        (np.uint64, 2**60, 2**60 + 1, 1),
        (np.int64, -(2**62), -(2**62) - 3, 3),
        (np.int64, -(2**63), 2**63 - 1, 2**64 - 1),
        (np.uint64, 0, 2**64 - 1, 2**64 - 1),
        (np.int8, -128, 127, 255),
    ],
)
def test_integer_errors_are_exact(dtype: Any, rec: int, cur: int, abs_error: int) -> None:
    # float64 rounds 2**60 and 2**60 + 1 together: the error must not read as 0.
    r = np.array([7, rec, 9], dtype=dtype)
    c = np.array([7, cur, 9], dtype=dtype)
    res = compare_arrays("i", r, c)
    assert not res.ok
    line = f"max abs error: {abs_error} at index (1,) (recorded {rec}, current {cur})"
    assert line in res.details
    assert res.payload["max_abs_error"] == {
        "value": abs_error,
        "index": [1],
        "recorded": rec,
        "current": cur,
    }
    assert json.loads(json.dumps(res.payload)) == res.payload


def test_integer_tolerance_is_exact_for_large_int64() -> None:
    rec = np.array([5, 2**60], dtype=np.int64)
    cur = np.array([5, 2**60 + 3], dtype=np.int64)
    res = compare_arrays("i", rec, cur, atol=2)
    assert not res.ok
    assert res.place == "array 'i' index (1,)"
    assert "max abs error: 3 at index (1,)" in "\n".join(res.details)
    assert compare_arrays("i", rec, cur, atol=3).ok


def test_bools_compare_exactly() -> None:
    rec = np.array([[True, False], [False, True]])
    cur = rec.copy()
    cur[1, 0] = True
    res = compare_arrays("b", rec, cur)
    assert not res.ok
    assert res.place == "array 'b' index (1, 0)"
    assert compare_arrays("b", rec, rec.copy()).ok


def test_bfloat16_defaults_and_npy_round_trip() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    assert default_tolerances(bf16) == DEFAULT_TOLERANCES["bfloat16"] == (1.6e-2, 1e-5)
    rec = np.array([1.0, 2.0, np.nan, np.inf], dtype=bf16)
    # .npy has no name for bfloat16: it comes back as raw V2 and is read as bfloat16 again.
    restored = npy_bytes_to_array(array_to_npy_bytes(rec))
    assert restored.dtype == np.dtype("V2")
    assert compare_arrays("bf", restored, rec.copy()).ok
    cur = rec.copy()
    cur[1] = 2.0 * (1 + 2 * 1.6e-2)
    res = compare_arrays("bf", restored, cur)
    assert not res.ok
    assert res.place == "array 'bf' index (1,)"
    assert "defaults for bfloat16" in "\n".join(res.details)
    assert compare_arrays("bf", rec, cur, ulp=8).ok
    assert not compare_arrays("bf", rec, cur, ulp=2).ok


def test_float8_has_no_default_tolerance() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rec = np.zeros(3, dtype=ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match="no default tolerance for dtype float8_e4m3fn"):
        compare_arrays("f8", rec, rec.copy())
    assert compare_arrays("f8", rec, rec.copy(), rtol=0.1, atol=0.1).ok


def test_partial_tolerances_keep_the_other_default() -> None:
    rec = np.array([1.0], dtype=np.float32)
    cur = np.array([1.5], dtype=np.float32)
    res = compare_arrays("x", rec, cur, rtol=0.1)
    assert "rtol=0.1 atol=1e-05 (rtol given, atol default for float32)" in "\n".join(res.details)
    assert compare_arrays("x", rec, cur, rtol=0.5).ok
    assert compare_arrays("x", rec, cur, rtol=0.0, atol=0.5).ok


# --- NaN, inf, signed zero ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex128])
def test_nan_positions_must_match(dtype: Any) -> None:
    rec = np.array([1.0, np.nan, 3.0, 4.0], dtype=dtype)
    assert compare_arrays("n", rec, rec.copy()).ok
    cur = np.array([np.nan, np.nan, 3.0, 4.0], dtype=dtype)
    res = compare_arrays("n", rec, cur)
    assert not res.ok
    assert res.payload["nan_only_current"] == 1
    assert res.place == "array 'n' index (0,)"
    cur = np.array([1.0, 2.0, 3.0, 4.0], dtype=dtype)
    res = compare_arrays("n", rec, cur, rtol=1e9, atol=1e9)  # no tolerance covers NaN
    assert not res.ok
    assert res.payload["nan_only_recorded"] == 1
    assert "NaN positions differ: 1 (NaN only in recorded: 1, only in current: 0)" in res.details


def test_equal_nan_false_fails_nan_against_nan_even_when_bytes_match() -> None:
    rec = np.array([1.0, np.nan], dtype=np.float32)
    res = compare_arrays("n", rec, rec.copy(), equal_nan=False)
    assert not res.ok
    assert res.payload["nan_both_unequal"] == 1
    assert "equal_nan=False" in "\n".join(res.details)


def test_nan_payloads_with_different_bits_are_equal() -> None:
    rec = np.array([np.nan], dtype=np.float32)
    cur = np.array([0x7FC00001], dtype=np.uint32).view(np.float32)  # another quiet NaN
    assert compare_arrays("n", rec, cur).ok
    assert compare_arrays("n", rec, cur, ulp=0).ok


@pytest.mark.parametrize(
    ("rec", "cur", "ok"),
    [
        (np.inf, np.inf, True),
        (-np.inf, -np.inf, True),
        (np.inf, -np.inf, False),
        (np.inf, 3.0, False),
        (3.0, np.inf, False),
        (np.inf, np.finfo(np.float32).max, False),
        (np.inf, np.nan, False),
    ],
)
def test_infinities_must_match_exactly(rec: float, cur: float, ok: bool) -> None:
    r = np.array([0.0, rec], dtype=np.float32)
    c = np.array([0.0, cur], dtype=np.float32)
    assert compare_arrays("f", r, c, rtol=10.0, atol=1e30).ok is ok
    assert compare_arrays("f", r, c, ulp=1).ok is ok


def test_inf_mismatch_is_counted_in_the_message() -> None:
    r = np.array([np.inf, 1.0, -np.inf], dtype=np.float64)
    c = np.array([-np.inf, 1.0, -np.inf], dtype=np.float64)
    res = compare_arrays("f", r, c)
    assert res.payload["inf_mismatches"] == 1
    assert "inf mismatches (an inf must be the same inf): 1" in res.details
    assert res.recorded == "inf" and res.current == "-inf"


@pytest.mark.parametrize("ulp", [None, 1])
def test_no_error_figures_when_only_nan_or_inf_positions_differ(ulp: int | None) -> None:
    rec = np.array([1.0, np.nan, 3.0, np.inf], dtype=np.float32)
    cur = np.array([1.0, 2.0, np.nan, -np.inf], dtype=np.float32)
    res = compare_arrays("a", rec, cur, ulp=ulp)
    assert not res.ok
    assert res.payload["mismatches"] == 3
    text = "\n".join(res.details)
    assert "max abs/rel error: no finite element differs (only NaN/inf mismatches)" in text
    for measure in ("max abs error", "max rel error", "max ulp distance"):
        assert measure not in text
        assert measure.replace(" ", "_") not in res.payload
    assert res.place == "array 'a' index (1,)"


def test_error_figures_skip_special_values_and_name_the_finite_worst() -> None:
    rec = np.array([1.0, np.nan, 3.0, 4.0], dtype=np.float64)
    cur = np.array([1.0, 2.0, 3.0, 4.5], dtype=np.float64)
    res = compare_arrays("a", rec, cur)
    assert "max abs error: 0.5 at index (3,) (recorded 4.0, current 4.5)" in res.details
    assert not any("no finite element differs" in line for line in res.details)


def test_signed_zeros_are_equal() -> None:
    rec = np.array([0.0, -0.0], dtype=np.float32)
    cur = np.array([-0.0, 0.0], dtype=np.float32)
    assert compare_arrays("z", rec, cur, rtol=0.0, atol=0.0).ok
    assert compare_arrays("z", rec, cur, ulp=0).ok


# --- shape and dtype checks --------------------------------------------------------------


def test_shape_is_checked_first_and_named() -> None:
    rec = np.zeros((3, 4), dtype=np.float32)
    res = compare_arrays("w", rec, np.zeros((4, 3), dtype=np.float64))
    assert not res.ok
    assert res.kind == KIND
    assert res.summary == "array 'w': shape differs: recorded (3, 4), current (4, 3)"
    assert res.place == "array 'w' shape"
    assert "dtype: recorded float32, current float64" in res.details
    assert res.payload == {"array": "w", "check": "shape", "recorded": [3, 4], "current": [4, 3]}


def test_dtype_mismatch_names_both() -> None:
    res = compare_arrays("w", np.zeros(3, np.float32), np.zeros(3, np.float16))
    assert not res.ok
    assert res.summary == "array 'w': dtype differs: recorded float32, current float16"
    assert (res.recorded, res.current) == ("dtype float32", "dtype float16")
    strict_json(res.payload)


def test_string_dtype_is_named_readably() -> None:
    res = compare_arrays("s", np.array(["ab"]), np.array(["abc"]))
    assert res.summary == "array 's': dtype differs: recorded <U2, current <U3"


def test_byte_order_is_not_a_dtype_difference() -> None:
    rec = np.arange(6, dtype=">f4")
    assert compare_arrays("b", rec, np.arange(6, dtype="<f4")).ok
    cur = np.arange(6, dtype="<f4")
    cur[2] = 9
    assert compare_arrays("b", rec, cur).place == "array 'b' index (2,)"


# --- ULP mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_ulp_counts_units_in_the_last_place(dtype: Any) -> None:
    rec = np.array([1.0, -3.5, 1e-3], dtype=dtype)
    cur = rec.copy()
    for _ in range(4):
        cur = np.nextafter(cur, np.asarray(np.inf, dtype=dtype))
    assert compare_arrays("u", rec, cur, ulp=4).ok
    res = compare_arrays("u", rec, cur, ulp=3)
    assert not res.ok
    assert res.payload["mismatches"] == 3
    assert res.payload["max_ulp_distance"]["value"] == 4
    assert "by more than ulp=3" in res.summary


def test_ulp_across_zero_and_at_the_extremes() -> None:
    tiny = np.finfo(np.float32).smallest_subnormal
    rec = np.array([-tiny], dtype=np.float32)
    cur = np.array([tiny], dtype=np.float32)
    assert compare_arrays("u", rec, cur, ulp=2).ok
    assert not compare_arrays("u", rec, cur, ulp=1).ok
    big = np.finfo(np.float64).max
    res = compare_arrays("u", np.array([-big]), np.array([big]), ulp=10)
    assert not res.ok
    assert res.payload["max_ulp_distance"]["value"] == reference_ulp(-big, big, 8)


def test_ulp_complex_takes_the_worse_part() -> None:
    rec = np.array([1 + 1j], dtype=np.complex64)
    im = np.nextafter(np.float32(1), np.float32(2))
    im = np.nextafter(im, np.float32(2))
    cur = np.array([1 + 1j * im], dtype=np.complex64)
    assert compare_arrays("c", rec, cur, ulp=2).ok
    assert not compare_arrays("c", rec, cur, ulp=1).ok


def test_ulp_argument_errors() -> None:
    with pytest.raises(ValueError, match="either ulp= or rtol=/atol="):
        compare_arrays("u", np.zeros(2), np.zeros(2), ulp=1, rtol=0.1)
    with pytest.raises(ValueError, match="ulp= needs a float16"):
        compare_arrays("u", np.zeros(2, np.int32), np.zeros(2, np.int32), ulp=1)
    with pytest.raises(ValueError, match="ulp must be >= 0"):
        compare_arrays("u", np.zeros(2), np.zeros(2), ulp=-1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rtol": -1.0}, ValueError),
        ({"atol": float("nan")}, ValueError),
        ({"rtol": "1e-3"}, TypeError),
        ({"max_mismatch": 1.5}, TypeError),
        ({"max_mismatch": -1}, ValueError),
        ({"equal_nan": 1}, TypeError),
    ],
)
def test_argument_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        compare_arrays("a", np.zeros(2), np.zeros(2), **kwargs)


def test_tolerances_do_not_apply_to_strings() -> None:
    with pytest.raises(ValueError, match="do not apply"):
        compare_arrays("s", np.array(["a"]), np.array(["a"]), atol=1.0)


# --- max_mismatch, index reporting, payload ----------------------------------------------


def test_max_mismatch_tolerates_that_many() -> None:
    rec = np.zeros(100, dtype=np.float32)
    cur = rec.copy()
    cur[[3, 50, 99]] = 1.0
    res = compare_arrays("m", rec, cur, max_mismatch=3)
    assert res.ok
    assert res.payload["mismatches"] == 3
    res = compare_arrays("m", rec, cur, max_mismatch=2)
    assert not res.ok
    assert "3 of 100 elements (3%) differ" in res.summary
    assert "more than max_mismatch=2" in res.summary


def test_report_names_worst_abs_and_rel_errors_with_indices() -> None:
    rec = np.ones((2, 3, 4), dtype=np.float64)
    rec[1, 2, 3] = 1000.0
    rec[0, 1, 0] = 0.001
    cur = rec.copy()
    cur[1, 2, 3] = 1010.0  # largest absolute error (10), rel 1%
    cur[0, 1, 0] = 0.002  # largest relative error (100%), abs 0.001
    res = compare_arrays("t", rec, cur)
    assert not res.ok
    assert res.place == "array 't' index (0, 1, 0)"  # first mismatch in C order
    details = res.details
    assert "max abs error: 10 at index (1, 2, 3) (recorded 1000.0, current 1010.0)" in details
    assert "max rel error: 1 at index (0, 1, 0) (recorded 0.001, current 0.002)" in details
    assert "first mismatch: index (0, 1, 0) (recorded 0.001, current 0.002)" in details
    assert "tolerance: rtol=1e-07 atol=1e-07 (defaults for float64)" in details
    assert "mismatched: 2 of 24 (8.33%); tolerated: max_mismatch=0" in details
    assert res.summary == "array 't': 2 of 24 elements (8.33%) differ beyond rtol=1e-07 atol=1e-07"
    payload = res.payload
    assert payload["max_abs_error"] == {
        "value": 10.0,
        "index": [1, 2, 3],
        "recorded": 1000.0,
        "current": 1010.0,
    }
    assert payload["max_rel_error"]["index"] == [0, 1, 0]
    assert payload["fraction"] == 2 / 24
    strict_json(payload)


def test_values_print_in_their_own_dtype() -> None:
    rec = np.array([1.3], dtype=np.float32)
    res = compare_arrays("p", rec, np.array([1.4], dtype=np.float32))
    assert (res.recorded, res.current) == ("1.3", "1.4")


def test_relative_error_against_zero_is_inf_and_json_safe() -> None:
    res = compare_arrays("z", np.zeros(2, np.float32), np.array([0.0, 1.0], np.float32))
    assert res.payload["max_rel_error"]["value"] == "inf"
    assert "max rel error: inf at index (1,)" in "\n".join(res.details)
    strict_json(res.payload)


def test_complex_payload_is_json() -> None:
    res = compare_arrays("c", np.array([1 + 2j]), np.array([1 + 3j]))
    assert res.payload["first_mismatch"]["current"] == [1.0, 3.0]
    strict_json(res.payload)


# --- 0-d, empty, layouts, other dtypes --------------------------------------------------


def test_zero_d_arrays() -> None:
    assert compare_arrays("s", np.float32(2.5), np.array(2.5, dtype=np.float32)).ok
    res = compare_arrays("s", np.array(2.5), np.array(3.5))
    assert not res.ok
    assert res.place == "array 's' index ()"
    assert res.payload["first_mismatch"]["index"] == []


def test_empty_arrays() -> None:
    assert compare_arrays("e", np.zeros((0, 3)), np.zeros((0, 3))).ok
    assert compare_arrays("e", np.zeros((0, 3)), np.zeros((0, 3))).payload["size"] == 0
    assert not compare_arrays("e", np.zeros((0, 3)), np.zeros((3, 0))).ok


def test_layouts_compare_by_logical_index() -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    rec = np.asfortranarray(base)
    cur = base.T.copy().T  # same values, Fortran order
    assert compare_arrays("l", rec, cur).ok
    strided = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2].copy()
    view = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2]
    view_changed = view.copy()
    view_changed[2, 3] += 1
    assert compare_arrays("l", strided, view).ok
    assert compare_arrays("l", view, view_changed).place == "array 'l' index (2, 3)"


def test_structured_and_string_arrays_compare_exactly() -> None:
    dt = np.dtype([("a", "i4"), ("b", "f8")])
    rec = np.array([(1, 2.0), (3, 4.0)], dtype=dt)
    cur = rec.copy()
    assert compare_arrays("s", rec, cur).ok
    cur[1]["b"] = 4.5
    res = compare_arrays("s", rec, cur)
    assert not res.ok
    assert res.place == "array 's' index (1,)"
    assert "tolerance: exact, byte for byte" in res.details
    words = np.array(["alpha", "beta"])
    assert not compare_arrays("w", words, np.array(["alpha", "beto"])).ok


def test_lists_and_scalars_are_accepted_as_current() -> None:
    assert compare_arrays("l", np.array([1, 2, 3]), [1, 2, 3]).ok


# --- blocks: the chunked path -------------------------------------------------------------


def test_large_array_mismatch_in_last_block() -> None:
    block = arrays._CPU_BLOCK_BYTES // 4
    n = 3 * block + 17  # three full blocks and a ragged tail
    rng = np.random.default_rng(1)
    rec = rng.standard_normal(n).astype(np.float32)
    cur = rec * np.float32(1 + 1e-7)
    assert compare_arrays("big", rec, cur).ok
    cur[-1] += 1.0
    res = compare_arrays("big", rec, cur)
    assert not res.ok
    assert res.payload["mismatches"] == 1
    assert res.place == f"array 'big' index ({n - 1},)"
    assert res.payload["max_abs_error"]["index"] == [n - 1]


def test_exact_then_tolerance_switch_at_a_block_boundary() -> None:
    block = arrays._CPU_BLOCK_BYTES // 4
    rec = np.arange(4 * block, dtype=np.float32).reshape(4, block)
    cur = rec.copy()
    cur[2:] *= np.float32(1 + 1e-7)  # first two blocks byte-equal, rest within tolerance
    assert compare_arrays("sw", rec, cur).ok
    cur[1, -1] += 1.0  # last element of a byte-equal block
    cur[2, 0] += 1.0  # first element of the next block
    res = compare_arrays("sw", rec, cur)
    assert res.payload["mismatches"] == 2
    assert res.place == f"array 'sw' index (1, {block - 1})"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.complex128, np.int16, np.bool_])
def test_small_blocks_agree_with_one_block(dtype: Any) -> None:
    rng = np.random.default_rng(2)
    rec = (rng.standard_normal(997) * 3).astype(dtype)
    cur = rec.copy()
    cur[::53] = (rng.standard_normal(cur[::53].shape) * 3).astype(dtype)
    whole = compare_arrays("b", rec, cur)
    with small_blocks(48):
        parts = compare_arrays("b", rec, cur)
    assert whole == parts


# --- property: ok iff every element meets the criterion ----------------------------------

_FLOATS = st.sampled_from([np.float16, np.float32, np.float64])


@st.composite
def perturbed(draw: Any) -> tuple[np.ndarray, np.ndarray, float, float, int, bool]:
    dtype = np.dtype(draw(_FLOATS))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=6))
    rec = draw(hnp.arrays(dtype, shape, elements={"allow_subnormal": True}))
    noise = draw(
        hnp.arrays(
            np.float64,
            shape,
            elements=st.floats(-1e-2, 1e-2) | st.sampled_from([0.0, 1e-6, -1e-6, 2.0]),
        )
    )
    with np.errstate(all="ignore"):
        cur = (rec.astype(np.float64) * (1 + noise) + noise * 1e-4).astype(dtype)
    swap = draw(hnp.arrays(bool, shape))
    specials = draw(hnp.arrays(dtype, shape, elements=st.sampled_from([np.nan, np.inf, -np.inf])))
    cur = np.where(swap & draw(hnp.arrays(bool, shape)), specials, cur).astype(dtype)
    rtol = draw(st.sampled_from([0.0, 1e-6, 1e-3, 5e-2]))
    atol = draw(st.sampled_from([0.0, 1e-7, 1e-4]))
    max_mismatch = draw(st.integers(0, 3))
    equal_nan = draw(st.booleans())
    return rec, cur, rtol, atol, max_mismatch, equal_nan


@settings(max_examples=300, deadline=None)
@given(perturbed(), st.booleans())
def test_property_matches_reference(case: Any, tiny_blocks: bool) -> None:
    rec, cur, rtol, atol, max_mismatch, equal_nan = case
    expected = reference_mismatches(rec, cur, rtol, atol, equal_nan)
    with small_blocks(16) if tiny_blocks else contextlib.nullcontext():
        res = compare_arrays(
            "h", rec, cur, rtol=rtol, atol=atol, max_mismatch=max_mismatch, equal_nan=equal_nan
        )
    count = int(expected.sum())
    assert res.ok is (count <= max_mismatch)
    assert res.payload["mismatches"] == count
    if count:
        first = np.unravel_index(int(np.argmax(expected.reshape(-1))), rec.shape)
        assert res.payload["first_mismatch"]["index"] == [int(i) for i in first]
    strict_json(res.payload)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([np.float16, np.float32, np.float64]).flatmap(
        lambda dt: st.tuples(
            st.just(dt),
            hnp.arrays(dt, st.integers(1, 12), elements={"allow_nan": False}),
            hnp.arrays(dt, st.integers(1, 12), elements={"allow_nan": False}),
        )
    ),
    st.integers(0, 1 << 20),
)
def test_property_ulp_matches_sign_magnitude_reference(case: Any, ulp: int) -> None:
    dtype, a, b = case
    n = min(a.size, b.size)
    rec, cur = a[:n], b[:n]
    width = np.dtype(dtype).itemsize
    bad = [
        (x != y) if (np.isinf(x) or np.isinf(y)) else reference_ulp(x, y, width) > ulp
        for x, y in zip(rec.tolist(), cur.tolist(), strict=True)
    ]
    res = compare_arrays("u", rec, cur, ulp=ulp)
    assert res.payload["mismatches"] == sum(bad)
    assert res.ok is (sum(bad) == 0)


# --- .npy blobs ----------------------------------------------------------------------------


def test_npy_round_trip_and_layout_independent_bytes() -> None:
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    data = array_to_npy_bytes(base)
    assert data == array_to_npy_bytes(np.asfortranarray(base))
    back = npy_bytes_to_array(data)
    assert back.dtype == base.dtype and back.shape == base.shape
    assert np.array_equal(back, base)
    assert npy_bytes_to_array(memoryview(data)).shape == (3, 4)
    zero_d = npy_bytes_to_array(array_to_npy_bytes(np.float32(7)))
    assert zero_d.shape == () and zero_d.dtype == np.float32


def test_npy_bad_data_is_a_clear_value_error() -> None:
    good = array_to_npy_bytes(np.arange(5))
    with pytest.raises(ValueError, match=r"not a \.npy blob"):
        npy_bytes_to_array(b"PK\x03\x04 not npy")
    with pytest.raises(ValueError, match=r"bad \.npy blob"):
        npy_bytes_to_array(good[:-3])
    with pytest.raises(ValueError, match=r"bad \.npy blob"):
        npy_bytes_to_array(good[:12])
    with pytest.raises(ValueError, match="2 trailing bytes"):
        npy_bytes_to_array(good + b"xx")
    with pytest.raises(TypeError):
        npy_bytes_to_array("text")  # type: ignore[arg-type]


def test_npy_never_unpickles() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"bad \.npy blob"):
        npy_bytes_to_array(buffer.getvalue())
    with pytest.raises(ValueError, match="without pickle"):
        array_to_npy_bytes(np.array([1, None], dtype=object))


# --- CuPy: the same rules on the device ---------------------------------------------------


def _cupy() -> Any:
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        pytest.skip(f"CuPy not importable: {exc}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        pytest.skip(f"CuPy sees no CUDA device: {exc}")
    if count == 0:
        pytest.skip("CuPy sees no CUDA device (getDeviceCount() == 0)")
    return cupy


def _gpu_cases() -> list[tuple[str, np.ndarray, np.ndarray, dict[str, Any]]]:
    rng = np.random.default_rng(3)
    f32 = rng.standard_normal((64, 33)).astype(np.float32)
    near = f32 * np.float32(1 + 1e-7)
    bad = near.copy()
    bad[10, 5] += 1
    bad[63, 32] = np.nan
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], dtype=np.float32)
    specials_cur = np.array([np.nan, np.inf, np.inf, -0.0, 0.0, 1.0], dtype=np.float32)
    half = f32.astype(np.float16)
    half_bad = half.copy()
    half_bad[0, 0] += np.float16(1)
    f64 = rng.standard_normal(1000)
    cplx = (f64 + 1j * f64[::-1]).astype(np.complex64)
    cplx_bad = cplx.copy()
    cplx_bad[999] += 1j
    ints = np.arange(100, dtype=np.int32)
    ints_bad = ints.copy()
    ints_bad[42] = 0
    return [
        ("f32 equal", f32, f32.copy(), {}),
        ("f32 near", f32, near, {}),
        ("f32 bad", f32, bad, {}),
        ("f32 bad tolerated", f32, bad, {"max_mismatch": 2}),
        ("specials", specials, specials_cur, {}),
        ("specials equal_nan=False", specials, specials.copy(), {"equal_nan": False}),
        ("f16", half, half_bad, {}),
        ("f64 ulp", f64, np.nextafter(f64, np.inf), {"ulp": 1}),
        ("f64 ulp0", f64, np.nextafter(f64, np.inf), {"ulp": 0}),
        ("c64", cplx, cplx_bad, {}),
        ("int", ints, ints_bad, {}),
        ("0-d", np.array(1.5), np.array(2.5), {}),
        ("empty", np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), {}),
        ("shape", f32, f32.T.copy(), {}),
    ]


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "ufuncs"])
@pytest.mark.parametrize("case", _gpu_cases(), ids=lambda c: c[0])
def test_gpu_matches_numpy(case: Any, fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    cupy = _cupy()
    if not fused:
        monkeypatch.setattr(arrays, "_gpu_fused_ok", lambda xp, rule: False)
    _, rec, cur, kwargs = case
    on_host = compare_arrays("g", rec, cur, **kwargs)
    on_device = compare_arrays("g", rec, cupy.asarray(cur), **kwargs)
    assert on_device.ok is on_host.ok
    assert on_device.summary == on_host.summary
    assert on_device.place == on_host.place
    assert (on_device.recorded, on_device.current) == (on_host.recorded, on_host.current)
    assert same_payload(on_device.payload, on_host.payload)
    if "device" in on_device.payload:
        assert on_device.payload["device"].startswith("cuda:")


def same_payload(device: dict[str, Any], host: dict[str, Any]) -> bool:
    """Equal but for the device name and the last bits of error magnitudes.

    CUDA's complex abs (hypot) may round differently from NumPy's; every other
    step is a correctly rounded IEEE operation on both.
    """
    assert device.keys() == host.keys()
    for key, value in host.items():
        if key == "device":
            continue
        if key in ("max_abs_error", "max_rel_error") and isinstance(value["value"], float):
            assert device[key]["value"] == pytest.approx(value["value"], rel=1e-6)
            assert {**device[key], "value": 0} == {**value, "value": 0}
        else:
            assert device[key] == value, key
    return True


@pytest.mark.gpu
def test_gpu_blocks_and_last_block_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    cupy = _cupy()
    monkeypatch.setattr(arrays, "_GPU_BLOCK_ELEMS", 1000)
    rec = np.linspace(-5, 5, 10_007, dtype=np.float32)
    cur = cupy.asarray(rec) * cupy.float32(1 + 1e-7)
    assert compare_arrays("g", rec, cur).ok
    cur[-1] += 1
    res = compare_arrays("g", rec, cur)
    assert not res.ok
    assert res.place == "array 'g' index (10006,)"
    assert res.payload["mismatches"] == 1


@pytest.mark.gpu
def test_gpu_recorded_on_device_and_npy_from_device() -> None:
    cupy = _cupy()
    cur = cupy.arange(10, dtype=cupy.float64)
    assert compare_arrays("g", cur.copy(), cur).ok
    data = array_to_npy_bytes(cur)
    assert np.array_equal(npy_bytes_to_array(data), np.arange(10, dtype=np.float64))


# --- the device path on a fake CuPy: only scalars cross to the host -----------------------


@pytest.fixture
def host_copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the device arrays copied to the host (get()) under a fake ``cupy``."""
    install_fake_cupy_arrays(monkeypatch)
    monkeypatch.setattr(arrays, "_GPU_KERNELS", {})  # no fake kernel outlives the test
    sizes: list[int] = []
    real_get = FakeCupyArray.get

    def spying_get(self: Any, out: Any = None) -> Any:
        sizes.append(int(self.size))
        return real_get(self, out)

    monkeypatch.setattr(FakeCupyArray, "get", spying_get)
    return sizes


def _on_fake_device(array: np.ndarray) -> Any:
    return np.array(array).view(FakeCupyArray)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "ufuncs"])
@pytest.mark.parametrize("case", _gpu_cases(), ids=lambda c: c[0])
def test_device_compare_never_copies_an_array_to_the_host(
    case: Any, fused: bool, host_copies: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fused:
        monkeypatch.setattr(arrays, "_gpu_fused_ok", lambda xp, rule: False)
    _, rec, cur, kwargs = case
    on_host = compare_arrays("g", rec, cur, **kwargs)
    for recorded in (rec, _on_fake_device(rec)):  # recorded as .npy, or already on the device
        on_device = compare_arrays("g", recorded, _on_fake_device(cur), **kwargs)
        assert on_device.ok is on_host.ok
        assert on_device.summary == on_host.summary
        assert [d.replace("device cuda:0", "device cpu") for d in on_device.details] == list(
            on_host.details
        )
        assert same_payload(on_device.payload, on_host.payload)
        if "device" in on_device.payload:
            assert on_device.payload["device"] == "cuda:0"
    assert all(size <= 1 for size in host_copies), host_copies


def test_device_compare_in_blocks_copies_only_scalars(
    host_copies: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arrays, "_GPU_BLOCK_ELEMS", 1000)
    rec = np.linspace(-5, 5, 10_007, dtype=np.float32)
    cur = rec * np.float32(1 + 1e-7)
    cur[[17, 5003, 10_006]] += 1
    cur[9000] = np.nan
    for kwargs in ({}, {"ulp": 2}, {"max_mismatch": 10}):
        res = compare_arrays("g", rec, _on_fake_device(cur), **kwargs)
        assert res.payload["mismatches"] == 4
    ints = np.arange(5000, dtype=np.int64) + 2**60
    res = compare_arrays("i", ints, _on_fake_device(ints + 1))
    assert res.payload["max_abs_error"]["value"] == 1
    assert all(size <= 1 for size in host_copies), host_copies
    # The spy sees a whole-array copy where one is meant to happen: storing the .npy.
    array_to_npy_bytes(_on_fake_device(cur))
    assert host_copies[-1] == cur.size


class _BrokenCupyFinder:
    """Makes ``import cupy`` fail the way a CuPy with broken CUDA libraries does."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "cupy":
            raise RuntimeError("libcudart.so.12: cannot open shared object file")
        return None


def test_gpu_reason_when_importing_cupy_raises_something_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A gpu-marked test must skip with this reason, not error in setup.
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenCupyFinder(), *sys.meta_path])
    backend.gpu_unavailable_reason.cache_clear()
    try:
        reason = backend.gpu_unavailable_reason()
    finally:
        backend.gpu_unavailable_reason.cache_clear()
    assert reason == (
        "CuPy cannot be imported: RuntimeError: libcudart.so.12: cannot open shared object file"
    )
