"""Array comparison for replay.check_array: tolerances, NaN/inf rules, ULPs, on the device."""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_replay.compare.result import Comparison

KIND = "replay_array_diff"

#: ``(rtol, atol)`` per real floating dtype name, as ``torch.testing.assert_close``
#: picks them. Complex dtypes use their real part's row; integers and bools
#: compare exactly. ``float96``/``float128`` are x86's long double, held to float64's row.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "float96": (1e-7, 1e-7),
    "float128": (1e-7, 1e-7),
}

# Per operand and block, in the dtype the arithmetic runs in: the block and its
# two temporaries stay in L2/L3 instead of streaming full-size temporaries
# through memory the way np.allclose does.
_CPU_BLOCK_BYTES = 1 << 20
# On a GPU a block is a bound on temporaries, not a cache size: the common path
# is one fused kernel, and the blocked path runs only where that kernel found
# suspects (NaN, inf, or a value out of tolerance).
_GPU_BLOCK_ELEMS = 1 << 24

_NPY_MAGIC = b"\x93NUMPY"

# ml_dtypes' narrow floats: arithmetic runs in float32, as NumPy has no loops of its own.
_EXTENSION_FLOAT_PREFIXES = ("bfloat16", "float8", "float6", "float4")


# --- the rule a comparison applies ------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """What "equal" means for one dtype, resolved once before any element is read.

    ``mode`` is ``"tolerance"`` (|cur - rec| <= atol + rtol*|rec|), ``"ulp"``
    (distance in units in the last place) or ``"exact"`` (equal bits per
    element; ``numeric`` says whether abs/rel errors make sense).
    """

    mode: str
    dtype: np.dtype
    compute: np.dtype | None  # dtype the arithmetic runs in (float32 for float16/bfloat16)
    rtol: float
    atol: float
    ulp: int | None
    equal_nan: bool
    source: str  # where rtol/atol came from: "given", "defaults for float32"...
    numeric: bool

    @property
    def real(self) -> np.dtype:
        assert self.compute is not None
        return np.finfo(self.compute).dtype if self.compute.kind == "c" else self.compute

    @property
    def cast(self) -> dict[str, Any]:
        """ufunc keyword that makes float16/bfloat16/int inputs compute in ``compute``."""
        return {} if self.compute == self.dtype else {"dtype": self.compute}

    @property
    def bytes_decide(self) -> bool:
        """Whether equal bytes already mean a pass (not with NaN != NaN)."""
        return self.equal_nan or self.mode == "exact"

    def criterion(self) -> str:
        """How a failing element is described in the summary line."""
        if self.mode == "ulp":
            return f"by more than ulp={self.ulp}"
        if self.mode == "exact":
            return "(exact comparison)"
        return f"beyond rtol={self.rtol:g} atol={self.atol:g}"

    def describe(self) -> str:
        if self.mode == "ulp":
            return f"ulp={self.ulp}"
        if self.mode == "exact":
            return "exact, element by element" if self.numeric else "exact, byte for byte"
        return f"rtol={self.rtol:g} atol={self.atol:g} ({self.source})"

    def as_payload(self) -> dict[str, Any]:
        if self.mode == "ulp":
            return {"ulp": self.ulp, "equal_nan": self.equal_nan}
        if self.mode == "exact":
            return {"exact": True}
        return {
            "rtol": self.rtol,
            "atol": self.atol,
            "tolerance_source": self.source,
            "equal_nan": self.equal_nan,
        }


def _is_extension_float(dtype: np.dtype) -> bool:
    return (
        dtype.kind == "V"
        and dtype.names is None
        and dtype.name.startswith(_EXTENSION_FLOAT_PREFIXES)
    )


def default_tolerances(dtype: Any) -> tuple[float, float]:
    """``(rtol, atol)`` used for ``dtype`` when the caller gives none.

    Raises ValueError for floating dtypes without a default (ml_dtypes'
    float8 family): their spacing is too coarse for one sensible value.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return (0.0, 0.0)
    name = np.finfo(dtype).dtype.name if dtype.kind == "c" else dtype.name
    if name not in DEFAULT_TOLERANCES:
        raise ValueError(
            f"no default tolerance for dtype {dtype.name}; pass rtol= and atol= (or ulp=)"
        )
    return DEFAULT_TOLERANCES[name]


