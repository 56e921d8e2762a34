"""Feed a datasketches HLL a whole batch with a handful of Python calls.

``hll_sketch.update`` takes one value per call, so a column of a million distinct floats costs a
million Python calls.  Most of them change nothing: once the sketch is in HLL mode a value only
matters if its *coupon* raises its register.  This module computes the sketch's own coupon of every
value with numpy — datasketches hashes a double as its 8 canonical bytes (``-0.0`` → ``0.0``, any
NaN → ``0x7ff8000000000000``) and a string as its UTF-8 bytes with MurmurHash3_x64_128, seed 9001;
the coupon's register is the low ``lg_k`` bits of the first hash word and its value the number of
leading zeros of the second word plus one (at most 63) — and then:

* while the sketch is in LIST/SET mode (it stores exact coupons), feeds every value, in order,
  reading the mode from the sketch between chunks;
* once it is in HLL mode, finds the values that set a new running maximum of their register (given
  the registers at the start of the batch, read from the sketch) and feeds only those, in order —
  every value left out would have been a no-op at its turn, so the sketch ends **byte for byte** in
  the state of feeding every value in the same order, HIP accumulator included;
* unless there are more than ``_IMAGE_MIN`` candidates (a large batch into a young sketch): then
  the batch's final registers are built as a datasketches HLL_8 image and merged in with
  ``hll_union``.  The registers are again exactly those of feeding every value; the result is
  marked out of order, like any union result, so its estimate is datasketches' composite
  (register-based) estimator rather than HIP.

Either way a merge with any other datasketches HLL gives exactly the estimate of merging sketches
fed every value: ``tests/sketches/test_sketches_compat.py``.

>>> import datasketches as ds, numpy as np
>>> values = np.random.default_rng(7).normal(size=3_000)
>>> ours = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
>>> theirs = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
>>> ours, fed = update_doubles(ours, values[:1_000])  # a young sketch: the exact path
>>> ours, _ = update_doubles(ours, values[1_000:])
>>> for v in values.tolist(): theirs.update(v)
>>> ours.serialize_compact() == theirs.serialize_compact()
True
>>> big = np.random.default_rng(8).normal(size=200_000)  # 200k new values: merged as an image
>>> ours, fed = update_doubles(ours, big)
>>> for v in big.tolist(): theirs.update(v)
>>> bool((_registers(ours) == _registers(theirs)).all()), fed
(True, 0)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias

import datasketches as ds
import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["LONG_STRING", "coupons", "double_keys", "string_coupons", "update_doubles", "update_strings"]

SEED = 9001  # datasketches DEFAULT_SEED
_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)
_F1 = np.uint64(0xFF51AFD7ED558CCD)
_F2 = np.uint64(0xC4CEB9FE1A85EC53)
_SEED = np.uint64(SEED)
_H0 = np.uint64(SEED ^ 8)  # an 8-byte key's hash words after h = seed; h ^= len
_S11, _S33, _S52 = (np.uint64(b) for b in (11, 33, 52))
_CHUNK = 16384  # values hashed per pass: the working buffers stay in the CPU cache
_HLL_MODE = 2  # low two bits of preamble byte 7: 0 LIST, 1 SET, 2 HLL
_HLL8_REGISTERS_AT = 40  # HLL_8 updatable image in HLL mode: 40-byte preamble, then one byte per register
_DIRECT_MAX = 1024  # values up to which plain per-value calls beat hashing (fresh or warm sketch, measured)
_IMAGE_MIN = 4096  # candidate raisers above which the batch's registers are merged in as one image
_OUT_OF_ORDER = 16  # preamble flag: estimate from the registers, not the HIP accumulator
LONG_STRING = 256  # UTF-8 bytes above which a string is fed to the sketch directly
_CANONICAL_NAN = np.uint64(0x7FF8000000000000)


def double_keys(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    """The 8-byte keys datasketches hashes for ``values`` (``-0.0`` → ``0.0``, NaN canonical)."""
    keys = (values + 0.0).view(np.uint64)  # x + 0.0 turns -0.0 into 0.0 and copies
    keys[np.isnan(values)] = _CANONICAL_NAN
    return keys


def _rotl(x: npt.NDArray[np.uint64], r: int, tmp: npt.NDArray[np.uint64]) -> None:
    np.left_shift(x, np.uint64(r), out=tmp)
    x >>= np.uint64(64 - r)
    x |= tmp


def _mix_k1(k: npt.NDArray[np.uint64], tmp: npt.NDArray[np.uint64]) -> None:
    k *= _C1
    _rotl(k, 31, tmp)
    k *= _C2


def _mix_k2(k: npt.NDArray[np.uint64], tmp: npt.NDArray[np.uint64]) -> None:
    k *= _C2
    _rotl(k, 33, tmp)
    k *= _C1


def _fmix64(k: npt.NDArray[np.uint64], tmp: npt.NDArray[np.uint64]) -> None:
    """MurmurHash3's 64-bit finalizer, in place (``tmp`` is scratch of the same shape)."""
    for c in (_F1, _F2):
        np.right_shift(k, _S33, out=tmp)
        k ^= tmp
        k *= c
    np.right_shift(k, _S33, out=tmp)
    k ^= tmp


