"""Random secrets that are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets


def new_secret(kind: str) -> str:
    """``<kind>_`` + 256 random bits, URL-safe. ``kind`` lets us route a bearer to its table."""
    return f"{kind}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    # The secrets carry 256 bits of entropy, so a fast unsalted hash is enough here.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a secret that is safe to show in lists to tell keys apart."""
    return secret[:10]