def _check_args(
    name: str, rtol: Any, atol: Any, max_mismatch: Any, ulp: Any, equal_nan: Any
) -> None:
    if not isinstance(name, str):
        raise TypeError(f"array name must be a str, got {name!r}")
    if not name:
        raise ValueError("array name must not be empty")
    for label, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"{label} must be a real number, got {value!r}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{label} must be finite and >= 0, got {value!r}")
    for label, value in (("max_mismatch", max_mismatch), ("ulp", ulp)):
        if value is None and label == "ulp":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{label} must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"{label} must be >= 0, got {value!r}")
    if ulp is not None and (rtol is not None or atol is not None):
        raise ValueError("give either ulp= or rtol=/atol=, not both")
    if not isinstance(equal_nan, bool):
        raise TypeError(f"equal_nan must be a bool, got {equal_nan!r}")


def check_arguments(
    name: Any,
    array: Any,
    *,
    rtol: Any = None,
    atol: Any = None,
    max_mismatch: Any = 0,
    ulp: Any = None,
    equal_nan: Any = True,
) -> None:
    """Raise TypeError/ValueError for arguments compare_arrays would reject for ``array``.

    Lets a recorder refuse a bad call when it is recorded, not only on replay.
    """
    _check_args(name, rtol, atol, max_mismatch, ulp, equal_nan)
    dtype = getattr(array, "dtype", None)
    if not isinstance(dtype, np.dtype):
        raise TypeError(f"check_array needs a NumPy or CuPy array, got {type(array).__name__}")
    _resolve_rule(dtype, rtol, atol, ulp, equal_nan)


def _resolve_rule(
    dtype: np.dtype, rtol: float | None, atol: float | None, ulp: int | None, equal_nan: bool
) -> _Rule:
    kind = dtype.kind
    floating = kind in "fc" or _is_extension_float(dtype)
    if ulp is not None:
        if (
            not floating
            or dtype.itemsize // (2 if kind == "c" else 1) not in (2, 4, 8)
            or (_is_extension_float(dtype) and dtype.name != "bfloat16")
        ):
            raise ValueError(
                f"ulp= needs a float16, bfloat16, float32 or float64 array "
                f"(or their complex forms), not {_dtype_label(dtype)}"
            )
        return _Rule(
            "ulp", dtype, _compute_dtype(dtype), 0.0, 0.0, int(ulp), equal_nan, "given", True
        )
    if floating:
        if rtol is None or atol is None:
            d_rtol, d_atol = default_tolerances(dtype)
            source = f"defaults for {dtype.name}"
            if rtol is not None:
                source = f"rtol given, atol default for {dtype.name}"
            elif atol is not None:
                source = f"atol given, rtol default for {dtype.name}"
            rtol = d_rtol if rtol is None else rtol
            atol = d_atol if atol is None else atol
        else:
            source = "given"
        return _Rule(
            "tolerance",
            dtype,
            _compute_dtype(dtype),
            float(rtol),
            float(atol),
            None,
            equal_nan,
            source,
            True,
        )
    if kind in "biu":
        rtol, atol = float(rtol or 0.0), float(atol or 0.0)
        if rtol or atol:
            # Integer differences can overflow their own dtype (int8: 100 - -100),
            # so tolerances are applied in float64.
            return _Rule(
                "tolerance",
                dtype,
                np.dtype(np.float64),
                rtol,
                atol,
                None,
                equal_nan,
                "given",
                True,
            )
        return _Rule("exact", dtype, np.dtype(np.float64), 0.0, 0.0, None, equal_nan, "exact", True)
    if rtol or atol:
        raise ValueError(
            f"rtol=/atol= do not apply to dtype {_dtype_label(dtype)}: it compares exactly"
        )
    return _Rule("exact", dtype, None, 0.0, 0.0, None, equal_nan, "exact", False)


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return dtype
    if dtype.kind == "c" and dtype.itemsize >= 8:
        return dtype
    if dtype.kind == "c":  # complex32 does not exist in NumPy, but be safe
        return np.dtype(np.complex64)
    return np.dtype(np.float32)


# --- where the arrays live ---------------------------------------------------------------


def array_module(array: Any) -> Any:
    """``cupy`` for a CuPy array, else ``numpy``.

    CuPy is never imported here: if no one imported it, no CuPy array can
    exist, and importing it for NumPy inputs would cost a second per run.
    """
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return np
    return cupy.get_array_module(array)


def _is_device_array(array: Any) -> bool:
    return type(array).__module__.split(".", 1)[0] == "cupy"


def _to_host(array: Any) -> np.ndarray:
    if _is_device_array(array):
        return array.get()
    return np.asarray(array)


