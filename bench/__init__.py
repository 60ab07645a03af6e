"""Benchmarks that print figures (`python -m bench.<name>`); not part of the test suite."""
