"""Returned units and spare parts: receiving scans, locations and the stock-movement ledger."""