def _native(array: Any) -> Any:
    # A recording made on a big-endian machine still compares by value here.
    if array.dtype.byteorder not in "=|" and array.dtype.names is None:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def _restore_extension_dtype(recorded: np.ndarray, current_dtype: np.dtype) -> np.ndarray:
    # .npy has no name for ml_dtypes types: a bfloat16 array is saved as raw
    # 2-byte voids. Read those bytes back as the current array's dtype.
    dtype = recorded.dtype
    if (
        dtype.kind == "V"
        and dtype.names is None
        and dtype == np.dtype(f"V{dtype.itemsize}")
        and _is_extension_float(current_dtype)
        and current_dtype.itemsize == dtype.itemsize
    ):
        return recorded.view(current_dtype)
    return recorded


def _flat(array: Any) -> Any:
    # reshape(-1) of a C-contiguous array is a view; anything else is copied
    # once, on its own device (np.ascontiguousarray would turn 0-d into 1-d).
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    return array.reshape(-1)


def _word_dtype(itemsize: int) -> np.dtype:
    for size in (8, 4, 2, 1):
        if itemsize % size == 0:
            return np.dtype(f"u{size}")
    raise AssertionError("unreachable")


def _dtype_label(dtype: np.dtype) -> str:
    # NumPy's .name for strings is "str32"-like; "<U4" is what a reader recognises.
    return dtype.name if dtype.kind in "biufc" or _is_extension_float(dtype) else str(dtype)


def _device_name(xp: Any, array: Any) -> str:
    if xp is np:
        return "cpu"
    return f"cuda:{array.device.id}"


def _host_scalar(xp: Any, flat: Any, index: int) -> Any:
    value = flat[index]
    if xp is not np and hasattr(value, "get"):
        value = value.get()[()]  # one element crosses to the host, never the array
    return value


# --- per-block kernels, written once over xp -----------------------------------------------


class _Blocks:
    """Scratch buffers reused for every block of one comparison."""

    def __init__(self, xp: Any, rule: _Rule, block: int) -> None:
        words = rule.dtype.itemsize // _word_dtype(rule.dtype.itemsize).itemsize
        # The byte compare's mask; on a GPU that compare is a reduction kernel.
        self.mask = xp.empty(block * words, dtype=bool) if xp is np else None
        self.diff = self.tol = self.cdiff = None
        self.keys = None
        if rule.mode == "ulp" and xp is np:
            parts = 2 if rule.dtype.kind == "c" else 1
            self.keys = tuple(xp.empty(block * parts, dtype=xp.int64) for _ in range(4))
        if rule.mode == "tolerance":
            real = rule.real
            self.diff = xp.empty(block, dtype=real)
            self.tol = xp.empty(block, dtype=real)
            self.cdiff = xp.empty(block, dtype=rule.compute) if rule.compute.kind == "c" else None


def _words_differ(xp: Any, rec: Any, cur: Any, blocks: _Blocks) -> bool:
    """True when the raw bytes of two equal-length blocks differ."""
    word = _word_dtype(rec.dtype.itemsize)
    a, b = rec.view(word), cur.view(word)
    mask = blocks.mask[: a.size]
    xp.not_equal(a, b, out=mask)
    return bool(mask.any())


def _accepts(xp: Any, rule: _Rule, rec: Any, cur: Any, blocks: _Blocks) -> bool:
    """Fast, exact accept: True only if every element of the block is within tolerance.

    max(|c - r| - t) <= 0 with t = |r|*rtol + atol holds exactly when every
    |c - r| <= t (gradual underflow: a difference of distinct floats is never
    0), and NaN propagates through max. Any NaN or inf operand produces a NaN
    or a positive excess, so special values always go to the exact path.
    """
    n = rec.size
    diff, tol = blocks.diff[:n], blocks.tol[:n]
    if blocks.cdiff is not None:
        cdiff = blocks.cdiff[:n]
        xp.subtract(cur, rec, out=cdiff)
        xp.absolute(cdiff, out=diff)
    else:
        xp.subtract(cur, rec, out=diff, **rule.cast)
        xp.absolute(diff, out=diff)
    xp.absolute(rec, out=tol, **rule.cast)
    real = rule.real.type
    xp.multiply(tol, real(rule.rtol), out=tol)
    xp.add(tol, real(rule.atol), out=tol)
    xp.subtract(diff, tol, out=diff)
    return bool(diff.max() <= 0)


