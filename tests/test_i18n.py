"""Translations: every marked string is translated, the .mo files are current, pages switch.

The extraction here reads the same ``babel.cfg`` as ``pybabel extract``, so a string marked
with ``_()`` / ``_l()`` but missing from a catalog fails CI until the catalogs are updated.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale

from claims import rules
from claims.texts import reason_text
from common.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "translations"
TRANSLATED = [code for code in LANGUAGES if code != "en"]
# The same keywords as `pybabel extract -k lazy_gettext -k _l` (babel.cfg lists them too).
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "_l": None}
# A %-directive, named or not: translations must keep exactly the msgid's placeholders, and a
# stray "%" would break Jinja's new-style gettext, which always formats the string.
DIRECTIVE = re.compile(r"%(?:\((\w+)\))?[#0 +-]*\d*(?:\.\d+)?[a-zA-Z%]")


def directives(text: str) -> list[str]:
    return sorted(match.group(0) for match in DIRECTIVE.finditer(text))


def strings_of(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def po_path(locale: str) -> Path:
    return TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"


def load_po(locale: str) -> Catalog:
    with po_path(locale).open("rb") as handle:
        return read_po(handle, locale=locale)


def translations_by_key(catalog: Catalog) -> dict[tuple[object, str | None], object]:
    return {(message.id, message.context): message.string for message in catalog if message.id}


@pytest.fixture(scope="module")
def extracted() -> Catalog:
    """A fresh extraction of the source tree, as `pybabel extract -F babel.cfg` makes it."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, str(ROOT / "babel.cfg"))
    catalog = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def test_extraction_finds_the_marked_strings_and_skips_staff_pages(extracted: Catalog) -> None:
    files = {filename for message in extracted for filename, _ in message.locations}
    assert "claims/texts.py" in files
    assert "rma/presenter.py" in files
    assert "templates/emails/claim_approved.txt" in files
    assert not [name for name in files if name.startswith(("templates/staff/", "tests/"))]
    assert len(extracted) > 100


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_extracted_message_is_translated(extracted: Catalog, locale: str) -> None:
    catalog = load_po(locale)
    assert not catalog.fuzzy, f"{po_path(locale)} header is marked fuzzy"
    problems = []
    for message in extracted:
        if not message.id:
            continue
        translated = catalog.get(message.id, message.context)
        if translated is None:
            problems.append(f"missing (run pybabel update): {message.id!r}")
        elif translated.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif not all(strings_of(translated.string)):
            problems.append(f"untranslated: {message.id!r}")
        else:
            expected = directives(strings_of(message.id)[0])
            for text in strings_of(translated.string):
                if directives(text) != expected:
                    problems.append(f"placeholders {directives(text)} != {expected}: {text!r}")
    assert not problems, f"{locale}: " + "\n".join(problems)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_committed_mo_matches_po(locale: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, load_po(locale))
    compiled.seek(0)
    with po_path(locale).with_suffix(".mo").open("rb") as handle:
        committed = read_mo(handle)
    assert translations_by_key(committed) == translations_by_key(read_mo(compiled)), (
        f"{locale}: messages.mo is stale, run `pybabel compile -d translations`"
    )


@pytest.mark.parametrize(
    ("url", "locale", "expected"),
    [
        ("/claim?lang=sv", "sv", ["Skapa ett garantiärende", "Serienummer", "Beskriv problemet"]),
        ("/claim?lang=es", "es", ["Presentar una reclamación de garantía", "Número de serie",
                                  "Describa el problema"]),
        ("/track?lang=sv", "sv", ["Följ ditt ärende", "Ärende- eller RMA-nummer",
                                  "Visa mitt ärende"]),
        ("/claim", "en", ["File a warranty claim", "Serial number", "Describe the problem"]),
    ],
)
def test_pages_switch_language_with_lang_parameter(
    client: FlaskClient, url: str, locale: str, expected: list[str]
) -> None:
    response = client.get(url)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<html lang="{locale}">' in html
    for text in expected:
        assert text in html


def test_browser_language_picks_spanish(client: FlaskClient) -> None:
    response = client.get("/claim", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    html = response.get_data(as_text=True)
    assert '<html lang="es">' in html
    assert "Presentar una reclamación de garantía" in html


def test_reason_text_in_swedish_fills_in_the_parameter(app: Flask) -> None:
    with force_locale("sv"):
        ended = reason_text(rules.OUT_OF_WARRANTY, {"ended_on": "2024-05-31"})
        excluded = reason_text(rules.EXCLUDED_FAULT, {"fault_category": "water_damage"})
    assert ended == "Garantin för den här produkten gick ut 2024-05-31."
    assert excluded == "Garantin täcker inte den här typen av fel (Vatten- eller vätskeskada)."


def test_reason_text_in_a_given_language_ignores_the_current_locale(app: Flask) -> None:
    # The API answers in the claim's language whatever the request's locale is; the
    # translations are remembered per language, so asking twice must give the same words.
    with app.test_request_context("/?lang=sv"), force_locale("sv"):
        spanish = [reason_text(rules.EXCLUDED_FAULT, {"fault_category": "water_damage"}, "es")
                   for _ in range(2)]
        swedish = reason_text(rules.EXCLUDED_FAULT, {"fault_category": "water_damage"})
        english = reason_text(rules.OUT_OF_WARRANTY, {"ended_on": "2024-05-31"}, "en")
    assert spanish[0] == spanish[1] != swedish
    assert "(Vatten- eller vätskeskada)" in swedish
    assert "water_damage" not in spanish[0] and "(" in spanish[0]
    assert english == "The warranty for this product ended on 2024-05-31."
