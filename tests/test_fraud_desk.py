"""The finance review desk: the flag queue, one flag's decisions, partner charts, the SVGs."""

from __future__ import annotations

import csv
import io
import math
import re
from decimal import Decimal

import pytest
from markupsafe import escape
from sqlalchemy import select

from audit.models import AuditEvent
from common.extensions import db
from fraud import charts
from fraud import verdicts as v
from fraud.models import FraudFlag, PaymentHold, ScoreRun
from fraud.service import score_all
from fraud.views import CSV_COLUMNS
from partners.models import RepairReport
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, TEST_ACTOR, load_catalog, make_partner, make_user
from tests.test_fraud_flags import _peer_world
from tests.test_repair_reports import repairing, report  # noqa: F401 - shared fixture


@pytest.fixture
def catalog(app):
    load_catalog()


def login(client, role: str, **fields: object):
    """Sign in through the real login form; returns the client for chaining."""
    user = make_user(role, **fields)
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": user.email, "password": PASSWORD,
                                "csrf_token": csrf_token_from(page)})
    return client


def add_flag(partner_code: str, amount: str, *, reason: str = "", status: str = "open",
             kind: str = "rule", signal: str = v.UNREGISTERED_SERIAL, score: float = 100.0,
             claim_ref: str | None = None) -> FraudFlag:
    """A flag row made by hand, for queue tests that need exact amounts and reasons."""
    flag = FraudFlag(fingerprint=f"{partner_code}:{signal}:{amount}:{reason}",
                     partner_id=_partner_id(partner_code), kind=kind, signal=signal, status=status,
                     claim_ref=claim_ref, score=score, reason=reason or f"{partner_code} {amount}",
                     amount_at_stake=Decimal(amount))
    db.session.add(flag)
    db.session.commit()
    return flag


def _partner_id(code: str) -> int:
    from partners.models import Partner

    found = db.session.scalar(select(Partner.id).where(Partner.code == code))
    return found if found is not None else make_partner(code).id


def scored_world() -> FraudFlag:
    """Real data and a real scoring run; returns FRAUD's statistical flag."""
    _peer_world(fraud_doa=8)
    score_all(actor=TEST_ACTOR)
    flag = db.session.scalar(select(FraudFlag).where(FraudFlag.kind == "statistical"))
    assert flag is not None and flag.partner.code == "FRAUD" and flag.status == "open"
    return flag


def html_of(response) -> str:
    return response.get_data(as_text=True)


def svg(html: str, chart_id: str) -> str:
    """The one inline SVG whose title id is ``chart_id``-title."""
    for match in re.finditer(r"<svg\b.*?</svg>", html, re.S):
        if f'id="{chart_id}-title"' in match.group(0):
            return match.group(0)
    raise AssertionError(f"no {chart_id} chart on the page")


# --- who may see the desk ------------------------------------------------------------------


def test_the_desk_is_for_finance_and_admin_only(app, catalog):
    assert "fraud_desk" in app.blueprints, "register fraud.pages.bp in app.py"
    flag = add_flag("SHOP", "10.00")
    pages = ["/finance/flags", "/finance/flags.csv", f"/finance/flags/{flag.id}",
             "/finance/partners/SHOP", "/finance/funnel"]
    anonymous = app.test_client()
    for url in pages:
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    for role, extra, expected in (("support", {}, 403), ("partner", {"partner_code": "SHOP"}, 403),
                                  ("warehouse", {}, 403), ("finance", {}, 200),
                                  ("admin", {}, 200)):
        client = login(app.test_client(), role, **extra)
        for url in pages:
            assert client.get(url).status_code == expected, (role, url)


# --- the queue -----------------------------------------------------------------------------


