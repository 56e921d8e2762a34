"""The `driftline` command line (entry points; the only part of `stream` that may import `api`)."""
