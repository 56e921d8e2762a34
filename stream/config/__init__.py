"""Configuration of record: models, validations and row filters (stored through `stream.store.config`)."""
