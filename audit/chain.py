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
    return hashlib.sha256(_canonical_json(fields).encode("utf-8")).hexdigest()


def _canonical_json(fields: Mapping[str, Any]) -> str:
    canonical: dict[str, Any] = {}
    for name in HASHED_FIELDS:
        value = fields[name]
        if isinstance(value, datetime):
            value = value.isoformat(timespec="microseconds")
        canonical[name] = value
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Stand-ins for the two fields only the chain's head knows (``hash_template``); a private-use
# character that canonical JSON keeps as it is.
_PREV_MARK = "\ue000prev"
_SEQ_MARK = "\ue000seq"


def hash_template(fields: Mapping[str, Any]) -> tuple[str, str]:
    """An event's canonical JSON around its ``prev_hash`` and ``seq``: ``(before, between)``.

    ``event_hash`` of the event equals SHA-256 of ``before + prev_hash + between + str(seq) +
    "}"`` (UTF-8), so the database can link events to its head in the same statement that
    writes them. The keys are sorted: ``prev_hash`` is followed only by ``reason`` and
    ``request_id`` (strings, whose quotes are escaped) and ``seq`` is last, so the last
    ``"prev_hash":`` is the event's own even when ``data`` holds such a key.
    """
    payload = _canonical_json(dict(fields, prev_hash=_PREV_MARK, seq=_SEQ_MARK))
    before, found, rest = payload.rpartition(f'"prev_hash":"{_PREV_MARK}"')
    seq_at_end = f'"seq":"{_SEQ_MARK}"}}'
    if not found or not rest.endswith(seq_at_end):
        raise ValueError("unexpected canonical form of an audit event")
    return before + '"prev_hash":"', '"' + rest[: -len(seq_at_end)] + '"seq":'
