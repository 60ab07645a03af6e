"""A partner technician logs in, moves a unit through repair, records the parts and labor and
files the repair report, in a real browser."""

from __future__ import annotations

from common.actors import Actor
from inventory import service as inventory
from tests.browser import browser_page, live_server, require_chromium, screenshot
from tests.factories import PASSWORD, load_catalog, make_partner, make_user
from tests.test_partner_repairs import ship_units_to


def test_partner_repairs_a_unit_with_parts_and_files_the_report(make_app):
    require_chromium()
    app = make_app(SERVER_NAME=None)
    with app.app_context():
        load_catalog()
        make_partner("FIXIT", country="SE")
        number = ship_units_to(app.test_client(), "FIXIT", ["BR-1"])[0]
        inventory.move_parts(part_number="MB-1", quantity=2, from_location="supplier",
                             to_location="partner:FIXIT", reason="issued_to_partner",
                             actor=Actor.system("tests"))
        make_user("partner", email="tech@fixit.example", partner_code="FIXIT")
    with live_server(app) as base, browser_page() as page:
        page.goto(f"{base}/login")
        page.get_by_label("Email").fill("tech@fixit.example")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Our units").click()
        row = page.locator("tr", has_text=number)
        assert "in transit" in row.inner_text()
        # The first step from the list, as before; the rest from the unit's own page.
        row.get_by_label("Next status").select_option("received_at_partner")
        row.get_by_role("button", name="Update").click()
        page.wait_for_selector(f"text={number}: updated.")
        screenshot(page, "partner-1-units")
        page.get_by_role("link", name=number).click()
        for status in ("diagnosing", "repairing"):
            page.get_by_label("Next status").select_option(status)
            page.get_by_role("button", name="Update").click()
            page.wait_for_selector(f"text={number}: updated.")
        assert "repairing" in page.locator("h1").inner_text()
        screenshot(page, "partner-2-repairing")

        page.get_by_label("Next status").select_option("repaired")
        page.get_by_role("button", name="Update").click()
        page.wait_for_selector(f"text={number}: updated.")
        assert "repaired" in page.locator("h1").inner_text()

        # Parts and labor; one more main board than the BOM allows is refused kindly.
        page.get_by_label("Part 1", exact=True).select_option("MB-1")
        page.get_by_label("Quantity 1", exact=True).fill("2")
        page.get_by_label("Diagnosis code").fill("BOARD_FAIL")
        page.get_by_label("Labor minutes").fill("45")
        page.get_by_role("button", name="Submit report").click()
        alert = page.locator(".flash-error[role=alert]")
        assert "at most 1 of MB-1 per repair" in alert.inner_text()
        assert page.get_by_label("Diagnosis code").input_value() == "BOARD_FAIL"
        screenshot(page, "partner-3-report-refused")

        page.get_by_label("Quantity 1", exact=True).fill("1")
        page.get_by_role("button", name="Submit report").click()
        page.wait_for_selector(f"text={number}: repair report submitted.")
        assert page.locator("#report-status").inner_text() == "Pending finance review"
        parts = page.locator("#report-parts tbody tr")
        assert parts.count() == 1
        assert parts.first.inner_text().split()[:4] == ["MB-1", "1", "120.00", "120.00"]
        assert "165.00" in page.locator("dl.facts").last.inner_text()
        assert page.get_by_role("button", name="Submit report").count() == 0
        screenshot(page, "partner-4-report-filed")

        page.get_by_role("link", name="Our units", exact=True).click()
        listed = page.locator("tr", has_text=number).inner_text()
        assert "repaired" in listed and "Pending finance review" in listed
