"""Customer pages (claim form, tracking) and the support team's claim desk."""

from __future__ import annotations

import uuid
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from audit.service import entity_history_query
from auth.access import roles_required
from auth.roles import ADMIN, SUPPORT
from claims import service
from claims.forms import ClaimForm, TrackForm
from claims.models import Claim
from claims.presenter import next_step, public_reasons, staff_view, timeline_view
from claims.settings import claim_settings
from claims.texts import FAULTS, REMEDIES, STATUSES
from common.actors import Actor
from common.errors import DomainError
from common.extensions import db, limiter
from common.i18n import LANGUAGES, normalize_language
from rma.numbers import format_rma_number
from rma.presenter import label_data_for
from rma.service import label_pdf, rma_for_claim

bp = Blueprint("claims_pages", __name__)
SIGNED_LINK_SECONDS = 3600


def _public_limit() -> str:
    return current_app.config["RATELIMIT_PUBLIC"]


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="claim-tracking")


def signed_link(claim: Claim) -> str:
    """A short-lived link to a claim's page, for a customer who proved their email."""
    return url_for("claims_pages.track_signed", signed=_signer().dumps(claim.id))


@bp.route("/claim", methods=["GET", "POST"])
@limiter.limit(_public_limit, methods=["POST"])
def new_claim() -> Any:
    """The customer's claim form: no account needed."""
    form = ClaimForm()
    if request.method == "GET":
        form.submission_id.data = uuid.uuid4().hex
        form.language.data = request.args.get("lang") or g.get("locale_hint") or "en"
    if form.validate_on_submit():
        photos = [f.read() for f in form.photos.data or [] if getattr(f, "filename", "")]
        fields = (form.serial_number.data, form.email.data, form.fault_category.data,
                  form.description.data, form.remedy.data)
        try:
            filed = service.file_claim(
                service.ClaimInput(
                    serial_number=form.serial_number.data, email=form.email.data,
                    fault_category=form.fault_category.data, description=form.description.data,
                    requested_remedy=form.remedy.data,
                    dead_on_arrival=bool(form.dead_on_arrival.data),
                    language=normalize_language(form.language.data),
                    customer_name=form.customer_name.data,
                    return_address={
                        "name": form.customer_name.data, "line1": form.address_line1.data,
                        "line2": form.address_line2.data or "",
                        "postal_code": form.postal_code.data, "city": form.city.data,
                        "country": form.country.data.upper(), "phone": form.phone.data or "",
                    },
                    photos=photos,
                ),
                actor=Actor.customer(form.email.data), settings=claim_settings(current_app.config),
                source="web",
                idempotency=service.IdempotencyRequest(
                    "web", form.submission_id.data, service.fingerprint(*fields)),
            )
        except DomainError as error:
            for field, messages in error.errors.items():
                if field == "photos":
                    messages = [_("Photos must be JPEG, PNG or WebP, at most 5 MB each and "
                                  "at most 5 in all."), *messages]
                target = getattr(form, field, None)
                if target is not None:
                    target.errors = list(target.errors) + messages
                else:
                    flash(error.detail, "error")
            return render_template("claims/form.html", form=form), error.status
        if filed.tracking_token:
            return redirect(url_for("claims_pages.track_token", token=filed.tracking_token))
        flash(_("You already have an open claim for this serial number. Here it is."), "info")
        return redirect(signed_link(filed.claim))
    status = 400 if request.method == "POST" else 200
    return render_template("claims/form.html", form=form), status


@bp.route("/track", methods=["GET", "POST"])
@limiter.limit(_public_limit, methods=["POST"])
def track() -> Any:
    """Find a claim by claim or RMA number plus the email it was filed with."""
    form = TrackForm()
    if form.validate_on_submit():
        claim = service.find_claim_for_customer(form.number.data, form.email.data)
        if claim is not None:
            return redirect(signed_link(claim))
        flash(_("We found no claim with that number and email address."), "error")
        return render_template("claims/track_lookup.html", form=form), 404
    return render_template("claims/track_lookup.html", form=form), \
        400 if request.method == "POST" else 200


def _claim_from_token(token: str) -> Claim:
    claim = service.claim_by_tracking_token(token)
    if claim is None:
        abort(404)
    return claim


def _claim_from_signed(signed: str) -> Claim:
    try:
        claim_id = _signer().loads(signed, max_age=SIGNED_LINK_SECONDS)
    except BadSignature:
        abort(404)
    claim = db.session.get(Claim, claim_id)
    if claim is None:
        abort(404)
    return claim


