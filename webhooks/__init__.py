"""Outgoing webhooks: HMAC-signed event deliveries with retries and a delivery log."""
