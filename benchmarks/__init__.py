"""Benchmarks: the cost of keeping history, as ratios to plain SQLAlchemy.

Run ``python -m benchmarks --help``. Every measurement runs in a fresh process
(:mod:`benchmarks.worker`) that defines the models for one variant, prepares the
database, times one workload, checks its result and prints one JSON line; the runner
(:mod:`benchmarks.runner`) interleaves the variants and prints a markdown table.
These are not tests: nothing here is collected by pytest.
"""
