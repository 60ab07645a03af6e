"""Building a label's data from an RMA, in the claim's language."""

from __future__ import annotations

from flask import current_app
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from catalog.models import Product
from claims.texts import FAULTS, REMEDIES
from common.extensions import db
from rma.labels import LabelData
from rma.models import Rma

# Every caption printed on a label, marked for translation (keys: rma.labels.DEFAULT_TEXTS).
CAPTIONS = {
    "return_label": _l("Return label"),
    "return_to": _l("Return to"),
    "from": _l("From"),
    "rma": _l("RMA"),
    "packing_slip": _l("Packing slip"),
    "cut_here": _l("Cut along this line"),
    "attach_outside": _l("Attach this label to the outside of the box"),
    "put_inside": _l("Put this slip inside the box"),
    "claim": _l("Claim"),
    "product": _l("Product"),
    "sku": _l("SKU"),
    "serial_number": _l("Serial number"),
    "fault": _l("Fault"),
    "remedy": _l("Remedy"),
    "issued_on": _l("Issued"),
}


def label_data_for(rma: Rma) -> LabelData:
    """Everything the label prints, with captions in the customer's language."""
    claim = rma.claim
    product = (
        db.session.scalar(select(Product).where(Product.sku == claim.sku)) if claim.sku else None
    )
    address = claim.return_address or {}
    sender_lines = [
        address.get("line1"),
        address.get("line2"),
        " ".join(p for p in (address.get("postal_code"), address.get("city")) if p),
        address.get("country"),
    ]
    with force_locale(claim.language):
        texts = {key: str(value) for key, value in CAPTIONS.items()}
        fault = str(FAULTS.get(claim.fault_category, claim.fault_category))
        remedy = str(REMEDIES.get(rma.remedy, rma.remedy))
    return LabelData(
        rma_number=rma.rma_number,
        claim_number=claim.claim_number,
        sku=claim.sku or "",
        product_name=product.name if product else "",
        serial_number=claim.serial_number,
        fault_category=fault,
        remedy=remedy,
        issued_on=rma.issued_at.date(),
        sender_name=address.get("name") or claim.customer_name or claim.email,
        sender_address=tuple(line for line in sender_lines if line),
        return_to=tuple(current_app.config["RETURN_TO_ADDRESS"]),
        texts=texts,
    )