def test_queue_shows_open_flags_most_money_first_with_a_summary(client, catalog):
    add_flag("AAA", "50.00", reason="middle one")
    add_flag("BBB", "900.00", reason="biggest one", kind="statistical", signal=v.DOA_RATE,
             score=4.2)
    add_flag("AAA", "5.00", reason="smallest one")
    add_flag("CCC", "5000.00", reason="already dismissed", status="dismissed")
    login(client, "finance")
    html = html_of(client.get("/finance/flags"))
    positions = [html.index(reason) for reason in ("biggest one", "middle one", "smallest one")]
    assert positions == sorted(positions)
    assert "already dismissed" not in html  # the default filter is open flags
    assert "3 open" in html and "955.00 at stake" in html
    assert "Dead-on-arrival rate above its product mix" in html  # signal in plain words
    assert 'href="/finance/partners/BBB"' in html
    assert "No scoring run yet" in html and "Score now" in html


def test_queue_filters_by_status_signal_partner_and_kind(client, catalog):
    add_flag("AAA", "50.00", reason="rule on AAA")
    add_flag("BBB", "900.00", reason="doa on BBB", kind="statistical", signal=v.DOA_RATE)
    add_flag("CCC", "70.00", reason="dismissed on CCC", status="dismissed")
    login(client, "finance")

    def reasons(query: str) -> set[str]:
        html = html_of(client.get("/finance/flags?" + query))
        return {r for r in ("rule on AAA", "doa on BBB", "dismissed on CCC") if r in html}

    assert reasons("status=all") == {"rule on AAA", "doa on BBB", "dismissed on CCC"}
    assert reasons("status=dismissed") == {"dismissed on CCC"}
    assert reasons("signal=doa_rate") == {"doa on BBB"}
    assert reasons("partner=aaa") == {"rule on AAA"}
    assert reasons("kind=rule&status=all") == {"rule on AAA", "dismissed on CCC"}
    assert reasons("status=guilty") == {"rule on AAA", "doa on BBB"}  # back to the default
    html = html_of(client.get("/finance/flags?partner=aaa&kind=rule"))
    assert 'href="/finance/flags.csv?' in html and "partner=AAA" in html and "kind=rule" in html


def test_queue_pages_fifty_flags_at_a_time(client, catalog):
    for n in range(1, 53):
        add_flag("AAA", f"{n}.00", reason=f"flag worth {n:02d}")
    login(client, "finance")
    first = html_of(client.get("/finance/flags"))
    assert "flag worth 52" in first and "flag worth 03" in first
    assert "flag worth 02" not in first and "Page 1 of 2" in first
    second = html_of(client.get("/finance/flags?page=2"))
    assert "flag worth 02" in second and "flag worth 01" in second
    assert "flag worth 03" not in second
    assert "flag worth 01" in html_of(client.get("/finance/flags?page=99"))  # clamped


def test_csv_download_keeps_the_filters_and_neutralises_formulas(client, catalog):
    add_flag("AAA", "75.00", reason='=HYPERLINK("http://evil.example","refund")')
    add_flag("BBB", "10.00", reason="other partner")
    login(client, "finance")
    response = client.get("/finance/flags.csv?partner=AAA")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(html_of(response))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["partner_code"] == "AAA" and row["amount_at_stake"] == "75.00"
    assert row["reason"].startswith("'=HYPERLINK")


def test_score_now_queues_a_run_and_the_queue_shows_it(client, catalog):
    login(client, "finance")
    page = html_of(client.get("/finance/flags"))
    response = client.post("/finance/flags/score", data={"csrf_token": csrf_token_from(page)},
                           follow_redirects=True)
    html = html_of(response)
    assert response.status_code == 200 and "Scoring queued" in html
    run = db.session.scalar(select(ScoreRun))  # no Redis in tests: the job ran inline
    assert run is not None and run.finished_at is not None
    assert "Last scoring run" in html and "No scoring run yet" not in html


# --- one flag and finance's decisions -------------------------------------------------------


