"""Printable return labels: a PDF with the RMA barcode, addresses and a packing slip.

Pure: ``LabelData`` in, PDF bytes out. The Code128 barcode is drawn as rectangles on the
203-dpi dot grid of thermal label printers, with the narrowest bar exactly two dots wide:
the 0.19-0.2 mm modules that barcode libraries default to round to one or two dots at
203 dpi, and such uneven bars fail to scan.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType

import reportlab
from barcode.codex import Code128
from reportlab import rl_config
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import inch, mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from rma.numbers import format_rma_number, parse_rma_number

DEFAULT_TEXTS: Mapping[str, str] = MappingProxyType(
    {
        "return_label": "Return label",
        "return_to": "Return to",
        "from": "From",
        "rma": "RMA",
        "packing_slip": "Packing slip",
        "cut_here": "Cut along this line",
        "attach_outside": "Attach this label to the outside of the box",
        "put_inside": "Put this slip inside the box",
        "claim": "Claim",
        "product": "Product",
        "sku": "SKU",
        "serial_number": "Serial number",
        "fault": "Fault",
        "remedy": "Remedy",
        "issued_on": "Issued",
    }
)

PAGE_SIZES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {"4x6": (4 * inch, 6 * inch), "a4": A4, "letter": LETTER}
)
PRINTER_DPI = 203
DOT = 72 / PRINTER_DPI  # one printer dot in points
MODULE_DOTS = 2  # narrowest bar: two dots = 0.250 mm
BAR_HEIGHT = 22 * mm
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
REGULAR, BOLD = "LabelSans", "LabelSans-Bold"

_MARGIN = {"4x6": 12.0, "a4": 36.0, "letter": 36.0}
_MAX_RETURN_TO_LINES = 5
_MAX_SENDER_LINES = 4
_ELLIPSIS = "\u2026"
_BARS = re.compile("1+")

# (canvas, canonical RMA number, centre x, bottom y, bar height): lets the benchmark swap in
# reportlab's own Code128 while keeping the rest of the label identical.
BarcodeDrawer = Callable[[Canvas, str, float, float, float], None]


@dataclass(frozen=True)
class LabelData:
    """Everything printed on one return label and its packing slip."""

    rma_number: str
    claim_number: str
    sku: str
    product_name: str
    serial_number: str
    fault_category: str
    remedy: str
    issued_on: date
    sender_name: str
    sender_address: tuple[str, ...]
    return_to: tuple[str, ...]
    # Translated captions by key; keys left out print in English.
    texts: Mapping[str, str] = field(default_factory=lambda: DEFAULT_TEXTS, hash=False)

    def __post_init__(self) -> None:
        unknown = set(self.texts) - set(DEFAULT_TEXTS)
        if unknown:
            raise ValueError(f"unknown label captions: {', '.join(sorted(unknown))}")


def render_label(data: LabelData, page: str = "4x6") -> bytes:
    """One return label with its packing slip as PDF bytes."""
    return render_labels([data], page)


def render_labels(items: Sequence[LabelData], page: str = "4x6") -> bytes:
    """Many return labels in one PDF, for batch printing."""
    return _render(items, page, draw_code128)


def draw_code128(
    canvas: Canvas, number: str, centre_x: float, bottom: float, height: float
) -> None:
    """Draw ``number`` as Code128 bars snapped to the 203-dpi dot grid, centred on ``centre_x``."""
    modules = Code128(number).build()[0]
    left = round(centre_x / DOT - len(modules) * MODULE_DOTS / 2)
    base = round(bottom / DOT)
    tall = round(height / DOT)
    # Whole printer dots in a coordinate system scaled to one dot per unit: every bar edge
    # falls exactly on a dot boundary, and integers format faster than reportlab's floats.
    bars = " ".join(
        f"{left + bar.start() * MODULE_DOTS} {base} {(bar.end() - bar.start()) * MODULE_DOTS}"
        f" {tall} re"
        for bar in _BARS.finditer(modules)
    )
    canvas.saveState()
    canvas.scale(DOT, DOT)
    canvas.addLiteral(f"{bars} f")
    canvas.restoreState()


def fit_text(text: str, font: str, size: float, width: float) -> str:
    """``text`` on one line, control characters removed, cut with an ellipsis to ``width``."""
    return _fit(text, font, size, width)[0]


# Captions and the warehouse address repeat on every label of a batch.
@functools.lru_cache(maxsize=4096)
def _fit(text: str, font: str, size: float, width: float) -> tuple[str, float]:
    text = _printable(text)
    used = pdfmetrics.stringWidth(text, font, size)
    if used <= width:
        return text, used
    # No glyph in these fonts is narrower than a quarter em, so more characters never fit.
    text = text[: int(width / (size / 4)) + 1]
    room = width - pdfmetrics.stringWidth(_ELLIPSIS, font, size)
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if pdfmetrics.stringWidth(text[:middle], font, size) <= room:
            low = middle
        else:
            high = middle - 1
    fitted = text[:low].rstrip() + _ELLIPSIS
    return fitted, pdfmetrics.stringWidth(fitted, font, size)


def font_files(dirs: Sequence[Path] = FONT_DIRS) -> tuple[Path, Path]:
    """Regular and bold TrueType files: DejaVu Sans if installed, else reportlab's Vera."""
    for folder in dirs:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    bundled = Path(reportlab.__file__).parent / "fonts"
    return bundled / "Vera.ttf", bundled / "VeraBd.ttf"


