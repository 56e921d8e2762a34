"""Windows: keys, the state of an open window, and event-time assignment.

State is kept per *source partition*: event partitions are profiled independently and each one
writes its own row per window; readers merge the rows of a window (sketches merge exactly). Every
state remembers the highest source offset folded into it, so a replayed message (after a crash,
before the offset commit) is recognised and skipped: at-least-once delivery, exactly-once effect.

>>> key = WindowKey(3, "house-price", "hourly", 1_700_000_000_000, "in.city=Boston")
>>> WindowKey.decode(key.encode()) == key
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import orjson
import polars as pl

from sketches import DatasetProfile, ProfileFormatError

TRUNCATE_EVERY = {"minute": "1m", "hourly": "1h", "daily": "1d", "weekly": "1w", "monthly": "1mo"}
_HEADER = struct.Struct(">4sI")
_MAGIC = b"DLWS"


@dataclass(frozen=True, order=True)
class WindowKey:
    partition: int
    model: str
    granularity: str
    window_start: int  # epoch ms, UTC
    segment: str

    def encode(self) -> str:
        return f"{self.partition}|{self.model}|{self.granularity}|{self.window_start}|{self.segment}"

    @classmethod
    def decode(cls, text: str) -> WindowKey:
        partition, model, granularity, start, segment = text.split("|", 4)
        return cls(int(partition), model, granularity, int(start), segment)


def watermark_key(partition: int, model: str) -> str:
    """Table key of a model's watermark in one partition (max event time seen there)."""
    return f"{partition}|~watermark|{model}"


def horizon_key(key: WindowKey) -> str:
    """Table key of the latest closed-and-dropped window start of (partition, model, granularity)."""
    return f"{key.partition}|~flushed|{key.model}|{key.granularity}"


def key_partition(text: str) -> int:
    """Every table key starts with its source partition (the changelog partition too)."""
    return int(text.split("|", 1)[0])


@dataclass
class WindowState:
    """A window's partial profile for one source partition, plus what lineage needs."""

    window_end: int
    profile: DatasetProfile
    min_offset: int = -1
    max_offset: int = -1
    late_count: int = 0
    model_versions: list[str] = field(default_factory=list)
    config_version: int = 0
    last_update_wall: float = 0.0
    # CBPE expected-confusion sums per score column ([n, TP, FP, FN, TN], stream.analysis.cbpe) folded in
    # since `estimates_since` (the first offset folded since this state was opened or read back).
    estimates: dict[str, list[float]] = field(default_factory=dict)
    estimates_since: int = -1

    def to_bytes(self) -> bytes:
        header = orjson.dumps({
            "window_end": self.window_end, "min_offset": self.min_offset, "max_offset": self.max_offset,
            "late_count": self.late_count, "model_versions": self.model_versions,
            "config_version": self.config_version, "last_update_wall": self.last_update_wall,
            "estimates": self.estimates, "estimates_since": self.estimates_since,
        })
        return _HEADER.pack(_MAGIC, len(header)) + header + self.profile.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowState:
        if len(data) < _HEADER.size:
            raise ProfileFormatError("window state is truncated")
        magic, size = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ProfileFormatError("not a Driftline window state")
        header = orjson.loads(data[_HEADER.size:_HEADER.size + size])
        profile = DatasetProfile.from_bytes(data[_HEADER.size + size:])
        return cls(profile=profile, **header)


def window_bounds(timestamps: pl.Expr, granularity: str) -> tuple[pl.Expr, pl.Expr]:
    """(window_start, window_end) in epoch ms for epoch-ms timestamps; weeks start on Monday,
    months on the 1st (calendar months)."""
    every = TRUNCATE_EVERY[granularity]
    moment = pl.from_epoch(timestamps, time_unit="ms")
    start = moment.dt.truncate(every)
    return start.dt.epoch("ms"), start.dt.offset_by(every).dt.epoch("ms")