def _specials(xp: Any, rule: _Rule, rec: Any, cur: Any, mismatch: Any) -> Any:
    """Apply the NaN and inf rules where either operand is not finite."""
    finite = xp.isfinite(rec) & xp.isfinite(cur)
    if bool(finite.all()):
        return mismatch
    rnan, cnan = xp.isnan(rec), xp.isnan(cur)
    either = rnan | cnan
    # NaN must sit where NaN was (and equals NaN only with equal_nan); an inf
    # must be the same inf. Finite-vs-inf is caught by cur != rec as well.
    nan_bad = either & ~(rnan & cnan) if rule.equal_nan else either
    special = xp.where(either, nan_bad, cur != rec)
    return xp.where(finite, mismatch, special)


def _ulp_distance(xp: Any, rule: _Rule, rec: Any, cur: Any, blocks: _Blocks | None = None) -> Any:
    """Per element ULP distance as uint64 (max over real/imag parts for complex).

    With ``blocks`` the work happens in its int64 scratch buffers: on the CPU a
    fresh 2 MB temporary per step costs more in page faults than the step.
    """
    if rule.dtype.kind == "c":
        real = np.finfo(rule.dtype).dtype
        rec, cur = rec.view(real), cur.view(real)
    bits = np.dtype(f"i{rec.dtype.itemsize}")
    magnitude = (1 << (8 * bits.itemsize - 1)) - 1
    n = rec.size
    if blocks is not None and blocks.keys is not None:
        ka, kb, sign, scratch = (buf[:n] for buf in blocks.keys)
    else:
        ka, kb, sign, scratch = (xp.empty(n, dtype=xp.int64) for _ in range(4))

    def key(a: Any, out: Any) -> Any:
        # Signed-magnitude float bits to a monotonic integer line: -0 and +0
        # both land on 0, and the next float on either side is 1 away. For a
        # negative k, (k ^ magnitude) + 1 == -(k & magnitude); written with the
        # sign mask instead of where(), which is slow on random signs.
        xp.copyto(out, a.view(bits))
        xp.right_shift(out, 63, out=sign)  # -1 for negative floats, 0 otherwise
        xp.bitwise_and(sign, magnitude, out=scratch)
        xp.bitwise_xor(out, scratch, out=out)
        xp.subtract(out, sign, out=out)
        return out

    key(rec, ka)
    key(cur, kb)
    # max - min can exceed int64 for float64; as uint64 the wrapped difference is exact.
    hi, lo = sign, scratch
    xp.maximum(ka, kb, out=hi)
    xp.minimum(ka, kb, out=lo)
    dist = hi.view(xp.uint64)
    xp.subtract(dist, lo.view(xp.uint64), out=dist)
    if rule.dtype.kind == "c":
        dist = dist.reshape(-1, 2).max(axis=1)
    return dist


def _as_compute(rule: _Rule, a: Any) -> Any:
    assert rule.compute is not None
    return a.astype(rule.compute, copy=False)


def _int_abs_diff(xp: Any, rec: Any, cur: Any) -> Any:
    """Exact ``|cur - rec|`` of integer or bool blocks, in the unsigned type of their width.

    max - min can exceed the signed type (int8: 100 - -100), and float64 loses
    the difference between large int64s (2**60 and 2**60 + 1); as unsigned
    the wrapped subtraction is exact.
    """
    unsigned = np.dtype(f"u{rec.dtype.itemsize}")
    diff = xp.maximum(rec, cur).view(unsigned)
    xp.subtract(diff, xp.minimum(rec, cur).view(unsigned), out=diff)
    return diff


def _is_integer(rule: _Rule) -> bool:
    return rule.dtype.kind in "biu"


def _mismatch(xp: Any, rule: _Rule, rec: Any, cur: Any, blocks: _Blocks | None = None) -> Any:
    """Boolean mask of the elements of one block that fail the rule (exact path)."""
    if rule.mode == "exact":
        word = _word_dtype(rule.dtype.itemsize)
        per = rule.dtype.itemsize // word.itemsize
        differ = rec.view(word) != cur.view(word)
        return differ.reshape(-1, per).any(axis=1) if per > 1 else differ
    if rule.mode == "ulp":
        bad = _ulp_distance(xp, rule, rec, cur, blocks) > np.uint64(rule.ulp)
        return _specials(xp, rule, _as_compute(rule, rec), _as_compute(rule, cur), bad)
    r, c = _as_compute(rule, rec), _as_compute(rule, cur)
    real = rule.real.type
    tol = xp.abs(r) * real(rule.rtol) + real(rule.atol)
    if _is_integer(rule):  # integers are finite; their difference is exact
        return ~(_int_abs_diff(xp, rec, cur) <= tol)
    diff = xp.abs(c - r)
    bad = ~(diff <= tol)
    return _specials(xp, rule, r, c, bad)


