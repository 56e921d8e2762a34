"""Versioned binary container used by :class:`ColumnProfile` and :class:`DatasetProfile`.

Layout (all integers little-endian)::

    magic      4 bytes   b"DLPF" (dataset profile) or b"DLPC" (column profile)
    version    u16       FORMAT_VERSION
    hdr_len    u32       length of the orjson header
    header     hdr_len   orjson-encoded dict with the exact scalar fields
    n_blobs    u32       number of sketch blobs
    blobs      n x (u32 length + bytes)   datasketches ``serialize()`` output
    crc32      u32       zlib.crc32 over everything before it

Anything that does not match exactly raises :class:`ProfileFormatError`.

>>> blob = pack(b"DLPC", {"a": 1}, [b"xyz"])
>>> unpack(blob, b"DLPC")
({'a': 1}, [b'xyz'])
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from sketches.errors import ProfileFormatError

__all__ = ["COLUMN_MAGIC", "DATASET_MAGIC", "FORMAT_VERSION", "pack", "unpack"]

DATASET_MAGIC = b"DLPF"
COLUMN_MAGIC = b"DLPC"
FORMAT_VERSION = 1

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

T = TypeVar("T")


def pack(magic: bytes, header: dict[str, Any], blobs: Sequence[bytes]) -> bytes:
    """Frame ``header`` and ``blobs`` into the versioned container."""
    hdr = orjson.dumps(header)
    parts: list[bytes] = [magic, _U16.pack(FORMAT_VERSION), _U32.pack(len(hdr)), hdr, _U32.pack(len(blobs))]
    for b in blobs:
        parts.append(_U32.pack(len(b)))
        parts.append(bytes(b))
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body) & 0xFFFFFFFF)


def unpack(data: bytes, magic: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """Validate and split a container produced by :func:`pack`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProfileFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    what = "dataset profile" if magic == DATASET_MAGIC else "column profile"
    if len(data) < 4 or data[:4] != magic:
        raise ProfileFormatError(f"not a Driftline {what}: bad magic {data[:4]!r}, expected {magic!r}")
    if len(data) < 4 + 2 + 4 + 4 + 4:
        raise ProfileFormatError(f"truncated {what}: only {len(data)} bytes")
    (version,) = _U16.unpack_from(data, 4)
    if version != FORMAT_VERSION:
        raise ProfileFormatError(f"unsupported {what} format version {version} (this build reads {FORMAT_VERSION})")
    body, (crc,) = data[:-4], _U32.unpack_from(data, len(data) - 4)
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise ProfileFormatError(f"corrupt or truncated {what}: CRC32 mismatch")
    pos = 6
    (hlen,) = _U32.unpack_from(body, pos)
    pos += 4
    if pos + hlen + 4 > len(body):
        raise ProfileFormatError(f"truncated {what}: header length {hlen} exceeds data")
    try:
        header = orjson.loads(body[pos : pos + hlen])
    except orjson.JSONDecodeError as e:
        raise ProfileFormatError(f"corrupt {what} header: {e}") from None
    if not isinstance(header, dict):
        raise ProfileFormatError(f"corrupt {what} header: expected an object")
    pos += hlen
    (nblobs,) = _U32.unpack_from(body, pos)
    pos += 4
    blobs: list[bytes] = []
    for i in range(nblobs):
        if pos + 4 > len(body):
            raise ProfileFormatError(f"truncated {what}: blob {i} of {nblobs} missing")
        (blen,) = _U32.unpack_from(body, pos)
        pos += 4
        if pos + blen > len(body):
            raise ProfileFormatError(f"truncated {what}: blob {i} length {blen} exceeds data")
        blobs.append(body[pos : pos + blen])
        pos += blen
    if pos != len(body):
        raise ProfileFormatError(f"corrupt {what}: {len(body) - pos} trailing bytes")
    return header, blobs


def field(header: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str = "profile") -> Any:
    """Fetch ``header[key]`` checking its type, raising :class:`ProfileFormatError` otherwise."""
    if key not in header:
        raise ProfileFormatError(f"corrupt {what}: missing field {key!r}")
    value = header[key]
    if isinstance(value, bool) and kind is not bool and not (isinstance(kind, tuple) and bool in kind):
        raise ProfileFormatError(f"corrupt {what}: field {key!r} has type bool")
    if not isinstance(value, kind):
        raise ProfileFormatError(f"corrupt {what}: field {key!r} has type {type(value).__name__}")
    return value


def decode_sketch(factory: Callable[[bytes], T], blob: bytes, name: str) -> T:
    """Deserialize a datasketches blob, turning any failure into :class:`ProfileFormatError`."""
    try:
        return factory(blob)
    except Exception as e:  # datasketches raises RuntimeError/ValueError/IndexError variants
        raise ProfileFormatError(f"corrupt {name} sketch: {e}") from None
