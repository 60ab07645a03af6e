"""ClaimSettings from the Flask config (the only Flask-aware bit the use cases need)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claims.service import ClaimSettings


def claim_settings(config: Mapping[str, Any]) -> ClaimSettings:
    return ClaimSettings(
        upload_dir=config["UPLOAD_DIR"],
        public_base_url=config["PUBLIC_BASE_URL"],
        doa_days=config["DOA_REPLACEMENT_DAYS"],
        review_after_claims=config["REPEAT_CLAIMS_REVIEW_THRESHOLD"],
        review_days=config["REVIEW_DAYS"],
    )
