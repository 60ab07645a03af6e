"""Warehouse staff scan a box in at the scan station in a real browser, keyboard only."""

from __future__ import annotations

from tests.browser import browser_page, live_server, require_chromium, screenshot
from tests.factories import PASSWORD, claim_body, load_catalog, make_user, register_purchase


def test_scan_station_with_a_keyboard_wedge_scanner(make_app):
    require_chromium()
    app = make_app(SERVER_NAME=None)
    with app.app_context():
        load_catalog()
        register_purchase("BOX-1")
        rma = app.test_client().post("/api/v1/claims", json=claim_body("BOX-1")).json[
            "rma_number"]
        make_user("warehouse", email="dock@example.test")
    with live_server(app) as base, browser_page() as page:
        page.goto(f"{base}/login")
        page.get_by_label("Email").fill("dock@example.test")
        page.get_by_label("Password").fill(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/warehouse/scan?station=dock-1")
        # The station must focus its input by itself: no click before the first scan.
        page.wait_for_function("document.activeElement && document.activeElement.id === 'code'")
        page.keyboard.type(rma)  # what a USB scanner does: characters, then Enter
        page.keyboard.press("Enter")
        page.wait_for_selector(".feedback")
        screenshot(page, "warehouse-1-received")
        feedback = page.locator(".feedback")
        assert "RECEIVED" in feedback.inner_text()
        assert "feedback-success" in feedback.get_attribute("class")
        assert "BOX-1" in feedback.inner_text()
        page.wait_for_function("document.activeElement && document.activeElement.id === 'code'")
        page.keyboard.type("BOX-1")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=SERIAL RECORDED")
        page.keyboard.type(rma)
        page.keyboard.press("Enter")
        page.wait_for_selector(".feedback-warning")
        screenshot(page, "warehouse-2-repeat-scan")
        assert "ALREADY RECEIVED" in page.locator(".feedback").inner_text()
        rows = page.locator("table.recent tbody tr")
        assert rows.count() == 3
