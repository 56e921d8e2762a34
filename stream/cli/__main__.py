"""`python -m stream.cli …` runs the `driftline` command line."""

from stream.cli.main import app

app()
