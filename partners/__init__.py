"""Authorized service partners, their API keys and (later) repairs and SLAs."""