def register_fonts() -> tuple[str, str]:
    """Register the label fonts (once) for other documents; returns (regular, bold) names."""
    _register_fonts()
    return REGULAR, BOLD


@functools.cache
def _register_fonts() -> None:
    # Registered on first use, not at import: reading the font files takes milliseconds.
    regular, bold = font_files()
    pdfmetrics.registerFont(TTFont(REGULAR, str(regular)))
    pdfmetrics.registerFont(TTFont(BOLD, str(bold)))


def _printable(text: str) -> str:
    # Newlines would print as boxes and bidi overrides could reorder an address: keep
    # single spaces and visible characters only.
    text = " ".join(str(text).split())
    if text.isprintable():
        return text
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))


def _render(items: Sequence[LabelData], page: str, draw_barcode: BarcodeDrawer) -> bytes:
    if page not in PAGE_SIZES:
        raise ValueError(f"page must be one of {', '.join(PAGE_SIZES)}, got {page!r}")
    if not items:
        raise ValueError("no labels to render")
    _register_fonts()
    width, height = PAGE_SIZES[page]
    margin = _MARGIN[page]
    buffer = io.BytesIO()
    # invariant: no timestamp or random document id, so the same labels give the same bytes.
    canvas = Canvas(buffer, pagesize=(width, height), pageCompression=1, invariant=1)
    canvas.setTitle(items[0].texts.get("return_label", DEFAULT_TEXTS["return_label"]))
    for data in items:
        label = _Label(data)
        if page == "4x6":
            frame = (margin, margin, width - 2 * margin, height - 2 * margin)
            label.draw_label(canvas, frame, draw_barcode)
            canvas.showPage()
            label.draw_slip(canvas, frame)
        else:
            half = height / 2
            label.draw_label(
                canvas, (margin, half + 18, width - 2 * margin, half - 18 - margin), draw_barcode
            )
            label.draw_cut_line(canvas, margin, half, width - 2 * margin)
            label.draw_slip(canvas, (margin, margin, width - 2 * margin, half - 18 - margin))
        canvas.showPage()
    with _without_ascii85():
        canvas.save()
    return buffer.getvalue()


@contextlib.contextmanager
def _without_ascii85() -> Iterator[None]:
    # reportlab wraps every compressed stream in ASCII85 by default: 25 % larger files and,
    # without the optional C accelerator, a third of the render time. Labels go straight
    # to a printer or a browser, both fine with binary streams. The setting is global, so it
    # is put back at once.
    previous = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = previous