def _finish(
    h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64], length: npt.NDArray[np.uint64] | np.uint64,
    tmp: npt.NDArray[np.uint64],
) -> None:
    """MurmurHash3_x64_128's finalization (after the blocks and the tail), in place."""
    h1 ^= length
    h2 ^= length
    h1 += h2
    h2 += h1
    _fmix64(h1, tmp)
    _fmix64(h2, tmp)
    h1 += h2
    h2 += h1


def _coupon_values(h2: npt.NDArray[np.uint64], out: npt.NDArray[np.uint8]) -> None:
    """Coupon values (leading zeros of the second hash word + 1, at most 63) into ``out``.

    The float64 exponent E of ``h2 >> 11`` (exact: below 2**53) gives the bit length, E - 1011.
    """
    exponent = (h2 >> _S11).astype(np.float64).view(np.uint64) >> _S52
    np.subtract(np.uint64(1076), exponent, out=exponent)
    out[:] = exponent
    tiny = np.flatnonzero(h2 < 2048)  # exponent 0 above: one key in 2**53
    if tiny.size:
        out[tiny] = [min(64 - int(w).bit_length(), 62) + 1 for w in h2[tiny].tolist()]


Coupons: TypeAlias = tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]
_U64: TypeAlias = npt.NDArray[np.uint64]


def _double_chunks(keys: npt.NDArray[np.uint64]) -> Iterator[Coupons]:
    """:func:`coupons` chunk by chunk: the working buffers stay in the CPU cache."""
    for lo in range(0, keys.size, _CHUNK):
        h1 = keys[lo : lo + _CHUNK] * _C1  # the 8-byte key is the tail's k1; no 16-byte blocks
        tmp = np.empty_like(h1)
        _rotl(h1, 31, tmp)
        h1 *= _C2
        # _finish with h2 = seed, folded: h1 = seed ^ k1 ^ 8; h2 ^= 8; h1 += h2; h2 += h1
        h1 ^= _H0
        h1 += _H0
        h2 = h1 + _H0
        _fmix64(h1, tmp)
        _fmix64(h2, tmp)
        h1 += h2
        h2 += h1
        vals = np.empty(h1.size, np.uint8)
        _coupon_values(h2, vals)
        yield h1.astype(np.uint32), vals


def coupons(keys: npt.NDArray[np.uint64]) -> Coupons:
    """(low 32 bits of the first hash word, coupon value 1..63) of MurmurHash3_x64_128(key, 9001).

    For 8-byte keys.  The register of a key in an HLL with ``lg_k`` is ``word & (2**lg_k - 1)``.
    Every step is an in-place numpy pass.
    """
    return _concat(_double_chunks(keys))


def _concat(chunks: Iterable[Coupons]) -> Coupons:
    parts = list(chunks)
    if not parts:
        return np.empty(0, np.uint32), np.empty(0, np.uint8)
    return np.concatenate([w for w, _ in parts]), np.concatenate([v for _, v in parts])


