"""Languages: English, Swedish and Spanish, chosen by the customer or the browser."""

from __future__ import annotations

from flask import g, request
from flask_babel import Babel

LANGUAGES = ("en", "sv", "es")
LANGUAGE_NAMES = {"en": "English", "sv": "Svenska", "es": "Español"}

babel = Babel()


def select_locale() -> str:
    """A claim's own language when a page is about one, else ?lang=, else the browser's."""
    forced = getattr(g, "locale", None)
    if forced in LANGUAGES:
        return forced
    if request:
        asked = request.args.get("lang")
        if asked in LANGUAGES:
            return asked
        return request.accept_languages.best_match(LANGUAGES) or "en"
    return "en"


def normalize_language(value: str | None) -> str:
    value = (value or "").strip().lower()[:2]
    return value if value in LANGUAGES else "en"
