"""The roles a principal can hold."""

from __future__ import annotations

ADMIN = "admin"
SUPPORT = "support"
WAREHOUSE = "warehouse"
FINANCE = "finance"
PARTNER = "partner"

STAFF_ROLES = (ADMIN, SUPPORT, WAREHOUSE, FINANCE)
ALL_ROLES = (*STAFF_ROLES, PARTNER)
