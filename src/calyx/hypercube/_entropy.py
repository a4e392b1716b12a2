"""Quantisation of factor arrays and entropy coding of the integers, vectorised with numpy.

Quantisation
    Uniform, with one step per slice along an axis (a factor column, a component):
    ``step = max |x| / (2^(bits - 1) - 1)`` over the slice, stored as float32; ``q = round(x / step)``.

Entropy coding
    Optionally after a *lag* transform (the differences ``q[i] - q[i - L]`` of the flattened array,
    which shrinks smooth data such as a mean along time), one of two coders; the encoder keeps the
    shortest output:

    - ``rice`` (id 1): zigzag-mapped integers ``u`` (``0, -1, 1, -2, ... -> 0, 1, 2, 3, ...``) in
      blocks of :data:`RICE_BLOCK` values, each block with its own Rice parameter ``k`` (0..24,
      the one giving the fewest bits among the three around ``log2`` of the block mean). Three byte
      strings: the parameters (one byte per block); the *unary* stream, holding for every value
      ``u >> k`` zero bits then a one bit; the *remainder* stream, holding the low ``k`` bits of
      every value, most significant first. Bits are packed most significant first and the last
      byte is padded with zeros. Splitting the unary parts from the fixed-width remainders makes
      both directions vectorisable. For the roughly Laplacian integers of quantised factors this
      is within a few percent of the order-0 entropy (measured in ``docs/format.md``).
    - ``lzma`` (id 2): the integers as little-endian int16, compressed with LZMA (xz container,
      preset 6); tried for arrays of at most 65536 values only (it is slow).

Every decoder checks lengths and ranges before allocating and raises
:class:`calyx.errors.FormatError` on any inconsistency.
"""

from __future__ import annotations

import lzma
import struct

import numpy as np
from numpy.typing import NDArray

from calyx.errors import FormatError, ParameterError

__all__ = [
    "CODER_LZMA",
    "CODER_RICE",
    "RICE_BLOCK",
    "decode_ints",
    "dequantise",
    "encode_ints",
    "encoded_size",
    "entropy_bits",
    "lag_candidates",
    "quantise",
    "rice_bytes",
]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

CODER_RICE = 1
CODER_LZMA = 2
RICE_BLOCK = 64
_MAX_K = 24
_RICE_HEAD = struct.Struct("<IHIII")  # n_values, block, n_k_bytes, n_unary_bytes, n_rem_bytes
#: Largest magnitude a stored integer may have (16-bit quantisation at most).
MAX_ABS_INT = (1 << 15) - 1
#: Largest magnitude of a coded integer (a difference of two stored integers).
_MAX_CODED = 1 << 16
#: Arrays up to this many values also try LZMA (slower, better on highly structured data).
_LZMA_MAX_VALUES = 1 << 16


# --- quantisation ---------------------------------------------------------------------------------


def quantise(x: FloatArray, *, bits: int, axis: int) -> tuple[IntArray, NDArray[np.float32]]:
    """Uniform quantisation with one step per slice along ``axis``.

    Parameters
    ----------
    x : np.ndarray
        Finite values.
    bits : int
        2..16; integers lie in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``.
    axis : int
        Axis whose every index gets its own step.

    Returns
    -------
    q : np.ndarray [shape=x.shape, dtype=int64]
    steps : np.ndarray [shape=(x.shape[axis],), dtype=float32]
        Positive steps (1 for an all-zero slice).
    """
    if not 2 <= bits <= 16:
        raise ParameterError(f"bits must be within 2..16, got {bits}")
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ParameterError("cannot quantise NaN or infinite values")
    moved = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    peak = np.max(np.abs(moved), axis=1) if moved.shape[1] else np.zeros(a.shape[axis])
    levels = (1 << (bits - 1)) - 1
    steps = np.where(peak > 0, peak / levels, 1.0).astype(np.float32)
    steps = np.where(steps > 0, steps, np.float32(1.0)).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = a.shape[axis]
    s64 = steps.astype(np.float64).reshape(shape)
    q = np.clip(np.round(a / s64), -levels, levels).astype(np.int64)
    return q, steps


