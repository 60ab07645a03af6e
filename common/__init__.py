"""Shared infrastructure: configuration, extensions, errors, jobs, security."""
