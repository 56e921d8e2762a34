"""The settings of a CLI command: read from the environment, a bad one ends the command cleanly."""

from __future__ import annotations

import typer

from stream.connections import ConfigError
from stream.settings import Settings, load_settings


def load_cli_settings() -> Settings:
    """The settings of the environment; a bad one ends the command with one line naming it (no traceback,
    no secret) and exit code 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