def dequantise(q: IntArray, steps: NDArray[np.float32], *, axis: int) -> FloatArray:
    """Inverse of :func:`quantise`: ``q * step`` (float64)."""
    shape = [1] * q.ndim
    shape[axis] = q.shape[axis]
    return q.astype(np.float64) * steps.astype(np.float64).reshape(shape)


def entropy_bits(q: IntArray) -> float:
    """Order-0 empirical entropy of the integers times their count, bits (the ideal static coder)."""
    if q.size == 0:
        return 0.0
    _, counts = np.unique(q, return_counts=True)
    p = counts / q.size
    return float(-np.sum(counts * np.log2(p)))


# --- Rice coding ----------------------------------------------------------------------------------


def _zigzag(q: IntArray) -> NDArray[np.uint64]:
    return np.where(q >= 0, 2 * q, -2 * q - 1).astype(np.uint64)


def _unzigzag(u: NDArray[np.uint64]) -> IntArray:
    s = u.astype(np.int64)
    return np.where(s & 1, -((s + 1) >> 1), s >> 1)


def _best_k(u: NDArray[np.uint64], block: int) -> NDArray[np.uint8]:
    """Rice parameter of every block: the best of the three around ``log2(mean)`` (exact lengths)."""
    n = u.size
    n_blocks = -(-n // block)
    padded = np.zeros(n_blocks * block, dtype=np.uint64)
    padded[:n] = u
    blocks = padded.reshape(n_blocks, block)
    count = np.full(n_blocks, float(block))
    if n % block:
        count[-1] = n % block
    mean = blocks.sum(axis=1, dtype=np.float64) / count
    guess = np.clip(np.floor(np.log2(np.maximum(mean, 1.0))).astype(np.int64), 0, _MAX_K)
    best = guess.copy()
    best_len = np.full(n_blocks, np.inf)
    valid = (np.arange(n_blocks * block) < n).reshape(n_blocks, block)
    for delta in (-1, 0, 1):
        k = np.clip(guess + delta, 0, _MAX_K)
        length = np.sum(np.where(valid, (blocks >> k[:, None].astype(np.uint64)).astype(np.float64), 0.0), axis=1) + count * (1 + k)
        better = length < best_len
        best[better] = k[better]
        best_len[better] = length[better]
    return best.astype(np.uint8)


def rice_bytes(q: IntArray) -> int:
    """Size of :func:`encode_ints`'s Rice output for ``q`` (no lag), without building it."""
    u = _zigzag(np.asarray(q, dtype=np.int64).ravel())
    if u.size == 0:
        return _RICE_HEAD.size
    ks = _best_k(u, RICE_BLOCK)
    k_per = np.repeat(ks.astype(np.int64), RICE_BLOCK)[: u.size]
    unary = int(np.sum((u >> k_per.astype(np.uint64)).astype(np.int64))) + u.size
    rem = int(k_per.sum())
    return _RICE_HEAD.size + ks.size + -(-unary // 8) + -(-rem // 8)


def _rice_encode(q: IntArray) -> bytes:
    u = _zigzag(q.ravel())
    n = u.size
    ks = _best_k(u, RICE_BLOCK)
    k_per = np.repeat(ks.astype(np.int64), RICE_BLOCK)[:n]
    quot = (u >> k_per.astype(np.uint64)).astype(np.int64)
    # unary: quot zeros then a one
    ones_at = np.cumsum(quot + 1) - 1
    total_unary = int(ones_at[-1] + 1) if n else 0
    unary_bits = np.zeros(total_unary, dtype=np.uint8)
    unary_bits[ones_at] = 1
    # remainders: k bits each, most significant first
    offsets = np.concatenate([[0], np.cumsum(k_per)])
    rem_bits = np.zeros(int(offsets[-1]), dtype=np.uint8)
    rem = (u & ((np.uint64(1) << k_per.astype(np.uint64)) - np.uint64(1))).astype(np.int64)
    for k in np.unique(k_per):
        if k == 0:
            continue
        sel = np.nonzero(k_per == k)[0]
        shifts = np.arange(k - 1, -1, -1)
        bits = ((rem[sel, None] >> shifts[None, :]) & 1).astype(np.uint8)
        pos = offsets[sel, None] + np.arange(k)[None, :]
        rem_bits[pos.ravel()] = bits.ravel()
    k_bytes = ks.tobytes()
    unary = np.packbits(unary_bits).tobytes()
    rbytes = np.packbits(rem_bits).tobytes()
    return _RICE_HEAD.pack(n, RICE_BLOCK, len(k_bytes), len(unary), len(rbytes)) + k_bytes + unary + rbytes


def _rice_decode(data: bytes, n_expected: int, what: str) -> IntArray:
    if len(data) < _RICE_HEAD.size:
        raise FormatError(f"{what}: truncated Rice header")
    n, block, nk, nu, nr = _RICE_HEAD.unpack_from(data)
    if n != n_expected:
        raise FormatError(f"{what}: Rice stream holds {n} values, the array needs {n_expected}")
    if block < 1 or nk != -(-n // block) or _RICE_HEAD.size + nk + nu + nr != len(data):
        raise FormatError(f"{what}: inconsistent Rice stream lengths ({n}, {block}, {nk}, {nu}, {nr}, {len(data)} bytes)")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    off = _RICE_HEAD.size
    ks = np.frombuffer(data, dtype=np.uint8, count=nk, offset=off).astype(np.int64)
    if np.any(ks > _MAX_K):
        raise FormatError(f"{what}: Rice parameter above {_MAX_K}")
    k_per = np.repeat(ks, block)[:n]
    unary_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=nu, offset=off + nk))
    ones = np.flatnonzero(unary_bits)
    if ones.size < n:
        raise FormatError(f"{what}: the unary stream ends after {ones.size} of {n} values")
    ones = ones[:n]
    quot = np.diff(np.concatenate([[-1], ones])) - 1
    n_rem_bits = int(k_per.sum())
    if n_rem_bits > 8 * nr:
        raise FormatError(f"{what}: the remainder stream needs {n_rem_bits} bits, holds {8 * nr}")
    rem_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=nr, offset=off + nk + nu)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(k_per)])[:-1]
    rem = np.zeros(n, dtype=np.int64)
    for k in np.unique(k_per):
        if k == 0:
            continue
        sel = np.nonzero(k_per == k)[0]
        pos = offsets[sel, None] + np.arange(k)[None, :]
        weights = 1 << np.arange(k - 1, -1, -1)
        rem[sel] = rem_bits[pos] @ weights
    if np.any(quot > 2 * _MAX_CODED):
        raise FormatError(f"{what}: a coded value beyond the 17-bit range")
    u = (quot << k_per) | rem
    if np.any(u > 2 * _MAX_CODED):
        raise FormatError(f"{what}: a coded value beyond the 17-bit range")
    return _unzigzag(u.astype(np.uint64))


