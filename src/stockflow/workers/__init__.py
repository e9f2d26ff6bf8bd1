"""Background jobs: run inside the server process, or on demand from the command line."""
