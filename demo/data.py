"""Generate the demo data set as CSV text, so it loads through the real import path."""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta

PRODUCTS = [
    # sku, name, category, warranty, extended, exclusions, labor, released
    (
        "AC-PHN-X1",
        "Aftercare X1 Phone",
        "phone",
        24,
        12,
        "physical_damage;water_damage",
        45,
        "2022-03-01",
    ),
    (
        "AC-TAB-10",
        "Aftercare Tab 10",
        "tablet",
        24,
        0,
        "physical_damage;water_damage",
        50,
        "2021-09-15",
    ),
    (
        "AC-LAP-14",
        "Aftercare Book 14",
        "laptop",
        24,
        12,
        "physical_damage;water_damage;cosmetic",
        90,
        "2021-01-10",
    ),
    (
        "AC-HP-NC",
        "Aftercare NC Headphones",
        "audio",
        12,
        0,
        "physical_damage;cosmetic",
        30,
        "2022-06-01",
    ),
    (
        "AC-WAT-2",
        "Aftercare Watch 2",
        "wearable",
        12,
        12,
        "water_damage;physical_damage",
        35,
        "2023-02-20",
    ),
]

PARTS = [
    ("MB-X1", "X1 main board", "189.00"),
    ("SCR-X1", "X1 display assembly", "79.50"),
    ("BAT-X1", "X1 battery", "24.00"),
    ("CAM-X1", "X1 rear camera", "32.00"),
    ("MB-T10", "Tab 10 main board", "149.00"),
    ("SCR-T10", "Tab 10 display", "95.00"),
    ("BAT-T10", "Tab 10 battery", "29.00"),
    ("MB-L14", "Book 14 main board", "310.00"),
    ("KBD-L14", "Book 14 keyboard", "45.00"),
    ("SCR-L14", "Book 14 panel", "120.00"),
    ("FAN-L14", "Book 14 fan", "12.50"),
    ("DRV-NC", "NC driver unit", "18.00"),
    ("BAT-NC", "NC battery", "9.00"),
    ("PAD-NC", "NC ear pads", "6.50"),
    ("MB-W2", "Watch 2 main board", "88.00"),
    ("BAT-W2", "Watch 2 battery", "14.00"),
    ("SCR-W2", "Watch 2 display", "41.00"),
    ("USB-C", "USB-C port flex", "7.00"),
]

BOM = {
    "AC-PHN-X1": [("MB-X1", 1), ("SCR-X1", 1), ("BAT-X1", 1), ("CAM-X1", 1), ("USB-C", 1)],
    "AC-TAB-10": [("MB-T10", 1), ("SCR-T10", 1), ("BAT-T10", 1), ("USB-C", 1)],
    "AC-LAP-14": [("MB-L14", 1), ("KBD-L14", 1), ("SCR-L14", 1), ("FAN-L14", 2), ("USB-C", 2)],
    "AC-HP-NC": [("DRV-NC", 2), ("BAT-NC", 1), ("PAD-NC", 2)],
    "AC-WAT-2": [("MB-W2", 1), ("BAT-W2", 1), ("SCR-W2", 1)],
}

PARTNERS = [
    ("NORDFIX", "Nordfix Service AB", "SE", 7),
    ("IBERREP", "Iberia Reparaciones SL", "ES", 10),
    ("ALPSERV", "Alpen Service GmbH", "DE", 8),
    ("THAMES", "Thames Repair Ltd", "GB", 7),
    ("BALTECH", "Baltic Tech Repair OU", "EE", 12),
]

FIRST = [
    "Anna",
    "Lars",
    "Maria",
    "Jose",
    "Eva",
    "Johan",
    "Lucia",
    "Pablo",
    "Sara",
    "Erik",
    "Elena",
    "Nils",
    "Carmen",
    "Oskar",
    "Ines",
    "Karin",
    "Diego",
    "Ida",
    "Marta",
    "Leo",
]
LAST = [
    "Andersson",
    "Garcia",
    "Johansson",
    "Martinez",
    "Karlsson",
    "Lopez",
    "Nilsson",
    "Sanchez",
    "Eriksson",
    "Perez",
    "Larsson",
    "Gomez",
    "Olsson",
    "Diaz",
    "Persson",
]
COUNTRIES = ["SE", "SE", "ES", "ES", "DE", "GB", "EE", "NO", "FI", "DK"]
RETAILERS = ["Webshop", "ElectroMart", "NordicTech", "MediaCenter", "CityPhone"]


def _csv(header: list[str], rows: list[tuple]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def products_csv() -> bytes:
    return _csv(
        [
            "sku",
            "name",
            "category",
            "warranty_months",
            "extended_warranty_months",
            "exclusions",
            "labor_minutes",
            "released_on",
        ],
        PRODUCTS,
    )


def parts_csv() -> bytes:
    return _csv(["part_number", "description", "unit_cost"], PARTS)


def bom_csv() -> bytes:
    rows = [(sku, part, qty) for sku, lines in BOM.items() for part, qty in lines]
    return _csv(["sku", "part_number", "max_qty"], rows)


def purchases_csv(count: int, *, seed: int, today: date) -> bytes:
    """``count`` purchases over the last three years, deterministic for a seed."""
    rng = random.Random(seed)
    released = {sku: date.fromisoformat(rel) for sku, *_, rel in PRODUCTS}
    rows = []
    for index in range(count):
        sku = rng.choice(PRODUCTS)[0]
        start = max(released[sku], today - timedelta(days=3 * 365))
        bought = start + timedelta(days=rng.randrange(max((today - start).days, 1)))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{index}@example.com".lower()
        rows.append(
            (
                f"{sku.split('-')[1]}{100000 + index:07d}",
                sku,
                bought.isoformat(),
                email,
                f"{first} {last}",
                rng.choice(COUNTRIES),
                f"ORD-{500000 + index}",
                rng.choice(RETAILERS),
            )
        )
    return _csv(
        [
            "serial_number",
            "sku",
            "purchase_date",
            "customer_email",
            "customer_name",
            "country",
            "order_ref",
            "retailer",
        ],
        rows,
    )
