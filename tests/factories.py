"""Builders for test data, going through the real service functions."""

from __future__ import annotations

import io
import itertools
from datetime import date

from auth import service as auth_service
from auth.models import User
from catalog.importing import run_import
from common.actors import Actor
from partners import service as partner_service
from partners.models import Partner

TEST_ACTOR = Actor.system("tests")
PASSWORD = "correct horse battery"
_counter = itertools.count(1)


def make_partner(code: str | None = None, **fields: object) -> Partner:
    code = code or f"P{next(_counter):04d}"
    return partner_service.create_partner(
        code=code, name=fields.pop("name", f"Partner {code}"), actor=TEST_ACTOR, **fields
    )


def make_user(
    role: str,
    *,
    email: str | None = None,
    partner_code: str | None = None,
    password: str = PASSWORD,
) -> User:
    email = email or f"{role}{next(_counter)}@example.test"
    return auth_service.create_user(
        email=email,
        role=role,
        password=password,
        partner_code=partner_code,
        actor=TEST_ACTOR,
        hash_profile="fast-insecure-for-tests",
    )


def staff_token(role: str) -> str:
    user = make_user(role)
    return auth_service.create_api_token(email=user.email, actor=TEST_ACTOR).secret


def partner_key(code: str | None = None) -> tuple[Partner, str]:
    partner = make_partner(code)
    return partner, partner_service.issue_partner_key(
        partner_code=partner.code, actor=TEST_ACTOR
    ).secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def csv_bytes(header: str, *rows: str) -> io.BytesIO:
    return io.BytesIO(("\n".join((header, *rows)) + "\n").encode("utf-8"))


def load_catalog() -> None:
    """Two products with a BOM, three parts."""
    run_import(
        "products",
        csv_bytes(
            "sku,name,category,warranty_months,extended_warranty_months,exclusions,labor_minutes",
            "PH-1,Phone One,phone,24,12,water_damage;physical_damage,45",
            "TB-1,Tablet One,tablet,12,,,60",
        ),
        actor=TEST_ACTOR,
    )
    run_import(
        "parts",
        csv_bytes(
            "part_number,description,unit_cost",
            "MB-1,Main board,120.00",
            "BAT-1,Battery,20.50",
            "SCR-1,Screen,60",
        ),
        actor=TEST_ACTOR,
    )
    run_import(
        "bom",
        csv_bytes(
            "sku,part_number,max_qty",
            "PH-1,MB-1,1",
            "PH-1,BAT-1,1",
            "TB-1,SCR-1,1",
        ),
        actor=TEST_ACTOR,
    )


def purchase_row(
    serial: str, sku: str = "PH-1", bought: date = date(2025, 1, 15), email: str = "ann@example.com"
) -> str:
    return f"{serial},{sku},{bought.isoformat()},{email},Ann Example,SE"


PURCHASE_HEADER = "serial_number,sku,purchase_date,customer_email,customer_name,country"


def register_purchase(serial: str, *, sku: str = "PH-1", bought: date | None = None,
                      email: str = "ann@example.com") -> None:
    """One registered purchase (the catalog must be loaded)."""
    from datetime import UTC, datetime, timedelta

    bought = bought or (datetime.now(UTC).date() - timedelta(days=100))
    report = run_import("purchases", csv_bytes(PURCHASE_HEADER, purchase_row(serial, sku, bought,
                                                                             email)),
                        actor=TEST_ACTOR)
    assert report.rejected == 0, report.errors


def claim_body(serial: str = "SN1", **overrides: object) -> dict:
    body = {"serial_number": serial, "email": "ann@example.com", "fault_category": "display",
            "description": "The screen flickers and goes black."}
    body.update(overrides)
    return body


def mistyped(number: str) -> str:
    """The number with its check character changed: what a misread label looks like."""
    return number[:-1] + ("2" if number[-1] != "2" else "3")
