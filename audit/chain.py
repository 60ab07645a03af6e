"""Pure hash-chain arithmetic: canonical serialisation and SHA-256 linking."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "entity_type",
    "entity_id",
    "action",
    "reason",
    "data",
    "request_id",
    "prev_hash",
)


def normalize_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Round-trip through JSON so what we hash is exactly what the database gives back."""
    return json.loads(json.dumps(dict(data or {}), default=str, sort_keys=True))


def event_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an event's hashed fields (prev_hash included)."""
    canonical: dict[str, Any] = {}
    for name in HASHED_FIELDS:
        value = fields[name]
        if isinstance(value, datetime):
            value = value.isoformat(timespec="microseconds")
        canonical[name] = value
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