class _Label:
    """Draws one LabelData into frames given as (x, y, width, height) in points."""

    def __init__(self, data: LabelData) -> None:
        parsed = parse_rma_number(data.rma_number)
        if parsed.number is None:
            raise ValueError(f"cannot print a label for RMA number: {parsed.message}")
        self.data = data
        self.number = parsed.number
        self.texts = {**DEFAULT_TEXTS, **data.texts}

    def _text(
        self,
        canvas: Canvas,
        x: float,
        y: float,
        text: str,
        font: str,
        size: float,
        width: float,
        align: str = "left",
    ) -> None:
        fitted, used = _fit(text, font, size, width)
        if align == "centre":
            x -= used / 2
        elif align == "right":
            x -= used
        canvas.setFont(font, size)
        canvas.drawString(x, y, fitted)

    def draw_label(
        self, canvas: Canvas, frame: tuple[float, float, float, float], draw_barcode: BarcodeDrawer
    ) -> None:
        x, bottom, width, height = frame
        data, texts = self.data, self.texts
        right = x + width
        y = bottom + height - 16
        self._text(canvas, x, y, texts["return_label"], BOLD, 16, width * 0.62)
        self._text(canvas, right, y, data.issued_on.isoformat(), REGULAR, 9, width * 0.35, "right")

        y -= 20
        self._text(canvas, x, y, texts["return_to"], REGULAR, 8, width)
        for index, text in enumerate(data.return_to[:_MAX_RETURN_TO_LINES]):
            y -= 15
            self._text(canvas, x, y, text, BOLD if index == 0 else REGULAR, 12, width)

        y -= 10
        self._rule(canvas, x, y, width)
        y -= 12
        self._text(canvas, x, y, texts["from"], REGULAR, 8, width)
        y -= 12
        self._text(canvas, x, y, data.sender_name, BOLD, 10, width)
        for text in data.sender_address[: _MAX_SENDER_LINES - 1]:
            y -= 12
            self._text(canvas, x, y, text, REGULAR, 10, width)

        y -= 10
        self._rule(canvas, x, y, width)
        centre = x + width / 2
        y -= 12
        self._text(canvas, centre, y, texts["rma"], REGULAR, 8, width, "centre")
        y -= 6 + BAR_HEIGHT
        # Nothing else is drawn at the height of the bars, so the quiet zones Code128 needs
        # (10 modules each side) are the whole width of the frame beside them.
        draw_barcode(canvas, self.number, centre, y, BAR_HEIGHT)
        y -= 24
        self._text(canvas, centre, y, format_rma_number(self.number), BOLD, 24, width, "centre")
        y -= 12
        self._text(canvas, centre, y, self.number, REGULAR, 9, width, "centre")

        claim = f"{texts['claim']} {data.claim_number}"
        self._text(canvas, x, bottom + 16, claim, REGULAR, 8, width)
        self._text(canvas, x, bottom + 2, texts["attach_outside"], BOLD, 9, width)

    def draw_slip(self, canvas: Canvas, frame: tuple[float, float, float, float]) -> None:
        x, bottom, width, height = frame
        data, texts = self.data, self.texts
        y = bottom + height - 16
        self._text(canvas, x, y, texts["packing_slip"], BOLD, 16, width)
        y -= 16
        self._text(canvas, x, y, texts["put_inside"], BOLD, 9, width)
        y -= 10
        self._rule(canvas, x, y, width)
        rows = (
            (texts["rma"], format_rma_number(self.number)),
            (texts["claim"], data.claim_number),
            (texts["product"], data.product_name),
            (texts["sku"], data.sku),
            (texts["serial_number"], data.serial_number),
            (texts["fault"], data.fault_category),
            (texts["remedy"], data.remedy),
            (texts["issued_on"], data.issued_on.isoformat()),
            (texts["from"], data.sender_name),
        )
        column = width * 0.36
        for caption, value in rows:
            y -= 17
            self._text(canvas, x, y, caption, BOLD, 9, column - 6)
            self._text(canvas, x + column, y, value, REGULAR, 11, width - column)

    def draw_cut_line(self, canvas: Canvas, x: float, y: float, width: float) -> None:
        centre = x + width / 2
        _, used = _fit(self.texts["cut_here"], REGULAR, 8, width / 2)
        gap = used / 2 + 6
        canvas.saveState()
        canvas.setDash(6, 4)
        canvas.setLineWidth(0.75)
        canvas.line(x, y, centre - gap, y)
        canvas.line(centre + gap, y, x + width, y)
        canvas.restoreState()
        self._text(canvas, centre, y - 3, self.texts["cut_here"], REGULAR, 8, width / 2, "centre")

    def _rule(self, canvas: Canvas, x: float, y: float, width: float) -> None:
        canvas.setLineWidth(0.5)
        canvas.line(x, y, x + width, y)