# --- either coder ---------------------------------------------------------------------------------


def lag_candidates(name: str, shape: tuple[int, ...], *, n_features: int) -> tuple[int, ...]:
    """Lags worth trying for a factor array: the feature stride of a ``mean`` (the same feature at
    consecutive time points; ``n_features`` is channels x features) and the row length of a
    matrix (consecutive rows)."""
    lags = []
    if name == "mean":
        lags.append(int(n_features))
    if len(shape) == 2 and shape[0] > 1:
        lags.append(int(shape[1]))
    return tuple(sorted(set(lags)))


def _apply_lag(q: IntArray, lag: int) -> IntArray:
    if lag <= 0 or lag >= q.size:
        return q
    r = q.copy()
    r[lag:] = q[lag:] - q[:-lag]
    return r


def _undo_lag(r: IntArray, lag: int) -> IntArray:
    if lag <= 0 or lag >= r.size:
        return r
    n = r.size
    rows = -(-n // lag)
    padded = np.zeros(rows * lag, dtype=np.int64)
    padded[:n] = r
    return np.cumsum(padded.reshape(rows, lag), axis=0).reshape(-1)[:n]


def encode_ints(q: IntArray, *, lags: tuple[int, ...] = (), coder: str = "best") -> tuple[int, int, bytes]:
    """Entropy-code integers (``|q| <= 2^15``); returns the coder id, the lag and the bytes.

    A *lag* ``L > 0`` codes the differences ``q[i] - q[i - L]`` (``i >= L``; the first ``L`` values
    as they are) of the flattened array, which shrinks smooth data (a mean along time, say). The
    encoder tries no lag and every lag in ``lags`` with the Rice coder, and LZMA for small arrays,
    and keeps the shortest output (ties go to the earlier: Rice, smaller lag).
    """
    a = np.asarray(q, dtype=np.int64).ravel()
    if a.size and int(np.max(np.abs(a))) > MAX_ABS_INT:
        raise ParameterError(f"integers must lie within +-{MAX_ABS_INT}")
    if coder not in ("rice", "lzma", "best"):
        raise ParameterError(f"coder must be 'rice', 'lzma' or 'best', got {coder!r}")
    options: list[tuple[int, int, bytes]] = []
    if coder in ("rice", "best"):
        best_lag, best_size = 0, rice_bytes(a)
        for lag in lags:
            if 0 < lag < a.size:
                size = rice_bytes(_apply_lag(a, lag))
                if size < best_size:
                    best_lag, best_size = lag, size
        options.append((CODER_RICE, best_lag, _rice_encode(_apply_lag(a, best_lag))))
    if coder == "lzma" or (coder == "best" and a.size <= _LZMA_MAX_VALUES):
        raw = a.astype("<i2").tobytes()
        options.append((CODER_LZMA, 0, lzma.compress(raw, preset=6)))
    return min(options, key=lambda item: len(item[2]))


def encoded_size(q: IntArray, *, lags: tuple[int, ...] = ()) -> int:
    """Bytes :func:`encode_ints` produces (``coder="best"``): exact, computed without packing the
    Rice streams; arrays small enough for LZMA are encoded to know its size."""
    a = np.asarray(q, dtype=np.int64).ravel()
    if a.size <= _LZMA_MAX_VALUES:
        return len(encode_ints(a, lags=lags)[2])
    return min([rice_bytes(a)] + [rice_bytes(_apply_lag(a, lag)) for lag in lags if 0 < lag < a.size])


def decode_ints(coder_id: int, data: bytes, n_values: int, *, lag: int = 0, what: str = "array") -> IntArray:
    """Inverse of :func:`encode_ints`; ``n_values`` is how many integers the caller expects."""
    if lag < 0 or (lag and lag >= max(n_values, 1)):
        raise FormatError(f"{what}: lag {lag} is not within 0..{max(n_values - 1, 0)}")
    if coder_id == CODER_RICE:
        r = _rice_decode(data, n_values, what)
    elif coder_id == CODER_LZMA:
        try:
            raw = lzma.LZMADecompressor().decompress(data, max_length=2 * n_values + 1)
        except lzma.LZMAError as exc:
            raise FormatError(f"{what}: corrupt LZMA data ({exc})") from exc
        if len(raw) != 2 * n_values:
            raise FormatError(f"{what}: LZMA data hold {len(raw)} bytes, {2 * n_values} expected")
        r = np.frombuffer(raw, dtype="<i2").astype(np.int64)
    else:
        raise FormatError(f"{what}: unknown coder id {coder_id}")
    q = _undo_lag(r, lag)
    if q.size and int(np.max(np.abs(q))) > MAX_ABS_INT:
        raise FormatError(f"{what}: a decoded value lies beyond +-{MAX_ABS_INT}")
    return q
