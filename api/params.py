"""Parsing of query parameters shared by routers: times, segments, column lists."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import HTTPException

MIN_MS = 0  # 1970-01-01
MAX_MS = 7_258_118_400_000  # 2200-01-01
_DIGITS = re.compile(r"^-?\d{1,19}$")


def parse_time(value: str | None, name: str) -> int | None:
    """ISO-8601 (naive = UTC) or epoch milliseconds → epoch ms; 422 naming the parameter otherwise."""
    if value is None:
        return None
    text = value.strip()
    try:
        if _DIGITS.match(text):
            ms = int(text)
        else:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            ms = int(dt.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise HTTPException(422, f"invalid {name} {value[:100]!r}: use ISO-8601 (e.g. 2026-11-22T10:00:00Z) "
                                 "or epoch milliseconds") from None
    if not MIN_MS <= ms <= MAX_MS:
        raise HTTPException(422, f"{name} out of range: must be between 1970-01-01 and 2200-01-01")
    return ms


def time_range(start: str | None, end: str | None, default_span_ms: int, prefix: str = "") -> tuple[int, int]:
    """[start, end) in ms; end defaults to now, start to end - default_span_ms; 422 when start >= end."""
    end_ms = parse_time(end, f"{prefix}end")
    if end_ms is None:
        end_ms = int(datetime.now(UTC).timestamp() * 1000)
    start_ms = parse_time(start, f"{prefix}start")
    if start_ms is None:
        start_ms = max(MIN_MS, end_ms - default_span_ms)
    if start_ms >= end_ms:
        raise HTTPException(422, f"{prefix}start must be before {prefix}end")
    return start_ms, end_ms


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def segment_filter(segment: str | None) -> str | None:
    """Omitted → "" (overall); "*" → None (every segment); otherwise that canonical segment."""
    if segment is None:
        return ""
    if segment == "*":
        return None
    return segment


def column_list(columns: str | None) -> list[str] | None:
    if columns is None or not columns.strip():
        return None
    names = [c.strip() for c in columns.split(",") if c.strip()]
    if len(names) > 10_000:
        raise HTTPException(422, "columns: at most 10000 names")
    return names
