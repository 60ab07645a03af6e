"""Finance opens the fraud desk, reads the funnel plot and confirms a flag in a real browser."""

from __future__ import annotations

from sqlalchemy import select

from common.extensions import db
from fraud.models import FraudFlag
from fraud.service import score_all
from tests.browser import browser_page, live_server, require_chromium, screenshot
from tests.factories import PASSWORD, TEST_ACTOR, load_catalog, make_user
from tests.test_fraud_flags import _peer_world


def test_finance_confirms_a_flag_after_reading_the_funnel_plot(make_app):
    require_chromium()
    app = make_app(SERVER_NAME=None)
    with app.app_context():
        load_catalog()
        _peer_world(fraud_doa=8)
        score_all(actor=TEST_ACTOR)
        make_user("finance", email="ann@finance.example")
        flag_id = db.session.scalar(select(FraudFlag.id).where(FraudFlag.kind == "statistical"))
    with live_server(app) as base, browser_page() as page:
        page.goto(f"{base}/login")
        page.get_by_label("Email").fill("ann@finance.example")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Fraud desk").click()
        row = page.locator("tr", has_text="FRAUD")
        assert "DOA 13.3% vs 4.0% expected for its product mix" in row.inner_text()
        screenshot(page, "finance-1-queue")
        row.get_by_role("link", name="FRAUD").click()
        funnel = page.get_by_role("img", name="DOA funnel plot")
        assert funnel.is_visible()
        # The partner's own dot is labelled and lies above the 99.8% limit: what finance reads.
        assert "FRAUD" in funnel.inner_html()
        screenshot(page, "finance-2-funnel")
        page.get_by_role("link", name=str(flag_id), exact=True).click()
        page.get_by_label("Amount to recover").fill("1250.00")
        page.get_by_label("Note (kept in the audit trail)").fill("Boards never came back")
        page.get_by_role("button", name="Confirm fraud").click()
        page.wait_for_selector("text=confirmed")
        screenshot(page, "finance-3-confirmed")
    with app.app_context():
        flag = db.session.scalar(select(FraudFlag).where(FraudFlag.kind == "statistical"))
        assert flag.status == "confirmed" and str(flag.recovery_amount) == "1250.00"
