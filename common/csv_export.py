"""CSV downloads that spreadsheets cannot be tricked into executing."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import Response

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """Text for one cell; a leading = + - @ tab or CR (a formula to Excel) is neutralised with a
    quote. Numbers stay numbers: a chargeback of -20.50 must reach accounting as an amount."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if _finite_number(value):
        return text
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _finite_number(value: Any) -> bool:
    # Only values the app typed as numbers: text that merely looks like one ("-2+3", "-1") is
    # still quoted. bool is an int but prints as a word; infinities and NaN are no amounts.
    if isinstance(value, bool):
        return False
    if isinstance(value, Decimal):
        return value.is_finite()
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int)


def csv_response(header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})

