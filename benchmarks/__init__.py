"""Stockflow's load and throughput harness, run with ``python -m benchmarks``.

It lives outside the package and outside the test run: it measures Stockflow over HTTP and,
in the same run, the ceiling the database sets for the same work, so that the ratio between
the two holds on any machine. ``docs/benchmarks.md`` explains how to run and read it.
"""