def _padded_words(arr: pa.LargeStringArray) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """(strings' UTF-8 bytes zero-padded to rows of 64-bit words, byte lengths) of a null-free array.

    Each row has room for every 16-byte block plus a 16-byte tail: the zero padding makes the
    MurmurHash3 tail words exactly what its byte-by-byte tail switch builds.
    """
    offsets = np.frombuffer(arr.buffers()[1], np.int64, len(arr) + 1, arr.offset * 8)
    lengths = np.diff(offsets)
    width = 16 * (int(lengths.max()) // 16 + 1)
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    starts = np.repeat(np.arange(len(arr)) * width - (offsets[:-1] - offsets[0]), lengths)
    padded = np.zeros(len(arr) * width, np.uint8)
    padded[starts + np.arange(data.size)] = data
    return padded.view("<u8").reshape(len(arr), width // 8), lengths.astype(np.uint64)


def _block_half(k: _U64, mix: Callable[[_U64, _U64], None], h: _U64, other: _U64, rot: int, add: int,
                live: npt.NDArray[np.bool_], tmp: _U64) -> None:
    """One half of a MurmurHash3 x64_128 body block: mix word `k` into `h` (in place, only where `live`)."""
    mix(k, tmp)
    k ^= h
    _rotl(k, rot, tmp)
    k += other
    k *= np.uint64(5)
    k += np.uint64(add)
    np.copyto(h, k, where=live)


def _string_chunks(arr: pa.LargeStringArray) -> Iterator[Coupons]:
    """:func:`string_coupons` chunk by chunk."""
    for lo in range(0, len(arr), _CHUNK):
        rows, lengths = _padded_words(arr.slice(lo, _CHUNK))
        h1 = np.full(rows.shape[0], _SEED, np.uint64)
        h2 = h1.copy()
        tmp = np.empty_like(h1)
        blocks = lengths // np.uint64(16)
        for j in range(int(blocks.max())):
            live = blocks > j
            _block_half(rows[:, 2 * j].copy(), _mix_k1, h1, h2, 27, 0x52DCE729, live, tmp)
            _block_half(rows[:, 2 * j + 1].copy(), _mix_k2, h2, h1, 31, 0x38495AB5, live, tmp)
        at = np.arange(rows.shape[0])
        k1 = rows[at, 2 * blocks.astype(np.intp)]
        k2 = rows[at, 2 * blocks.astype(np.intp) + 1]
        _mix_k1(k1, tmp)
        h1 ^= k1
        _mix_k2(k2, tmp)
        h2 ^= k2
        _finish(h1, h2, lengths, tmp)
        vals = np.empty(h1.size, np.uint8)
        _coupon_values(h2, vals)
        yield h1.astype(np.uint32), vals


def string_coupons(arr: pa.LargeStringArray) -> Coupons:
    """:func:`coupons` of strings (their UTF-8 bytes), for a null-free large_string array."""
    return _concat(_string_chunks(arr))


def _mode(hll: ds.hll_sketch) -> int:
    return hll.serialize_compact()[7] & 3


def _registers(hll: ds.hll_sketch) -> npt.NDArray[np.uint8]:
    """Register values of a sketch in HLL mode (read from its HLL_8 image)."""
    union = ds.hll_union(hll.lg_config_k)
    union.update(hll)
    image = union.get_result(ds.tgt_hll_type.HLL_8).serialize_updatable()
    return np.frombuffer(image, np.uint8, 1 << hll.lg_config_k, _HLL8_REGISTERS_AT)


def _candidates(chunks: Iterable[Coupons], start: npt.NDArray[np.uint8]) -> tuple[Coupons, npt.NDArray[np.intp],
                                                                                 npt.NDArray[np.uint8]]:
    """(registers and values, positions) of the values that may raise a register, and the final registers.

    Chunk by chunk, only values above their register's running maximum at the chunk's start are
    kept (any other one has an earlier value at least as large, which also keeps every later
    running maximum unchanged); :func:`_exact_raisers` decides among them.
    """
    mask = np.uint32(start.size - 1)
    running = start.copy()
    kept: list[Coupons] = []
    positions: list[npt.NDArray[np.intp]] = [np.empty(0, np.intp)]
    offset = 0
    for words, vals in chunks:
        regs = words & mask
        cand = np.flatnonzero(vals > running[regs])
        regs, high = regs[cand], vals[cand]
        np.maximum.at(running, regs, high)
        kept.append((regs, high))
        cand += offset
        positions.append(cand)
        offset += words.size
    return _concat(kept), np.concatenate(positions), running


def _image(lg_k: int, registers: npt.NDArray[np.uint8]) -> ds.hll_sketch:
    """An out-of-order HLL_8 sketch in HLL mode holding ``registers`` (datasketches' updatable layout).

    Preamble: 10 ints, serial version 1, family 7, lg_k, lg_arr 0, flags (out of order), cur_min 0,
    mode byte (HLL mode, HLL_8); then the HIP accumulator (unused out of order), kxq0 and kxq1
    (sums of 2^-register below / from 32), the number of zero registers and no aux entries.
    """
    inv = np.ldexp(1.0, -registers.astype(np.int32))
    preamble = struct.pack(
        "<8B3d2i", 10, 1, 7, lg_k, 0, _OUT_OF_ORDER, 0, _HLL_MODE | (2 << 2), 0.0,
        float(inv[registers < 32].sum()), float(inv[registers >= 32].sum()), int((registers == 0).sum()), 0,
    )
    return ds.hll_sketch.deserialize(preamble + registers.tobytes())


def _exact_raisers(
    regs: npt.NDArray[np.uint32], vals: npt.NDArray[np.uint8], start: npt.NDArray[np.uint8]
) -> npt.NDArray[np.intp]:
    """Positions, ascending, whose value exceeds every earlier value of their register and its ``start``.

    A stable sort by register keeps batch order within each register; one running maximum of
    ``register * 64 + value`` (values are below 64) then serves every register at once.
    """
    n = regs.size
    if n == 0:
        return np.empty(0, np.intp)
    small = regs.astype(np.uint16) if start.size <= 1 << 16 else regs  # numpy radix-sorts 16 bits
    order = np.argsort(small, kind="stable")
    r = regs[order].astype(np.int64)
    key = r * 64 + vals[order]
    before = np.empty_like(key)
    before[0] = -1
    np.maximum.accumulate(key[:-1], out=before[1:])
    keep = np.zeros(n, bool)
    keep[order] = key > np.maximum(before, r * 64 + start[r])
    return np.flatnonzero(keep)


def _feed(
    hll: ds.hll_sketch,
    n: int,
    take: Callable[[npt.NDArray[np.intp]], list[Any]],
    hashes: Callable[[int], Iterable[Coupons]],
) -> tuple[ds.hll_sketch, int]:
    """Update ``hll`` with a batch of ``n`` values, ``take(positions)`` of them as Python objects.

    ``hashes(start)`` gives the coupons of positions ``start..n-1`` in chunks.  Returns the
    updated sketch (``hll`` itself unless the batch was merged in as an image) and how many values
    were passed to ``hll.update``.
    """
    if n <= _DIRECT_MAX:  # hashing costs more than it saves
        list(map(hll.update, take(np.arange(n))))
        return hll, n
    lg_k = hll.lg_config_k
    chunk = max(8, 3 << max(lg_k - 5, 0)) + 1  # LIST/SET hold at most 3/4 * 2^(lg_k-3) coupons
    pos = 0
    while pos < n and _mode(hll) != _HLL_MODE:
        list(map(hll.update, take(np.arange(pos, min(pos + chunk, n)))))
        pos += chunk
    if pos >= n:
        return hll, n
    start = _registers(hll)
    (regs, vals), positions, final = _candidates(hashes(pos), start)
    if positions.size > _IMAGE_MIN:  # many raisers: one union beats thousands of calls
        union = ds.hll_union(lg_k)
        union.update(hll)
        union.update(_image(lg_k, final))
        return union.get_result(hll.tgt_type), pos
    picked = positions[_exact_raisers(regs, vals, start)] + pos
    list(map(hll.update, take(picked)))
    return hll, pos + int(picked.size)


def update_doubles(hll: ds.hll_sketch, values: npt.NDArray[np.float64]) -> tuple[ds.hll_sketch, int]:
    """Update ``hll`` with every one of ``values`` (see the module docstring); (sketch, values fed).

    Works for any lg_k and target type: the mode is read from the sketch, never assumed.
    """
    return _feed(
        hll, int(values.size), lambda at: values[at].tolist(), lambda start: _double_chunks(double_keys(values[start:]))
    )


def update_strings(hll: ds.hll_sketch, values: pa.Array) -> tuple[ds.hll_sketch, int]:
    """Update ``hll`` with every string of ``values`` (no nulls); (sketch, values fed).

    Same state as ``hll.update(s)`` for each string, those over ``LONG_STRING`` UTF-8 bytes first
    (fed directly: padding them would cost more), then the others in order.  Empty strings are
    skipped, as datasketches skips them.

    >>> import datasketches as ds, pyarrow as pa
    >>> words = pa.array(["x" * 500, ""] + [f"w{i % 3000}é" for i in range(20_000)])
    >>> ours, theirs = ds.hll_sketch(12), ds.hll_sketch(12)
    >>> ours, fed = update_strings(ours, words)
    >>> for w in words.to_pylist(): theirs.update(w)
    >>> bool((_registers(ours) == _registers(theirs)).all()), fed < 5_000
    (True, True)
    """
    arr = values.cast(pa.large_string())
    # Lengths from the offsets with numpy: pyarrow's compute kernels cost ~0.1-0.4 ms a call here.
    size = np.diff(np.frombuffer(arr.buffers()[1], np.int64, len(arr) + 1, arr.offset * 8))
    long_ = size > LONG_STRING
    fed = 0
    if long_.any():
        fed = len(longs := arr.filter(pa.array(long_)).to_pylist())
        list(map(hll.update, longs))
    keep = (size > 0) & ~long_
    if not keep.all():
        arr = arr.filter(pa.array(keep))
    # pa.array(at): given numpy indices, pyarrow's take costs ~0.4 ms a call
    hll, more = _feed(hll, len(arr), lambda at: arr.take(pa.array(at)).to_pylist(),
                      lambda start: _string_chunks(arr[start:]))
    return hll, fed + more
