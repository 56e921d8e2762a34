"""The `reference_profiles` table: reference profiles `ref-…` of models (WhyLabs Reference / omega-ml snapshot).

A row holds the profile (uploaded data profiled by `stream.analysis.references`, or a time range of
stored windows merged by `stream.store.profiles.rollup`) with its summary; `deleted` marks a removed
profile. Analyzers with a `Reference` baseline and drift against `?reference=` read the sketches
with :meth:`ReferenceStore.get_profile`.

>>> iso(0)
'1970-01-01T00:00:00Z'
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sketches import DatasetProfile
from stream.store.client import Store
from stream.store.profiles import ms_to_datetime

_COLUMNS = ["model", "profile_id", "name", "created_at", "source", "range_start", "range_end", "segment",
            "row_count", "summary", "profile", "deleted", "version"]


@dataclass
class ReferenceProfile:
    """One stored reference profile (its summary, not its sketches)."""

    model: str
    profile_id: str
    name: str
    created_at_ms: int
    source: str  # upload | time_range
    start_ms: int | None
    end_ms: int | None
    segment: str
    row_count: int
    summary: dict[str, Any]

    def to_dict(self, columns: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.profile_id, "model": self.model, "name": self.name, "created_at": iso(self.created_at_ms),
            "source": self.source, "start": None if self.start_ms is None else iso(self.start_ms),
            "end": None if self.end_ms is None else iso(self.end_ms), "segment": self.segment,
            "row_count": self.row_count, "column_names": sorted(self.summary.get("columns", {})),
        }
        if columns:
            out["columns"] = self.summary.get("columns", {})
        return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    return f"ref-{secrets.token_hex(8)}"


class ReferenceStore:
    """Reference profiles of models in the `reference_profiles` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, model: str, name: str, source: str, profile: DatasetProfile, *, start_ms: int | None = None,
            end_ms: int | None = None, segment: str = "", profile_id: str | None = None) -> ReferenceProfile:
        """Store a reference profile; `profile_id` (default a new `ref-…`) names it — storing again under
        the same id replaces it (a retried whylogs reference upload)."""
        now = datetime.now(UTC)
        ref = ReferenceProfile(model, profile_id or new_id(), name, int(now.timestamp() * 1000), source, start_ms,
                               end_ms, segment, profile.row_count, profile.summary())
        self.store.insert("reference_profiles", [[
            model, ref.profile_id, name, now, source,
            None if start_ms is None else ms_to_datetime(start_ms),
            None if end_ms is None else ms_to_datetime(end_ms), segment, profile.row_count,
            orjson.dumps(ref.summary, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
                         default=str).decode(),
            profile.to_bytes(), 0, time.time_ns()]], _COLUMNS)
        return ref

    def _select(self, model: str, profile_id: str | None) -> list[dict[str, Any]]:
        where = "model = {model:String} AND deleted = 0"
        params: dict[str, Any] = {"model": model}
        if profile_id is not None:
            where += " AND profile_id = {id:String}"
            params["id"] = profile_id
        return self.store.query_dicts(
            "SELECT profile_id, name, toUnixTimestamp64Milli(created_at) AS created_ms, source, "
            "toUnixTimestamp64Milli(range_start) AS start_ms, toUnixTimestamp64Milli(range_end) AS end_ms, "
            f"segment, row_count, summary FROM {self.store.table('reference_profiles')} FINAL WHERE {where} "
            "ORDER BY created_at, profile_id", params)

    @staticmethod
    def _ref(model: str, row: dict[str, Any]) -> ReferenceProfile:
        summary = row["summary"]
        return ReferenceProfile(
            model, row["profile_id"], row["name"], int(row["created_ms"]), row["source"],
            None if row["start_ms"] is None else int(row["start_ms"]),
            None if row["end_ms"] is None else int(row["end_ms"]), row["segment"], int(row["row_count"]),
            orjson.loads(summary))

    def list(self, model: str) -> list[ReferenceProfile]:
        return [self._ref(model, r) for r in self._select(model, None)]

    def get(self, model: str, profile_id: str) -> ReferenceProfile | None:
        rows = self._select(model, profile_id)
        return self._ref(model, rows[0]) if rows else None

    def get_profile(self, model: str, profile_id: str) -> DatasetProfile | None:
        """The stored sketches of a reference profile (for drift and Reference baselines)."""
        rows = self.store.query_rows(
            f"SELECT profile FROM {self.store.table('reference_profiles')} FINAL WHERE model = {{model:String}} "
            "AND profile_id = {id:String} AND deleted = 0", {"model": model, "id": profile_id}, binary=("profile",))
        return DatasetProfile.from_bytes(rows[0][0]) if rows else None

    def delete(self, model: str, profile_id: str) -> bool:
        if self.get(model, profile_id) is None:
            return False
        self._tombstone(model, [profile_id])
        return True

    def delete_all(self, model: str) -> int:
        """Delete every reference profile of `model` (when the model is deleted); how many there were."""
        ids = [r["profile_id"] for r in self._select(model, None)]
        if ids:
            self._tombstone(model, ids)
        return len(ids)

    def _tombstone(self, model: str, profile_ids: Sequence[str]) -> None:
        now, version = datetime.now(UTC), time.time_ns()
        self.store.insert("reference_profiles", [
            [model, profile_id, "", now, "deleted", None, None, "", 0, "{}", b"", 1, version]
            for profile_id in profile_ids], _COLUMNS)