@bp.route("/track/<token>")
def track_token(token: str) -> Any:
    """A claim's tracking page, from the unguessable link in the customer's email."""
    claim = _claim_from_token(token)
    return _tracking_page(claim, url_for("claims_pages.track_token_label", token=token))


@bp.route("/track/s/<signed>")
def track_signed(signed: str) -> Any:
    """A claim's tracking page, from a short-lived link after an email check."""
    claim = _claim_from_signed(signed)
    return _tracking_page(claim, url_for("claims_pages.track_signed_label", signed=signed))


@bp.route("/track/<token>/label.pdf")
def track_token_label(token: str) -> Response:
    """The customer's return label."""
    return _label(_claim_from_token(token))


@bp.route("/track/s/<signed>/label.pdf")
def track_signed_label(signed: str) -> Response:
    """The customer's return label (short-lived link)."""
    return _label(_claim_from_signed(signed))


def _tracking_page(claim: Claim, label_url: str) -> Any:
    if request.args.get("lang") not in LANGUAGES:
        g.locale = claim.language
    rma = rma_for_claim(claim.id)
    entries = timeline_view(claim)
    response = render_template(
        "claims/track.html", claim=claim, rma=rma, entries=entries,
        rma_display=format_rma_number(rma.rma_number) if rma else None,
        reasons=public_reasons(claim), next_step=next_step(claim, entries),
        status_text=STATUSES.get(claim.status, claim.status), label_url=label_url,
        fault_text=FAULTS.get(claim.fault_category, claim.fault_category),
        remedy_text=REMEDIES.get(claim.remedy) if claim.remedy else None,
    )
    # The page is reached through a secret link: keep it out of caches and referrers.
    return response, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _label(claim: Claim) -> Response:
    rma = rma_for_claim(claim.id)
    if rma is None:
        abort(404)
    page = request.args.get("page", "4x6")
    if page not in ("4x6", "a4", "letter"):
        abort(400)
    pdf = label_pdf(rma, label_data_for(rma), page=page)
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{rma.rma_number}-{page}.pdf"',
        "Cache-Control": "no-store",
    })


# --- support desk ------------------------------------------------------------------------------


@bp.route("/staff/claims")
@roles_required(ADMIN, SUPPORT)
def staff_claims() -> Any:
    """The review queue and claim search."""
    query = (request.args.get("q") or "").strip()[:254]
    status = request.args.get("status", "needs_review" if not query else "")
    if status not in ("", "approved", "needs_review", "rejected", "closed"):
        status = ""
    claims = db.session.scalars(
        service.search_claims(query or None, status or None).limit(200)).all()
    return render_template("staff/claims.html", claims=claims, query=query, status=status)


@bp.route("/staff/claims/<claim_number>")
@roles_required(ADMIN, SUPPORT)
def staff_claim(claim_number: str) -> Any:
    """One claim: decision, reasons, timeline, messages, notes and full audit history."""
    claim = service.get_claim(claim_number)
    history = db.session.scalars(entity_history_query("claim", claim.claim_number)).all()
    return render_template("staff/claim.html", claim=claim, view=staff_view(claim, detail=True),
                           history=history)


@bp.route("/staff/claims/<claim_number>/review", methods=["POST"])
@roles_required(ADMIN, SUPPORT)
def staff_review(claim_number: str) -> Any:
    """Approve or reject a claim from the desk."""
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        abort(400)
    remedy = request.form.get("remedy") or None
    if remedy not in (None, "repair", "replace", "refund"):
        abort(400)
    try:
        service.review_claim(claim_number=claim_number, approve=decision == "approve",
                             note=request.form.get("note", ""), remedy=remedy,
                             actor=current_user.actor,
                             settings=claim_settings(current_app.config))
        flash(_("Decision saved."), "info")
    except DomainError as error:
        flash(error.detail, "error")
    return redirect(url_for("claims_pages.staff_claim", claim_number=claim_number))


@bp.route("/staff/claims/<claim_number>/notes", methods=["POST"])
@roles_required(ADMIN, SUPPORT)
def staff_note(claim_number: str) -> Any:
    """Add an internal note."""
    try:
        service.add_note(claim_number=claim_number, body=request.form.get("body", ""),
                         actor=current_user.actor)
    except DomainError as error:
        flash(error.detail, "error")
    return redirect(url_for("claims_pages.staff_claim", claim_number=claim_number))
