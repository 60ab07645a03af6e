"""Finance review desk (HTML)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("fraud_desk", __name__)
