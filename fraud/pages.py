"""Finance review desk (HTML): the flag queue, one flag with its decisions, partner charts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from audit.service import entity_history_query
from auth.access import roles_required
from auth.roles import ADMIN, FINANCE
from common.csv_export import csv_response
from common.errors import Conflict, ValidationFailed
from common.extensions import db
from fraud import charts, desk, service
from fraud import models as m
from fraud.schemas import FlagSchema
from fraud.views import CSV_COLUMNS
from partners.service import get_partner

bp = Blueprint("fraud_desk", __name__)

_DECISIONS = {"confirm": "confirmed", "dismiss": "dismissed",
              "request_evidence": "asked the partner for evidence"}


@bp.context_processor
def _words() -> dict[str, Any]:
    return {"signal_words": desk.signal_words, "status_words": desk.status_words,
            "age_words": desk.age_words, "kind_words": desk.KIND_WORDS}


def _problem(error: ValidationFailed) -> str:
    """One sentence naming what is wrong, for a flash message."""
    details = "; ".join(message for messages in error.errors.values() for message in messages)
    return f"{error.detail[:1].upper()}{error.detail[1:]}" + (f": {details}." if details else ".")


@bp.route("/finance/flags")
@roles_required(ADMIN, FINANCE)
def flags() -> Any:
    """The review queue: most money at stake first, filtered and 50 to a page."""
    filters = desk.QueueFilters.from_args(request.args)
    page = desk.page_of(filters.query(), request.args.get("page", 1, type=int))
    return render_template("staff/fraud_flags.html", filters=filters, page=page,
                           summary=desk.open_summary(), run=desk.last_run(),
                           signals=desk.SIGNAL_WORDS, statuses=desk.STATUS_WORDS)


@bp.route("/finance/flags.csv")
@roles_required(ADMIN, FINANCE)
def flags_csv() -> Response:
    """The queue as CSV for accounting, with the same filters and columns as the API."""
    rows = FlagSchema(many=True).dump(db.session.scalars(
        desk.QueueFilters.from_args(request.args).query()))
    return csv_response(CSV_COLUMNS, ([row[c] for c in CSV_COLUMNS] for row in rows),
                        "fraud-flags.csv")


@bp.route("/finance/flags/score", methods=["POST"])
@roles_required(ADMIN, FINANCE)
def score_now() -> Any:
    """Queue a scoring run now instead of waiting for the schedule."""
    service.queue_scoring(actor=current_user.actor)
    flash("Scoring queued", "info")
    return redirect(url_for(".flags"))


@bp.route("/finance/flags/<int(max=2147483647):flag_id>")
@roles_required(ADMIN, FINANCE)
def flag(flag_id: int) -> Any:
    """One flag: evidence, the claims behind it, its payment holds and the decision forms."""
    return _flag_page(service.get_flag(flag_id))


def _flag_page(flag: m.FraudFlag, form: MultiDict | None = None, status: int = 200) -> Any:
    history = db.session.scalars(entity_history_query("fraud_flag", flag.id)).all()
    return render_template(
        "staff/fraud_flag.html", flag=flag, claims=service.claims_behind(flag),
        holds=desk.holds_for(flag.id), history=history, form=form or MultiDict(),
        signals=(flag.evidence or {}).get("signals", []), under_review=m.UNDER_REVIEW,
        decidable=(m.OPEN, m.AWAITING_EVIDENCE, m.INSUFFICIENT_EVIDENCE),
        askable=(m.OPEN, m.INSUFFICIENT_EVIDENCE)), status


@bp.route("/finance/flags/<int(max=2147483647):flag_id>/decision", methods=["POST"])
@roles_required(ADMIN, FINANCE)
def decide(flag_id: int) -> Any:
    """Confirm with a recovery amount, dismiss with a reason, or ask for evidence."""
    decision = request.form.get("decision", "")
    try:
        amount = desk.parse_amount(request.form.get("recovery_amount"))
        service.decide(flag_id=flag_id, decision=decision, actor=current_user.actor,
                       note=desk.check_note(request.form.get("note")), recovery_amount=amount)
    except ValidationFailed as error:
        flash(_problem(error), "error")
        return _flag_page(service.get_flag(flag_id), form=request.form, status=error.status)
    except Conflict:
        flag = service.get_flag(flag_id)
        flash(f"Flag {flag_id} was already decided: it is "
              f"{desk.status_words(flag.status).lower()} now. Nothing was changed.", "error")
    else:
        flash(f"Flag {flag_id} {_DECISIONS[decision]}.", "info")
    return redirect(url_for(".flag", flag_id=flag_id))


@bp.route("/finance/flags/<int(max=2147483647):flag_id>/hold", methods=["POST"])
@roles_required(ADMIN, FINANCE)
def hold(flag_id: int) -> Any:
    """Withhold payment of the partner's unpaid repair reports behind the flag."""
    try:
        held = service.hold_payments(flag_id=flag_id, actor=current_user.actor,
                                     note=desk.check_note(request.form.get("note")))
    except ValidationFailed as error:
        flash(_problem(error), "error")
        return _flag_page(service.get_flag(flag_id), form=request.form, status=error.status)
    except Conflict:
        flag = service.get_flag(flag_id)
        flash(f"Payments cannot be withheld: flag {flag_id} is "
              f"{desk.status_words(flag.status).lower()}, no longer under review.", "error")
    else:
        flash(f"Payment withheld on {len(held)} repair report(s)." if held else
              "No further unpaid repair reports to withhold.", "info")
    return redirect(url_for(".flag", flag_id=flag_id))


@bp.route("/finance/partners/<code>")
@roles_required(ADMIN, FINANCE)
def partner(code: str) -> Any:
    """A partner's flags, claims per month, and where it sits among its peers."""
    found = get_partner(code)
    cube = desk.claims_cube()
    flags = desk.partner_flags(found.id)
    months = desk.partner_trend(cube, found.code, flags)
    funnel = desk.funnel(cube)
    trend = charts.trend_svg(
        [charts.TrendPoint(t.month, t.claims, t.observed, t.expected, t.flagged)
         for t in months],
        chart_id="trend", title=f"{found.code}: DOA claims per month, observed and expected")
    return render_template("staff/fraud_partner.html", partner=found, flags=flags,
                           months=months, funnel=funnel, trend_svg=trend,
                           funnel_svg=_funnel_svg(funnel, highlight=found.code))


@bp.route("/finance/funnel")
@roles_required(ADMIN, FINANCE)
def funnel() -> Any:
    """Every partner's DOA ratio against its expected count, with control limits."""
    found = desk.funnel(desk.claims_cube())
    return render_template("staff/fraud_funnel.html", funnel=found,
                           funnel_svg=_funnel_svg(found))


def _funnel_svg(funnel: desk.Funnel, highlight: str | None = None) -> str:
    dots = [charts.FunnelDot(
        label=p.code, expected=p.expected, ratio=p.ratio, flagged=p.code in funnel.flagged,
        highlight=p.code == highlight,
        hover=f"{p.name}; {p.observed:g} DOA vs {p.expected:.1f} expected, {p.claims} claims")
        for p in funnel.partners]
    limits = [charts.Limit(label, grid, lower, upper)
              for label, grid, lower, upper in funnel.limits]
    window = f" {funnel.window[0]} to {funnel.window[1]}" if funnel.window else ""
    return charts.funnel_svg(dots, limits, chart_id="funnel",
                             title=f"DOA funnel plot of all partners{window}")
