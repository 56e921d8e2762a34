"""What an uploaded whylogs profile becomes: window rows, or reference profiles.

A profile upload (`kind` profile) is merged into the window of its dataset timestamp at the model's
granularity, in its segment (from the whylogs segment tags) and — as an event would — in the overall
segment too when it is a segment's profile. Each profile is its own source row of the window
(`stream.store.uploads`), so counts add and sketches merge with whatever the stream (or other
uploads) put there, and the analysis re-runs the window like any window that changed. Columns the
model's WhyLabs schema classifies as outputs are named `out.<column>`
(:func:`stream.events.whylogs.driftline_column`). A reference upload becomes one reference profile
per file, with the upload id as its id (``<id>-<part>`` for the later parts of a segmented reference).
"""

from __future__ import annotations

import polars as pl

from stream.config.models import ModelConfig
from stream.events.whylogs import WhylogsProfile, decode_upload
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.profiles import StoredWindow, write_windows
from stream.store.references import ReferenceStore
from stream.store.uploads import Upload, output_columns
from stream.worker.windows import window_bounds

__all__ = ["ingest_upload", "window_of"]


def window_of(timestamp_ms: int, granularity: str) -> tuple[int, int]:
    """(start, end) epoch ms of the window holding `timestamp_ms`, exactly as the stream assigns events.

    >>> window_of(3_600_000 * 5 + 17, "hourly")
    (18000000, 21600000)
    """
    start, end = window_bounds(pl.lit(timestamp_ms, dtype=pl.Int64), granularity)
    row = pl.select(start.alias("start"), end.alias("end")).row(0)
    return int(row[0]), int(row[1])


def _windows(model: ModelConfig, upload: Upload, decoded: list[WhylogsProfile],
             config_version: int) -> list[StoredWindow]:
    out: list[StoredWindow] = []
    for index, item in enumerate(decoded):
        start, end = window_of(item.dataset_timestamp_ms or upload.dataset_timestamp_ms, model.granularity)
        segments = [item.segment] if item.segment == "" else [item.segment, ""]
        out.extend(StoredWindow(model.name, model.granularity, segment, start, end, upload.part + index, item.profile,
                                0, 0, 0, [], config_version) for segment in segments)
    return out


def ingest_upload(store: Store, upload: Upload, data: bytes) -> str:
    """Decode an upload body and store what it holds; returns a one-line description of what was done.

    Raises :class:`~stream.events.whylogs.WhylogsFormatError` for bytes that are not whylogs v1
    profiles, and ``LookupError`` when the upload's model has been deleted since."""
    repo = ConfigRepository(store)
    model = repo.get_model(upload.model)
    if model is None:
        raise LookupError(f"model {upload.model!r} no longer exists")
    decoded = decode_upload(data, output_columns(store, model.name))
    if upload.kind == "reference":
        refs = ReferenceStore(store)
        ids = []
        for index, item in enumerate(decoded):
            part = upload.part + index
            profile_id = upload.upload_id if part == 0 else f"{upload.upload_id}-{part}"
            refs.put(model.name, upload.alias or profile_id, "whylogs", item.profile, segment=item.segment,
                     profile_id=profile_id)
            ids.append(profile_id)
        return f"reference profiles {', '.join(ids)}"
    windows = _windows(model, upload, decoded, repo.current_version())
    write_windows(store, upload.source_topic, windows)
    return f"{len(decoded)} profile(s) merged into {len(windows)} window row(s)"
