"""Benchmarks and reference implementations; not part of the deployed code location."""
