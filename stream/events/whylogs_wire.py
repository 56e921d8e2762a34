"""The protobuf wire format, as far as whylogs v1 profile files use it: a small reader and writer.

whylogs v1 files are length-delimited protobuf messages (see :mod:`stream.events.whylogs`). Their
messages use four wire types only — varint (0), 64-bit (1), length-delimited (2) and 32-bit (5) —
so a reader of ~100 lines replaces a dependency on the ``protobuf`` package (and a ``.proto``
compiled at build time). Every read is bounds-checked: truncated or hostile input raises
:class:`WireError`, never an ``IndexError`` or a huge allocation.

>>> msg = field_varint(1, 300) + field_bytes(2, b"hi") + field_double(3, 1.5)
>>> [(f.number, f.value) for f in read_fields(msg)]
[(1, 300), (2, b'hi'), (3, 4609434218613702656)]
>>> as_double(read_fields(msg)[2].value)
1.5
>>> read_delimited(delimited(msg), 0) == (msg, len(delimited(msg)))
True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Field", "WireError", "as_double", "as_signed", "delimited", "field_bytes", "field_double", "field_varint",
    "packed_varints", "read_delimited", "read_fields", "read_varint", "varint",
]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_DOUBLE = struct.Struct("<d")
_U64 = struct.Struct("<Q")
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not well-formed protobuf (truncated, bad wire type, overlong varint)."""


@dataclass(frozen=True)
class Field:
    """One field of a message: number, wire type and raw value (int, or bytes for length-delimited)."""

    number: int
    wire_type: int
    value: int | bytes


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    result, shift = 0, 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos + i + 1
        shift += 7
    raise WireError("varint longer than 10 bytes")


def read_fields(buf: bytes) -> list[Field]:
    """Every field of one message, in order (repeated fields appear once per occurrence)."""
    out: list[Field] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise WireError("truncated 64-bit field")
            (value,) = _U64.unpack_from(buf, pos)
            pos += 8
        elif wire_type == LENGTH:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise WireError(f"length-delimited field {number} of {size} bytes exceeds the message")
            value = bytes(buf[pos:pos + size])
            pos += size
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise WireError("truncated 32-bit field")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {number})")
        out.append(Field(number, wire_type, value))
    return out


def read_delimited(buf: bytes, pos: int) -> tuple[bytes, int]:
    """A varint-length-prefixed message at ``pos`` (whylogs' delimited framing) and the position after it."""
    size, pos = read_varint(buf, pos)
    if pos + size > len(buf):
        raise WireError(f"delimited message of {size} bytes exceeds the data")
    return bytes(buf[pos:pos + size]), pos + size


def as_double(raw: int | bytes) -> float:
    """A 64-bit field's value as an IEEE double."""
    if not isinstance(raw, int):
        raise WireError("expected a 64-bit field")
    value: float = _DOUBLE.unpack(_U64.pack(raw))[0]
    return value


def as_signed(raw: int | bytes) -> int:
    """A varint field's value as a two's-complement int64 (protobuf ``int64``)."""
    if not isinstance(raw, int):
        raise WireError("expected a varint field")
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def packed_varints(f: Field) -> list[int]:
    """The values of a repeated varint field occurrence, packed (proto3 default) or not."""
    if f.wire_type == VARINT:
        assert isinstance(f.value, int)
        return [f.value]
    if not isinstance(f.value, bytes):
        raise WireError(f"field {f.number}: expected varints")
    out, pos = [], 0
    while pos < len(f.value):
        value, pos = read_varint(f.value, pos)
        out.append(value)
    return out


def varint(value: int) -> bytes:
    """Encode an int (negative ones as 64-bit two's complement, like protobuf ``int64``)."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def field_varint(number: int, value: int) -> bytes:
    return _key(number, VARINT) + varint(value)


def field_bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _key(number, LENGTH) + varint(len(data)) + data


def field_double(number: int, value: float) -> bytes:
    return _key(number, FIXED64) + _DOUBLE.pack(value)


def field_packed(number: int, values: Iterable[int]) -> bytes:
    return field_bytes(number, b"".join(varint(v) for v in values))


def delimited(message: bytes) -> bytes:
    """``message`` with its varint length in front."""
    return varint(len(message)) + message
