"""Warranty claims: filing, validation against purchases, review, customer tracking."""
