"""A partner technician logs in and moves a unit through repair in a real browser."""

from __future__ import annotations

from tests.browser import browser_page, live_server, require_chromium, screenshot
from tests.factories import PASSWORD, load_catalog, make_partner, make_user
from tests.test_partner_repairs import ship_units_to


def test_partner_moves_a_unit_through_repair(make_app):
    require_chromium()
    app = make_app(SERVER_NAME=None)
    with app.app_context():
        load_catalog()
        make_partner("FIXIT", country="SE")
        number = ship_units_to(app.test_client(), "FIXIT", ["BR-1"])[0]
        make_user("partner", email="tech@fixit.example", partner_code="FIXIT")
    with live_server(app) as base, browser_page() as page:
        page.goto(f"{base}/login")
        page.get_by_label("Email").fill("tech@fixit.example")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Our units").click()
        row = page.locator("tr", has_text=number)
        assert "in transit" in row.inner_text()
        for status in ("received_at_partner", "diagnosing", "repairing", "repaired"):
            row = page.locator("tr", has_text=number)
            row.get_by_label("Next status").select_option(status)
            row.get_by_role("button", name="Update").click()
            page.wait_for_selector(f"text={number}: updated.")
        screenshot(page, "partner-1-repaired")
        assert "repaired" in page.locator("tr", has_text=number).inner_text()
