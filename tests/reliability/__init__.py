"""Reliability proof: races on PostgreSQL and injected faults (``make races``, ``make faults``)."""