def test_flag_page_shows_evidence_and_the_claims_behind_it(client, catalog):
    flag = scored_world()
    login(client, "finance")
    html = html_of(client.get(f"/finance/flags/{flag.id}"))
    assert escape(flag.reason) in html
    top = flag.evidence["signals"][0]
    assert escape(top["reason"]) in html and f"{top['observed']:.1f}" in html
    assert html.count("<td>DOA</td>") == 24  # FRAUD's DOA claims in the window
    assert "Confirm fraud" in html and "Withhold payments" in html


def _post(client, url: str, form_page: str, **data: str):
    return client.post(url, data={"csrf_token": csrf_token_from(form_page), **data})


def test_confirm_with_a_recovery_amount_records_the_decision_and_a_double_submit_is_harmless(
        client, catalog):
    flag = scored_world()
    login(client, "finance")
    url = f"/finance/flags/{flag.id}"
    page = html_of(client.get(url))
    data = {"decision": "confirm", "recovery_amount": "1,250.50", "note": "Boards never failed"}
    done = _post(client, url + "/decision", page, **data)
    assert done.status_code == 302 and done.headers["Location"].endswith(url)
    db.session.expire_all()
    confirmed = db.session.get(FraudFlag, flag.id)
    assert confirmed.status == "confirmed" and confirmed.recovery_amount == Decimal("1250.50")
    event = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "fraud_flag.confirmed", AuditEvent.entity_id == str(flag.id)))
    assert event is not None and event.reason == "Boards never failed"
    again = _post(client, url + "/decision", page, **data)  # the stale page, submitted twice
    assert again.status_code == 302
    html = html_of(client.get(url))
    assert "already decided" in html and "confirmed now" in html
    assert "Nothing more to decide" in html


def test_confirm_without_an_amount_says_so_and_changes_nothing(client, catalog):
    flag = scored_world()
    login(client, "finance")
    url = f"/finance/flags/{flag.id}"
    page = html_of(client.get(url))
    for amount, message in (("", "A recovery amount is required"),
                            ("lots", "The recovery amount is not an amount"),
                            ("-5", "The recovery amount is out of range")):
        refused = _post(client, url + "/decision", page, decision="confirm",
                        recovery_amount=amount, note="Proven beyond doubt")
        html = html_of(refused)
        assert refused.status_code == 422 and message in html, amount
        assert "Proven beyond doubt" in html  # what was typed is kept
    db.session.expire_all()
    assert db.session.get(FraudFlag, flag.id).status == "open"
    assert db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "fraud_flag.confirmed")) is None


def test_dismiss_needs_a_reason_and_then_sticks(client, catalog):
    flag = add_flag("AAA", "80.00")
    login(client, "finance")
    url = f"/finance/flags/{flag.id}"
    page = html_of(client.get(url))
    blank = _post(client, url + "/decision", page, decision="dismiss", note="  ")
    assert blank.status_code == 422 and "A note is required" in html_of(blank)
    done = _post(client, url + "/decision", page, decision="dismiss",
                 note="Serial registered late by the shop")
    assert done.status_code == 302
    db.session.expire_all()
    dismissed = db.session.get(FraudFlag, flag.id)
    assert dismissed.status == "dismissed" and dismissed.dismissed_amount == Decimal("80.00")
    assert f"Flag {flag.id} dismissed" in html_of(client.get(url))


def test_asking_the_partner_for_evidence_moves_the_flag_to_awaiting(client, catalog):
    flag = add_flag("AAA", "80.00")
    login(client, "admin")
    url = f"/finance/flags/{flag.id}"
    page = html_of(client.get(url))
    done = _post(client, url + "/decision", page, decision="request_evidence",
                 note="Send the replaced boards back")
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(FraudFlag, flag.id).status == "awaiting_evidence"
    html = html_of(client.get(url))
    assert "Awaiting the partner&#39;s evidence" in html and "Ask for evidence" not in html
    assert "fraud_flag.awaiting_evidence" in html  # the audit history on the page


