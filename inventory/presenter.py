"""What the station, the API and the exports show of scans and units."""

from __future__ import annotations

from typing import Any

from common.models import utcnow
from inventory.models import Unit
from inventory.service import ScanResult

UNIT_COLUMNS = ("rma_number", "sku", "expected_serial", "received_serial", "serial_mismatch",
                "status", "location", "grade", "received_at", "status_changed_at",
                "days_in_status")


def scan_view(result: ScanResult) -> dict[str, Any]:
    unit = result.unit
    return {
        "outcome": result.outcome, "severity": result.severity, "message": result.message,
        "next_action": result.next_action, "rma_number": result.rma_number,
        "sku": unit.sku if unit else None,
        "expected_serial": unit.expected_serial if unit else None,
        "received_serial": unit.received_serial if unit else None,
        "grade": unit.grade if unit else None,
        "location": unit.location if unit else None,
    }


def unit_view(unit: Unit) -> dict[str, Any]:
    return {
        "rma_number": unit.rma.rma_number, "sku": unit.sku,
        "expected_serial": unit.expected_serial, "received_serial": unit.received_serial,
        "serial_mismatch": unit.serial_mismatch, "status": unit.status,
        "location": unit.location, "grade": unit.grade, "received_at": unit.received_at,
        "status_changed_at": unit.status_changed_at,
        "days_in_status": (utcnow() - unit.status_changed_at).days,
    }