# --- GPU: one fused pass instead of a kernel per ufunc ----------------------------------

_GPU_KERNELS: dict[str, Any] = {}

# __fmul_rn/__fadd_rn are never contracted into an FMA, so the tolerance is
# rounded exactly as NumPy's separate multiply and add round it.
_GPU_PREAMBLE = """
__device__ __forceinline__ float rp_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rp_mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float rp_add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rp_add_rn(double a, double b) { return __dadd_rn(a, b); }
"""


def _gpu_kernel(cupy: Any, key: str) -> Any:
    kernel = _GPU_KERNELS.get(key)
    if kernel is not None:
        return kernel
    if key == "words":
        kernel = cupy.ReductionKernel(
            "T a, T b", "int64 y", "a != b", "a + b", "y = a", "0", "pytest_replay_words_differ"
        )
    else:
        ctype = {"float32": "float", "float64": "double"}[key]
        # Counts elements whose excess |c - r| - (|r|*rtol + atol) is not <= 0:
        # out of tolerance, NaN, or inf. Zero means the whole range passes.
        fabs = {"float32": "fabsf", "float64": "fabs"}[key]
        tol = f"rp_add_rn(rp_mul_rn({fabs}(({ctype})r), rtol), atol)"
        excess = f"({fabs}(({ctype})c - ({ctype})r) - {tol})"
        kernel = cupy.ReductionKernel(
            f"T c, T r, {key} rtol, {key} atol",
            "int64 y",
            f"({excess} <= ({ctype})0) ? 0 : 1",
            "a + b",
            "y = a",
            "0",
            f"pytest_replay_suspects_{key}",
            preamble=_GPU_PREAMBLE,
        )
    _GPU_KERNELS[key] = kernel
    return kernel


def _gpu_fused_ok(xp: Any, rule: _Rule) -> bool:
    return (
        xp is not np
        and rule.mode == "tolerance"
        and rule.dtype.kind == "f"
        and rule.dtype.itemsize in (2, 4, 8)
        and rule.compute is not None
        and rule.compute.name in ("float32", "float64")
    )


def _gpu_words_differ(xp: Any, rec: Any, cur: Any) -> bool:
    word = _word_dtype(rec.dtype.itemsize)
    return int(_gpu_kernel(xp, "words")(rec.view(word), cur.view(word))) != 0


def _gpu_suspects(xp: Any, rule: _Rule, rec: Any, cur: Any) -> int:
    assert rule.compute is not None
    real = rule.compute.type
    kernel = _gpu_kernel(xp, rule.compute.name)
    return int(kernel(cur, rec, real(rule.rtol), real(rule.atol)))


# --- the two passes -------------------------------------------------------------------------


