"""Customer-facing words for reason codes, timeline steps, faults and remedies.

Every string is marked for translation (Flask-Babel) and looked up when a page, email or label
is rendered, in the claim's language.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from claims import rules

REASONS = {
    rules.PURCHASE_NOT_MATCHED: _l(
        "We could not find a registered purchase for this serial number and email address. "
        "Please check both, or contact us with your receipt."
    ),
    rules.SERIAL_NOT_REGISTERED: _l("The serial number is not registered as a purchase."),
    rules.EMAIL_MISMATCH: _l("The email address does not match the registered purchase."),
    rules.OUT_OF_WARRANTY: _l("The warranty for this product ended on %(ended_on)s."),
    rules.EXCLUDED_FAULT: _l("The warranty does not cover this kind of fault (%(fault)s)."),
    rules.PURCHASE_DATE_IN_FUTURE: _l(
        "The registered purchase date is after today; our team will check it."
    ),
    rules.PURCHASE_BEFORE_RELEASE: _l(
        "The registered purchase date is before the product was released; our team will check it."
    ),
    rules.REPEAT_CLAIMS: _l(
        "This unit has had several claims before, so our team will look at it personally."
    ),
    rules.REFUND_REQUESTED: _l("Refunds are decided by our support team."),
    rules.SERIAL_IN_OPEN_CLAIM: _l("Our support team needs to check this serial number."),
    rules.WITHIN_WARRANTY: _l("Your product is under warranty until %(ends_on)s."),
    rules.EXTENDED_WARRANTY: _l(
        "Your product is covered by its extended warranty until %(ends_on)s."
    ),
    rules.DOA_REPLACEMENT: _l(
        "The unit failed within %(doa_days)s days of purchase, so we will replace it."
    ),
    "approved_by_support": _l("Our support team approved your claim."),
    "rejected_by_support": _l("Our support team could not approve your claim."),
}

STATUSES = {
    "approved": _l("Approved"),
    "needs_review": _l("Being reviewed"),
    "rejected": _l("Not approved"),
    "closed": _l("Closed"),
}

TIMELINE = {
    "filed": _l("Claim received"),
    "approved": _l("Claim approved"),
    "needs_review": _l("Claim sent to our support team for review"),
    "rejected": _l("Claim not approved"),
    "rma_issued": _l("Return authorised: RMA %(rma_number)s"),
    "label_ready": _l("Return label ready to print"),
    "received": _l("Your unit arrived at our service centre"),
    "at_partner": _l("Your unit is with our repair partner"),
    "repairing": _l("Your unit is being repaired"),
    "repaired": _l("Your unit has been repaired"),
    "replaced": _l("A replacement unit is on its way"),
    "refunded": _l("Your refund has been issued"),
    "shipped_back": _l("Your unit has been shipped back to you"),
    "delayed": _l("Your repair is taking longer than planned; we are following it up"),
    "closed": _l("Claim closed"),
}

NEXT_STEPS = {
    "needs_review": _l("Our support team will decide within %(days)s working days."),
    "approved": _l("Print the return label, attach it to the box and send the unit to us."),
    "rma_issued": _l("Print the return label, attach it to the box and send the unit to us."),
    "label_ready": _l("Print the return label, attach it to the box and send the unit to us."),
    "received": _l("We will inspect the unit and start the repair or replacement."),
    "rejected": _l("If you think this is wrong, reply to our email with your receipt."),
}

FAULTS = {
    "no_power": _l("Does not turn on"),
    "display": _l("Screen or display"),
    "audio": _l("Sound, speaker or microphone"),
    "battery": _l("Battery"),
    "charging": _l("Charging"),
    "connectivity": _l("Wi-Fi, Bluetooth or mobile network"),
    "software": _l("Software or firmware"),
    "mechanical": _l("Buttons, hinges or other mechanical parts"),
    "overheating": _l("Overheating"),
    "cosmetic": _l("Cosmetic (scratches, dents)"),
    "physical_damage": _l("Dropped or physically damaged"),
    "water_damage": _l("Water or liquid damage"),
    "other": _l("Something else"),
}

REMEDIES = {
    "repair": _l("Repair"),
    "replace": _l("Replacement"),
    "refund": _l("Refund"),
}

EMAIL_SUBJECTS = {
    "claim_received": _l("We received your claim %(claim_number)s"),
    "claim_approved": _l("Your claim %(claim_number)s is approved: RMA %(rma_number)s"),
    "claim_in_review": _l("Your claim %(claim_number)s is being reviewed"),
    "claim_rejected": _l("Your claim %(claim_number)s could not be approved"),
    "status_update": _l("Update on your claim %(claim_number)s"),
}


def reason_text(code: str, params: Mapping[str, Any], language: str | None = None) -> str:
    """The customer's sentence for a reason code (falls back to the code itself).

    In ``language`` when given, else in the current locale.
    """
    text = _translated(language, "reason", code)
    if text is None:
        return code
    values = dict(params)
    if "fault_category" in values:
        fault = values["fault_category"]
        values["fault"] = _translated(language, "fault", fault) or fault
    try:
        return text % values if "%(" in text else text
    except (KeyError, ValueError, TypeError):
        return text


_TEXTS: Mapping[str, Mapping[str, Any]] = {"reason": REASONS, "fault": FAULTS}


def _translated(language: str | None, table: str, key: str) -> str | None:
    if language is None:
        text = _TEXTS[table].get(key)
        return None if text is None else str(text)
    return _translated_in(language, table, key)


@functools.lru_cache(maxsize=512)
def _translated_in(language: str, table: str, key: str) -> str | None:
    # The catalogs are fixed while the process runs, so each text is translated once per
    # language: switching the locale for every answer costs more than the rest of the answer.
    with force_locale(language):
        text = _TEXTS[table].get(key)
        return None if text is None else str(text)


def timeline_text(kind: str, params: Mapping[str, Any]) -> str:
    text = TIMELINE.get(kind)
    if text is None:
        return kind
    try:
        return str(text) % dict(params) if "%(" in str(text) else str(text)
    except (KeyError, ValueError, TypeError):
        return str(text)