def test_withholding_payments_holds_the_unpaid_reports_and_says_how_many(
        client, repairing):  # noqa: F811
    number, headers = repairing
    report_id = report(client, headers, number).json["id"]
    flag = add_flag("SHOP", "165.00", signal=v.PART_OUTSIDE_BOM,
                    claim_ref=f"report:{report_id}")
    login(client, "finance")
    url = f"/finance/flags/{flag.id}"
    page = html_of(client.get(url))
    blank = _post(client, url + "/hold", page, note="")
    assert blank.status_code == 422 and "A note is required" in html_of(blank)
    held = _post(client, url + "/hold", page, note="Board outside the BOM")
    assert held.status_code == 302
    assert db.session.get(RepairReport, report_id).status == "withheld"
    hold = db.session.scalar(select(PaymentHold))
    assert hold.flag_id == flag.id and hold.report_id == report_id
    html = html_of(client.get(url))
    assert "Payment withheld on 1 repair report(s)" in html and "still held" in html
    _post(client, url + "/hold", page, note="Clicked twice")
    assert "No further unpaid repair reports" in html_of(client.get(url))


def test_withholding_on_a_decided_flag_is_refused_kindly(client, catalog):
    flag = add_flag("AAA", "80.00", status="confirmed")
    login(client, "finance")
    url = f"/finance/flags/{flag.id}"
    response = client.post(url + "/hold", data={
        "csrf_token": csrf_token_from(html_of(client.get("/finance/flags"))), "note": "late"},
        follow_redirects=True)
    assert response.status_code == 200
    assert "Payments cannot be withheld" in html_of(response)


def test_an_unknown_flag_or_partner_is_a_friendly_404(client, catalog):
    login(client, "finance")
    assert client.get("/finance/flags/424242").status_code == 404
    assert client.get("/finance/partners/NOPE").status_code == 404


# --- partner drill-down and the funnel -------------------------------------------------------


def test_partner_page_highlights_it_on_the_funnel_among_every_partner_with_volume(
        client, catalog):
    scored_world()
    make_partner("IDLE")  # no claims: no expectation, no dot
    login(client, "finance")
    html = html_of(client.get("/finance/partners/fraud"))
    funnel = svg(html, "funnel")
    assert funnel.count("<circle") == 14  # 12 honest partners, FRAUD and TABLETS
    assert 'role="img"' in funnel and 'aria-labelledby="funnel-title funnel-desc"' in funnel
    highlighted = re.findall(r'<g class="dot[^"]*highlight">.*?</g>', funnel, re.S)
    assert len(highlighted) == 1 and ">FRAUD</text>" in highlighted[0]
    assert 'class="dot flagged highlight"' in funnel  # FRAUD is also flagged: a square frame
    assert funnel.count('class="limit"') == 4  # 95% and 99.8%, upper and lower
    assert "IDLE" not in funnel
    trend = svg(html, "trend")
    assert "2025-01" in trend and 'class="observed"' in trend and 'class="expected"' in trend
    assert trend.count('class="flagged-months"') == 1  # the flag's window, one shaded run
    assert "2025-01 to 2025-03: in a flagged window" in trend
    assert "<summary>Numbers per month</summary>" in html and "in a flagged window" in html
    assert html.count('<tr class="fraud-highlight">') == 1  # its row in the funnel's numbers


def test_funnel_page_labels_every_partner_on_hover(client, catalog):
    scored_world()
    login(client, "finance")
    html = html_of(client.get("/finance/funnel"))
    funnel = svg(html, "funnel")
    assert '<details class="fraud-numbers" open>' in html and "fraud-highlight" not in html
    titles = re.findall(r'<g class="dot[^"]*"><title>([^<]*)</title>', funnel)
    assert sorted(t.split(":")[0] for t in titles) == sorted(
        [f"H{n:02d}" for n in range(12)] + ["FRAUD", "TABLETS"])
    assert 'class="dot highlight"' not in funnel and "highlight" not in funnel