def _block_size(xp: Any, rule: _Rule) -> int:
    if xp is not np:
        return _GPU_BLOCK_ELEMS
    width = rule.compute.itemsize if rule.compute is not None else rule.dtype.itemsize
    return max(1, _CPU_BLOCK_BYTES // width)


def _count_mismatches(xp: Any, rule: _Rule, rec: Any, cur: Any) -> int:
    """Number of failing elements; equal bytes and in-tolerance blocks pass fast."""
    n = rec.size
    block = _block_size(xp, rule)
    blocks = _Blocks(xp, rule, block) if xp is np else None
    by_bytes = rule.bytes_decide
    start, step = 0, block
    # Exact fast path: compare raw bytes block by block and stop paying for it
    # at the first block that differs (nearly-equal data differs everywhere).
    while by_bytes and start < n:
        stop = min(start + step, n)
        if xp is np:
            differ = _words_differ(xp, rec[start:stop], cur[start:stop], blocks)
        else:
            differ = _gpu_words_differ(xp, rec[start:stop], cur[start:stop])
            step *= 2  # the kernel needs no scratch: grow, so a GiB costs a few syncs
        if differ:
            break
        start = stop
    if start >= n:
        return 0
    if _gpu_fused_ok(xp, rule) and _gpu_suspects(xp, rule, rec[start:], cur[start:]) == 0:
        return 0
    if blocks is None and rule.mode == "tolerance":
        blocks = _Blocks(xp, rule, block)  # the GPU's blocked path, after the fused kernel
    count = 0
    for lo in range(start, n, block):
        hi = min(lo + block, n)
        r, c = rec[lo:hi], cur[lo:hi]
        # _accepts subtracts in float64, which would round large integers together.
        if rule.mode == "tolerance" and not _is_integer(rule) and _accepts(xp, rule, r, c, blocks):
            continue
        count += int(xp.count_nonzero(_mismatch(xp, rule, r, c, blocks)))
    return count


@dataclass
class _Worst:
    """The largest value of one error measure seen so far, and where."""

    value: float | int = -1
    index: int = -1

    def offer(self, xp: Any, values: Any, offset: int) -> None:
        k = int(xp.argmax(values))
        v = values[k].item()  # int for ULP distances: a uint64 does not fit a float
        if v > self.value:
            self.value, self.index = v, offset + k


@dataclass
class _Stats:
    first: int = -1
    nan_only_recorded: int = 0
    nan_only_current: int = 0
    nan_both: int = 0
    inf: int = 0
    abs_err: _Worst | None = None
    rel_err: _Worst | None = None
    ulp: _Worst | None = None


def _statistics(xp: Any, rule: _Rule, rec: Any, cur: Any) -> _Stats:
    """Second pass, only on failure: where and how large the errors are."""
    n = rec.size
    block = _block_size(xp, rule)
    stats = _Stats()
    blocks = _Blocks(xp, rule, block) if xp is np and rule.mode == "ulp" else None
    if rule.numeric:
        stats.abs_err, stats.rel_err = _Worst(), _Worst()
    if rule.mode == "ulp":
        stats.ulp = _Worst()
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        r, c = rec[lo:hi], cur[lo:hi]
        bad = _mismatch(xp, rule, r, c, blocks)
        if stats.first < 0 and bool(bad.any()):
            stats.first = lo + int(xp.argmax(bad.view(xp.uint8)))
        if not rule.numeric:
            continue
        if _is_integer(rule):
            # Exact: the worst element is found, and its error reported, without
            # rounding through float64. Integers have no NaN or inf.
            diff = _int_abs_diff(xp, r, c)
            rel = diff / xp.abs(r.astype(np.float64))
            xp.putmask(rel, diff == 0, 0)
            stats.abs_err.offer(xp, diff, lo)
            stats.rel_err.offer(xp, rel, lo)
            continue
        r, c = _as_compute(rule, r), _as_compute(rule, c)
        others = ~(xp.isfinite(r) & xp.isfinite(c))
        special = bool(others.any())
        if special:
            rnan, cnan = xp.isnan(r), xp.isnan(c)
            stats.nan_only_recorded += int(xp.count_nonzero(rnan & ~cnan))
            stats.nan_only_current += int(xp.count_nonzero(cnan & ~rnan))
            if not rule.equal_nan:
                stats.nan_both += int(xp.count_nonzero(rnan & cnan))
            infs = (xp.isinf(r) | xp.isinf(c)) & ~(rnan | cnan)
            stats.inf += int(xp.count_nonzero(infs & (c != r)))
        # Errors are measured over finite pairs only; NaN/inf are counted above.
        # putmask, not where(): the masks are sparse and where() is slow.
        diff = xp.abs(c - r)
        if special:
            xp.putmask(diff, others, 0)
        # x/0 is inf for x > 0 and 0/0 is 0, as torch reports it.
        rel = diff / xp.abs(r)
        xp.putmask(rel, diff == 0, 0)
        stats.abs_err.offer(xp, diff, lo)
        stats.rel_err.offer(xp, rel, lo)
        if stats.ulp is not None:
            dist = _ulp_distance(xp, rule, rec[lo:hi], cur[lo:hi], blocks)
            if special:
                xp.putmask(dist, others, 0)
            stats.ulp.offer(xp, dist, lo)
    return stats


# --- messages -------------------------------------------------------------------------------


def _index(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat_index, shape)) if shape else ()


def _show(value: Any) -> str:
    # str() of a NumPy scalar is its shortest round-trip form in its own dtype
    # (float32 1.3 prints as 1.3, not 1.2999999523162842).
    return str(value)


def _json_scalar(value: Any) -> Any:
    """A value the strict JSON encoder accepts: NaN/inf as strings, complex as [re, im]."""
    item = value.item() if hasattr(value, "item") else value
    if isinstance(item, bool) or item is None or isinstance(item, (int, str)):
        return item
    if isinstance(item, float):
        return item if math.isfinite(item) else str(item)
    if isinstance(item, complex):
        return [_json_scalar(item.real), _json_scalar(item.imag)]
    return str(value)


