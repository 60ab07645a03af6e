"""Shipment manifest PDF: the shipment barcode and one per unit (pure: data in, bytes out)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from rma.labels import draw_code128, fit_text, register_fonts


@dataclass(frozen=True)
class ManifestLine:
    rma_number: str
    sku: str
    serial_number: str
    grade: str


@dataclass(frozen=True)
class ManifestData:
    shipment_number: str
    direction: str
    partner_code: str
    partner_name: str
    created_on: str
    lines: Sequence[ManifestLine]


ROW_HEIGHT = 24 * mm
TOP = 60 * mm
# Text stops short of the barcodes and their quiet zones: the shipment's, centred 55 mm from
# the right edge, starts about 134 mm from the left; each unit's, centred 60 mm from it, 129 mm.
HEADER_TEXT_WIDTH = 115 * mm  # from 15 mm
ROW_TEXT_WIDTH = 105 * mm  # from 20 mm


def render_manifest(data: ManifestData) -> bytes:
    """A4 pages: header with the shipment barcode, then a row per unit with its RMA barcode."""
    # The label fonts and text fitting: partner names and scanned serials are user data, so
    # they need glyphs beyond Latin-1, lose control and bidi characters, and are cut to fit.
    regular, bold = register_fonts()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, pageCompression=1)
    canvas.setTitle(f"Manifest {data.shipment_number}")
    width, height = A4
    rows_per_page = int((height - TOP - 20 * mm) // ROW_HEIGHT)
    pages = [data.lines[i:i + rows_per_page] for i in range(0, len(data.lines), rows_per_page)] \
        or [[]]
    for number, lines in enumerate(pages, start=1):
        _header(canvas, data, width, height, number, len(pages), regular, bold)
        y = height - TOP
        for line in lines:
            _text(canvas, 20 * mm, y - 6 * mm, line.rma_number, bold, 11, ROW_TEXT_WIDTH)
            _text(canvas, 20 * mm, y - 11 * mm, f"SKU {line.sku}   serial {line.serial_number}"
                  f"   grade {line.grade or '-'}", regular, 9, ROW_TEXT_WIDTH)
            draw_code128(canvas, line.rma_number, width - 60 * mm, y - 18 * mm, 14 * mm)
            canvas.line(15 * mm, y - ROW_HEIGHT + 2 * mm, width - 15 * mm, y - ROW_HEIGHT + 2 * mm)
            y -= ROW_HEIGHT
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _text(canvas: Canvas, x: float, y: float, text: str, font: str, size: float,
          width: float) -> None:
    canvas.setFont(font, size)
    canvas.drawString(x, y, fit_text(text, font, size, width))


def _header(canvas: Canvas, data: ManifestData, width: float, height: float, page: int,
            pages: int, regular: str, bold: str) -> None:
    direction = "to partner" if data.direction == "to_partner" else "back from partner"
    _text(canvas, 15 * mm, height - 18 * mm, f"Shipment {data.shipment_number}", bold, 18,
          HEADER_TEXT_WIDTH)
    _text(canvas, 15 * mm, height - 26 * mm,
          f"{direction}: {data.partner_code} {data.partner_name}", regular, 11,
          HEADER_TEXT_WIDTH)
    _text(canvas, 15 * mm, height - 32 * mm,
          f"{len(data.lines)} units · created {data.created_on} · page {page}/{pages}",
          regular, 11, HEADER_TEXT_WIDTH)
    draw_code128(canvas, data.shipment_number, width - 55 * mm, height - 40 * mm, 18 * mm)
