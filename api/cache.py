"""In-process TTL caches of the lookups every authenticated request makes: key verification and, on the
ingest path, the model's configuration.

Each lookup is a store query (ClickHouse `FINAL` reads); ingest answers in a few milliseconds once they are
cached. The store stays the source of truth: an entry lives `seconds` (`DRIFTLINE_AUTH_CACHE_SECONDS`,
default 5), so a key revoked on any replica, or by the CLI against the store, stops working on every API
replica within that time, with no messaging between replicas. An expired key is refused at once (its expiry
is cached with it and checked on every request).

Keys are cached by the SHA-256 of the token (the token itself is not kept); an unknown token is cached as
unknown too, so a client retrying a bad key does not query the store each time (tokens are random: an
unknown token cannot become valid later). Only models that exist are cached: a model created after a 404
is found by the next request. Both caches are bounded (least recently used entries go first).
"""

from __future__ import annotations

import hashlib
import threading

from cachetools import TTLCache

from stream.config.models import ModelConfig
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.keys import ApiKey, verify_key

MAX_ENTRIES = 10_000


class Lookups:
    """The key and model caches of one API app (`app.state.lookups`); `seconds=0` turns them off."""

    def __init__(self, seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.seconds = seconds
        self._keys: TTLCache[str, ApiKey | None] = TTLCache(max_entries, seconds or 1)
        self._models: TTLCache[str, ModelConfig] = TTLCache(max_entries, seconds or 1)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe; sync dependencies run in threads

    def cached_key(self, token: str) -> tuple[bool, ApiKey | None]:
        """(whether `token` is cached, its cached key: None when unknown or revoked)."""
        if not self.seconds:
            return False, None
        digest = _digest(token)
        with self._lock:
            return digest in self._keys, self._keys.get(digest)

    def key(self, store: Store, token: str) -> ApiKey | None:
        """The key `token` names (None when unknown, revoked or expired), from the cache or the store."""
        cached, key = self.cached_key(token)
        if cached:
            return key
        key = verify_key(store, token)
        if self.seconds:
            with self._lock:
                self._keys[_digest(token)] = key
        return key

    def forget_key(self, key_id: str) -> None:
        """Drop the cached verifications of a key (revoked through this replica: refused at once here)."""
        with self._lock:
            for digest in [d for d, k in self._keys.items() if k is not None and k.key_id == key_id]:
                del self._keys[digest]

    def cached_model(self, name: str) -> ModelConfig | None:
        if not self.seconds:
            return None
        with self._lock:
            return self._models.get(name)

    def model(self, store: Store, name: str) -> ModelConfig | None:
        """The model's configuration (None when it does not exist), from the cache or the store."""
        config = self.cached_model(name)
        if config is None:
            config = ConfigRepository(store).get_model(name)
            if config is not None and self.seconds:
                with self._lock:
                    self._models[name] = config
        return config


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