def _percent(count: int, size: int) -> str:
    return f"{100.0 * count / size:.3g}%"


def _fmt_err(value: float) -> str:
    return f"{value:.6g}"


def _shape_or_dtype_failure(
    name: str,
    what: str,
    recorded: Any,
    current: Any,
    extra: tuple[str, ...],
    payload: dict[str, Any],
) -> Comparison:
    return Comparison(
        ok=False,
        kind=KIND,
        summary=f"array {name!r}: {what} differs: recorded {recorded}, current {current}",
        place=f"array {name!r} {what}",
        recorded=f"{what} {recorded}",
        current=f"{what} {current}",
        details=(f"{what}: recorded {recorded}, current {current}", *extra),
        payload={"array": name, "check": what, **payload},
    )


def compare_arrays(
    name: str,
    recorded: Any,
    current: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_mismatch: int = 0,
    ulp: int | None = None,
    equal_nan: bool = True,
) -> Comparison:
    """Compare a recorded array with the current one: shape, then dtype, then values.

    The comparison runs on the current array's device: a CuPy array is
    compared by CuPy (the recorded host array is copied to it once) and only
    scalars and indices come back. ``rtol``/``atol`` default per dtype
    (:data:`DEFAULT_TOLERANCES`); an element fails when
    ``|current - recorded| > atol + rtol * |recorded|``, when NaN sits on one
    side only (NaN equals NaN when ``equal_nan``), or when an inf is not the
    same inf. ``ulp=N`` instead fails elements more than N units in the last
    place apart. The result passes while at most ``max_mismatch`` elements fail.
    """
    _check_args(name, rtol, atol, max_mismatch, ulp, equal_nan)
    xp = array_module(current)
    cur = _native(np.asarray(current)) if xp is np else current
    if xp is not np and _is_device_array(recorded):
        rec = recorded  # already on a device: never round-trip it through the host
    else:
        rec = _restore_extension_dtype(_native(_to_host(recorded)), cur.dtype)

    rshape, cshape = tuple(rec.shape), tuple(cur.shape)
    if rshape != cshape:
        extra = (
            ()
            if rec.dtype == cur.dtype
            else (f"dtype: recorded {_dtype_label(rec.dtype)}, current {_dtype_label(cur.dtype)}",)
        )
        return _shape_or_dtype_failure(
            name,
            "shape",
            rshape,
            cshape,
            extra,
            {"recorded": list(rshape), "current": list(cshape)},
        )
    if rec.dtype != cur.dtype:
        return _shape_or_dtype_failure(
            name,
            "dtype",
            _dtype_label(rec.dtype),
            _dtype_label(cur.dtype),
            (f"shape: {cshape}",),
            {"recorded": _dtype_label(rec.dtype), "current": _dtype_label(cur.dtype)},
        )

    rule = _resolve_rule(np.dtype(cur.dtype), rtol, atol, ulp, equal_nan)
    size = int(math.prod(cshape))
    device = _device_name(xp, cur)
    base = {
        "array": name,
        "shape": list(cshape),
        "dtype": _dtype_label(rule.dtype),
        "size": size,
        "device": device,
        **rule.as_payload(),
    }
    if size == 0:
        return Comparison.passed(**base, mismatches=0)

    with np.errstate(all="ignore"):
        rec_flat = _flat(xp.asarray(rec))  # the one host-to-device copy, if any
        cur_flat = _flat(cur)
        count = _count_mismatches(xp, rule, rec_flat, cur_flat)
        if count == 0:
            return Comparison.passed(**base, mismatches=0)
        stats = _statistics(xp, rule, rec_flat, cur_flat)

    def at(flat_index: int) -> tuple[tuple[int, ...], Any, Any]:
        return (
            _index(flat_index, cshape),
            _host_scalar(xp, rec_flat, flat_index),
            _host_scalar(xp, cur_flat, flat_index),
        )

    first_idx, first_rec, first_cur = at(stats.first)
    tolerated = f", more than max_mismatch={max_mismatch}" if max_mismatch else ""
    summary = (
        f"array {name!r}: {count:,} of {size:,} elements ({_percent(count, size)}) "
        f"differ {rule.criterion()}{tolerated}"
    )
    details = [
        f"shape {cshape}, dtype {_dtype_label(rule.dtype)}, device {device}",
        f"mismatched: {count:,} of {size:,} ({_percent(count, size)}); "
        f"tolerated: max_mismatch={max_mismatch}",
        f"tolerance: {rule.describe()}" + ("" if rule.equal_nan else ", equal_nan=False"),
    ]
    payload: dict[str, Any] = {
        **base,
        "check": "values",
        "mismatches": count,
        "fraction": count / size,
        "max_mismatch": max_mismatch,
        "first_mismatch": {
            "index": list(first_idx),
            "recorded": _json_scalar(first_rec),
            "current": _json_scalar(first_cur),
        },
    }
    if stats.abs_err is not None and stats.abs_err.value == 0:
        # Errors are measured over finite pairs; a worst of 0 would point at a match.
        details.append("max abs/rel error: no finite element differs (only NaN/inf mismatches)")
    for label, key, worst in (
        ("max abs error", "max_abs_error", stats.abs_err),
        ("max rel error", "max_rel_error", stats.rel_err),
        ("max ulp distance", "max_ulp_distance", stats.ulp),
    ):
        if worst is None or worst.index < 0 or not worst.value:
            continue
        idx, r_val, c_val = at(worst.index)
        exact = key == "max_ulp_distance" or (key == "max_abs_error" and _is_integer(rule))
        shown = str(int(worst.value)) if exact else _fmt_err(worst.value)
        details.append(
            f"{label}: {shown} at index {idx} (recorded {_show(r_val)}, current {_show(c_val)})"
        )
        payload[key] = {
            "value": int(worst.value) if exact else _json_scalar(worst.value),
            "index": list(idx),
            "recorded": _json_scalar(r_val),
            "current": _json_scalar(c_val),
        }
    details.append(
        f"first mismatch: index {first_idx} "
        f"(recorded {_show(first_rec)}, current {_show(first_cur)})"
    )
    nan_positions = stats.nan_only_recorded + stats.nan_only_current
    if nan_positions:
        details.append(
            f"NaN positions differ: {nan_positions:,} "
            f"(NaN only in recorded: {stats.nan_only_recorded:,}, "
            f"only in current: {stats.nan_only_current:,})"
        )
    if stats.nan_both:
        details.append(f"NaN vs NaN counted unequal (equal_nan=False): {stats.nan_both:,}")
    if stats.inf:
        details.append(f"inf mismatches (an inf must be the same inf): {stats.inf:,}")
    payload.update(
        nan_only_recorded=stats.nan_only_recorded,
        nan_only_current=stats.nan_only_current,
        nan_both_unequal=stats.nan_both,
        inf_mismatches=stats.inf,
    )
    if count <= max_mismatch:
        return Comparison.passed(**payload)
    return Comparison(
        ok=False,
        kind=KIND,
        summary=summary,
        place=f"array {name!r} index {first_idx}",
        recorded=_show(first_rec),
        current=_show(first_cur),
        details=tuple(details),
        payload=payload,
    )


