"""Exceptions raised by the sketches package."""

from __future__ import annotations

__all__ = ["ProfileFormatError"]


class ProfileFormatError(ValueError):
    """Raised when bytes cannot be decoded as a Driftline profile.

    Covers foreign input (wrong magic), unknown format versions, truncated data,
    checksum mismatches and malformed content inside an otherwise well-framed blob.

    >>> from sketches import DatasetProfile
    >>> try:
    ...     DatasetProfile.from_bytes(b"not a profile")
    ... except ProfileFormatError as e:
    ...     print(type(e).__name__)
    ProfileFormatError
    """