def test_funnel_page_with_no_claims_says_so(client, catalog):
    login(client, "finance")
    html = html_of(client.get("/finance/funnel"))
    assert "No partner has claims to compare yet" in svg(html, "funnel")


# --- chart builders on tiny inputs ----------------------------------------------------------


def test_funnel_svg_escapes_partner_codes_and_hover_text():
    dots = [charts.FunnelDot("<script>alert(1)</script>", 4.0, 2.0, hover='"&<b>', flagged=True,
                             highlight=True)]
    out = str(charts.funnel_svg(dots, []))
    assert "<script>" not in out and "<b>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "&#34;&amp;&lt;b&gt;" in out
    assert out.count("<circle") == 1 and out.count("<rect x=") >= 1


def test_funnel_svg_without_usable_dots_renders_a_no_data_chart():
    for dots in ([], [charts.FunnelDot("ZERO", 0.0, math.nan),
                      charts.FunnelDot("INF", math.inf, 1.0)]):
        out = str(charts.funnel_svg(dots, [charts.Limit("95%", [0.0, 1.0], [math.nan, 0.1],
                                                        [math.nan, 3.0])]))
        assert out.startswith("<svg") and out.endswith("</svg>")
        assert "No partner has claims" in out and "<circle" not in out


def test_funnel_svg_draws_limits_and_skips_their_undefined_points():
    limit = charts.Limit("95%", [0.0, 1.0, 2.0, 4.0], [math.nan, 0.0, 0.2, 0.4],
                         [math.nan, 3.7, 2.6, 2.0])
    out = str(charts.funnel_svg([charts.FunnelDot("A", 1.0, 1.0),
                                 charts.FunnelDot("B", 3.0, 2.5)], [limit]))
    paths = re.findall(r'<path class="limit" d="([^"]+)"', out)
    assert len(paths) == 2 and all(p.startswith("M") and p.count("L") == 2 for p in paths)
    assert "nan" not in out.lower() and out.count("<circle") == 2


def test_funnel_svg_handles_one_and_two_hundred_partners():
    one = str(charts.funnel_svg([charts.FunnelDot("SOLO", 2.0, 1.0, highlight=True)], []))
    assert one.count("<circle") == 1 and ">SOLO</text>" in one
    many = [charts.FunnelDot(f"P{i:03d}", 0.5 + i, 0.5 + (i % 7) / 3, flagged=i % 50 == 0)
            for i in range(200)]
    out = str(charts.funnel_svg(many, []))
    assert out.count("<circle") == 200 and out.count('class="dot flagged"') == 4
    assert re.search(r'\bcx="-|\bcy="-', out) is None  # every dot inside the canvas


def test_trend_svg_escapes_months_and_copes_with_zero_expectations():
    points = [charts.TrendPoint("<i>2025-01</i>", 0, 0, 0.0),
              charts.TrendPoint("2025-02", 10, 2, 0.0, flagged=True),
              charts.TrendPoint("2025-03", 10, 2, 0.5),
              charts.TrendPoint("2025-04", 10, 2, 0.5, flagged=True),
              charts.TrendPoint("2025-05", 10, 2, 0.5, flagged=True)]
    out = str(charts.trend_svg(points))
    assert "<i>" not in out and "&lt;i&gt;2025-01&lt;/i&gt;" in out
    assert out.count('class="bar"') == 5 and out.count('class="flagged-months"') == 2
    assert "2025-04 to 2025-05: in a flagged window" in out
    assert "nan" not in out.lower()


def test_trend_svg_without_claims_renders_a_no_data_chart():
    for points in ([], [charts.TrendPoint("2025-01", 0, 0, 0.0)]):
        out = str(charts.trend_svg(points, title="T"))
        assert "No claims yet" in out and 'role="img"' in out and "<title" in out