# --- .npy blobs -----------------------------------------------------------------------------


def array_to_npy_bytes(array: Any) -> bytes:
    """The array as .npy bytes (host copy for CuPy), C order, no pickle.

    C order always, so equal values give equal bytes and one blob digest
    whatever the memory layout. ml_dtypes types (bfloat16...) are stored as
    raw voids of their size; :func:`compare_arrays` reads them back as the
    current array's dtype.
    """
    host = _to_host(array)
    if host.dtype.hasobject:
        raise ValueError(
            f"cannot store an array of dtype {host.dtype} as .npy without pickle; "
            "convert it to a numeric or string dtype first"
        )
    if not host.flags.c_contiguous:
        host = host.copy(order="C")
    buffer = io.BytesIO()
    np.save(buffer, host, allow_pickle=False)
    return buffer.getvalue()


def npy_bytes_to_array(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Parse .npy bytes (never unpickling); ValueError names what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f".npy data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(_NPY_MAGIC):
        raise ValueError(
            f"not a .npy blob: {len(data)} bytes that do not start with the \\x93NUMPY magic "
            f"(start: {data[:8]!r})"
        )
    stream = io.BytesIO(data)
    try:
        array = np.load(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, KeyError) as exc:
        raise ValueError(f"bad .npy blob ({len(data)} bytes): {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"bad .npy blob ({len(data)} bytes): not a single array")
    if stream.tell() != len(data):
        raise ValueError(
            f"bad .npy blob: {len(data) - stream.tell()} trailing bytes after the array data"
        )
    return array
