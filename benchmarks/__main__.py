"""``python -m benchmarks``: the harness's command line."""

from benchmarks.cli import app

app()
