"""Wallaroo assays: their configurations (`config` table, kind `assay`, key = assay id) and their
scheduled results (`assay_results`, one row per (assay, window); a re-run replaces the row).

The configurations are :class:`stream.analysis.assays.Assay` documents, validated when read; that
module computes the results and imports this one, so the class is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from stream.store.client import Store
from stream.store.config import ConfigKind, ConfigRepository

if TYPE_CHECKING:
    from stream.analysis.assays import Assay

_RESULT_COLUMNS = ["assay_id", "model", "window_start", "window_end", "score", "status", "result", "created_at"]


class AssayRepository:
    """Assay configurations and their stored results."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = ConfigRepository(store)

    def put_assay(self, assay: Assay) -> Assay:
        self.config.put(ConfigKind.ASSAY, assay.model, assay.id, assay.model_dump(mode="json"))
        return assay

    def list_assays(self, model: str) -> list[Assay]:
        """The model's assays, oldest first."""
        from stream.analysis.assays import Assay

        items = [Assay.model_validate(d.body()) for d in self.config.documents(ConfigKind.ASSAY, model)]
        return sorted(items, key=lambda a: (a.created_at, a.id))

    def get_assay(self, assay_id: str) -> Assay | None:
        """The assay with this id, whichever model it belongs to."""
        from stream.analysis.assays import Assay

        found = self.config.documents(ConfigKind.ASSAY, key=assay_id)
        return Assay.model_validate(found[0].body()) if found else None

    def stored_results(self, assay_id: str) -> list[dict[str, Any]]:
        """The stored results of an assay, oldest window first."""
        rows = self.store.query_rows(
            f"SELECT result FROM {self.store.table('assay_results')} FINAL WHERE assay_id = {{id:String}} "
            "ORDER BY window_start", {"id": assay_id})
        return [orjson.loads(r[0]) for r in rows]

    def store_results(self, assay: Assay, results: Sequence[dict[str, Any]]) -> None:
        """Store results as `stream.analysis.assays.run` gives them (ISO window bounds, score, status)."""
        now = datetime.now(UTC)
        rows = [[assay.id, assay.model, datetime.fromisoformat(r["window_start"]),
                 datetime.fromisoformat(r["window_end"]), float(r["score"]), r["status"], orjson.dumps(r).decode(),
                 now] for r in results]
        self.store.insert("assay_results", rows, _RESULT_COLUMNS)
