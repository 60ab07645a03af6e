"""The partner portal: a partner's users see and move their own units, nothing else."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from auth.access import roles_required
from auth.roles import PARTNER
from common.errors import DomainError
from common.extensions import db
from partners import repair_states, repairs

bp = Blueprint("partner_portal", __name__, url_prefix="/partner")


@bp.route("/units")
@roles_required(PARTNER)
def units() -> Any:
    """The partner's units with the next steps each may take."""
    status = request.args.get("status") or None
    if status not in (None, *repair_states.STATUSES):
        status = None
    items = db.session.scalars(repairs.repairs_query(partner_id=current_user.partner_id,
                                                     status=status).limit(500)).all()
    return render_template("partner/units.html", repairs=items, status=status,
                           statuses=repair_states.STATUSES,
                           allowed=repair_states.allowed_next)


@bp.route("/units/<rma_number>", methods=["POST"])
@roles_required(PARTNER)
def update(rma_number: str) -> Any:
    """Move one unit to its next status (the form carries the version it was shown)."""
    version = request.form.get("version", "")
    try:
        repairs.change_status(
            rma_number=rma_number, partner_id=current_user.partner_id,
            target=request.form.get("status", ""),
            expected_version=int(version) if version.isdigit() and len(version) < 10 else None,
            note=(request.form.get("note") or "").strip()[:2000] or None,
            actor=current_user.actor)
        flash(f"{rma_number}: updated.", "info")
    except DomainError as error:
        if error.status == 412:
            flash(f"{rma_number} was changed by someone else meanwhile; check it and try "
                  "again.", "error")
        else:
            flash(f"{rma_number}: {error.detail}", "error")
    return redirect(url_for("partner_portal.units"))
