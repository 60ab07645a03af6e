"""A customer files a claim in a real browser, opens the label and follows the tracking page."""

from __future__ import annotations

from tests.browser import browser_page, live_server, require_chromium, screenshot
from tests.factories import load_catalog, register_purchase


def test_customer_journey_in_chromium(make_app):
    require_chromium()
    app = make_app(WTF_CSRF_SSL_STRICT=False, SERVER_NAME=None)
    with app.app_context():
        load_catalog()
        register_purchase("WEB-1", email="carmen@example.com")
    with live_server(app) as base, browser_page() as page:
        page.goto(f"{base}/claim?lang=es")
        assert page.locator("html").get_attribute("lang") == "es"
        page.goto(f"{base}/claim")
        page.get_by_label("Serial number").fill("web-1")
        page.get_by_label("Email used for the purchase").fill("Carmen@Example.com")
        page.get_by_label("What is wrong?").select_option("battery")
        page.get_by_label("Describe the problem").fill("Battery drains in one hour.")
        page.get_by_label("Your name").fill("Carmen Díaz <b>bold</b>")
        page.get_by_label("Street address").fill("Calle Mayor 1")
        page.get_by_label("Postal code").fill("28013")
        page.get_by_label("City").fill("Madrid")
        page.get_by_label("Country (2 letters, e.g. SE)").fill("ES")
        screenshot(page, "customer-1-form")
        page.get_by_role("button", name="Send claim").click()
        page.wait_for_url("**/track/**")
        screenshot(page, "customer-2-tracking")
        body = page.locator("main").inner_text()
        assert "Approved" in body
        assert "Claim received" in body and "Return authorised" in body
        assert "What happens next" in body
        rma = page.locator("dd.rma").inner_text()
        assert rma.startswith("R") and len(rma.replace("-", "")) == 10
        label_link = page.get_by_role("link", name="Print return label (4x6 in)")
        label = page.request.get(label_link.get_attribute("href")
                                 if label_link.get_attribute("href").startswith("http")
                                 else base + label_link.get_attribute("href"))
        assert label.ok and label.headers["content-type"] == "application/pdf"
        assert label.body().startswith(b"%PDF")
        tracking_url = page.url
        page.goto(f"{base}/track")
        page.get_by_label("Claim or RMA number").fill(rma)
        page.get_by_label("Email").fill("carmen@example.com")
        page.get_by_role("button", name="Show my claim").click()
        page.wait_for_url("**/track/s/**")
        assert "Approved" in page.locator("main").inner_text()
        page.goto(tracking_url + "?lang=sv")
        screenshot(page, "customer-3-tracking-sv")
        assert page.locator("html").get_attribute("lang") == "sv"
