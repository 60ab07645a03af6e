"""Return labels: rendered to PDF, rasterised at printer resolution, scanned and read back.

The decoding tests need poppler-utils (pdftoppm, pdftotext) and zbar-tools (zbarimg). They
skip without them on a developer machine, but fail under CI=true: CI must never skip them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest
from barcode.codex import Code128
from reportlab import rl_config

from rma.labels import (
    BOLD,
    DEFAULT_TEXTS,
    REGULAR,
    LabelData,
    fit_text,
    font_files,
    render_label,
    render_labels,
)
from rma.numbers import new_rma_number

TOOLS = ("pdftoppm", "pdftotext", "zbarimg")
DPI = 203
PAGES = ["4x6", "a4", "letter"]
# Page size in pixels at 203 dpi, as pdftoppm rounds it.
RASTER_SIZES = {"4x6": (812, 1218), "a4": (1679, 2374), "letter": (1726, 2233)}

LABEL = LabelData(
    rma_number="R7K4M9QX2V",
    claim_number="CL-2025-000123",
    sku="PH-128-BLK",
    product_name="Phone X 128 GB black",
    serial_number="SN-ABC-123456",
    fault_category="battery",
    remedy="repair",
    issued_on=date(2025, 6, 1),
    sender_name="Åsa Öberg",
    sender_address=("Storgatan 1", "123 45 Stockholm", "Sweden"),
    return_to=("Aftercare Returns", "Dock 7", "Industrivägen 12", "341 32 Ljungby", "Sweden"),
)

SWEDISH = {
    "return_label": "Returetikett",
    "return_to": "Returneras till",
    "from": "Från",
    "rma": "RMA",
    "packing_slip": "Följesedel",
    "cut_here": "Klipp längs linjen",
    "attach_outside": "Fäst etiketten på kartongens utsida",
    "put_inside": "Lägg följesedeln i kartongen",
    "claim": "Ärende",
    "product": "Produkt",
    "sku": "Artikelnummer",
    "serial_number": "Serienummer",
    "fault": "Fel",
    "remedy": "Åtgärd",
    "issued_on": "Utfärdad",
}
SPANISH = {
    "return_label": "Etiqueta de devolución",
    "return_to": "Devolver a",
    "from": "Remitente",
    "rma": "RMA",
    "packing_slip": "Albarán",
    "cut_here": "Corte por esta línea",
    "attach_outside": "Pegue esta etiqueta en el exterior de la caja",
    "put_inside": "Meta este albarán dentro de la caja",
    "claim": "Reclamación",
    "product": "Producto",
    "sku": "Referencia",
    "serial_number": "Número de serie",
    "fault": "Avería",
    "remedy": "Solución",
    "issued_on": "Emitida",
}


@pytest.fixture
def tools() -> None:
    """Skip without the rasteriser and scanner, except under CI=true where that fails."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (apt-get install poppler-utils zbar-tools)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so label decoding must run, not skip")
    pytest.skip(reason)


needs_tools = pytest.mark.usefixtures("tools")


@dataclass(frozen=True)
class Raster:
    width: int
    height: int
    pixels: bytes

    def row(self, y: int) -> bytes:
        return self.pixels[y * self.width : (y + 1) * self.width]


def write_pdf(tmp_path: Path, pdf: bytes, name: str = "label") -> Path:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    return path


def rasterise(pdf: Path, page: int = 1) -> Path:
    """One page as an 8-bit grey PGM at the thermal printers' 203 dpi."""
    prefix = pdf.with_name(f"{pdf.stem}-page{page}")
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-gray", "-f", str(page), "-l", str(page), "-singlefile"]
        + [str(pdf), str(prefix)],
        check=True,
        capture_output=True,
    )
    return prefix.with_suffix(".pgm")


def read_pgm(path: Path) -> Raster:
    data = path.read_bytes()
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+255\s", data)
    assert header, "not an 8-bit PGM"
    width, height = int(header[1]), int(header[2])
    pixels = data[header.end() :]
    assert len(pixels) == width * height
    return Raster(width, height, pixels)


def scan(image: Path) -> list[str]:
    """What a barcode scanner reads from the image, one symbol per item."""
    result = subprocess.run(["zbarimg", "--raw", "-q", str(image)], capture_output=True)
    assert result.returncode == 0, f"no barcode found: {result.stderr.decode(errors='replace')}"
    return result.stdout.decode().split()


def pdf_text(pdf: Path) -> str:
    result = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True, capture_output=True
    )
    return result.stdout.decode()


def flat(text: str) -> str:
    return " ".join(text.split())


def dark_runs(row: bytes) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(rb"[\x00-\x7f]+", row)]


def barcode_band(raster: Raster) -> tuple[int, int]:
    """First row and height of the tallest stack of identical rows with 20+ bars in them.

    Bars are the only thing drawn whose rows repeat exactly for millimetres; text doesn't.
    """
    best = (0, 0)
    y = 0
    while y < raster.height:
        end = y + 1
        while end < raster.height and raster.row(end) == raster.row(y):
            end += 1
        if end - y > best[1] and len(dark_runs(raster.row(y))) >= 20:
            best = (y, end - y)
        y = end
    assert best[1], "no barcode band found"
    return best


# Rendering without external tools ---------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_a_label_renders_to_pdf_bytes(page):
    pdf = render_label(LABEL, page)

    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")


def test_the_same_label_renders_to_the_same_bytes():
    assert render_label(LABEL) == render_label(replace(LABEL))


def test_rendering_leaves_reportlabs_global_settings_as_they_were():
    before = rl_config.useA85

    render_label(LABEL)

    assert rl_config.useA85 == before


def test_an_unknown_page_size_is_refused():
    with pytest.raises(ValueError, match="page must be one of 4x6, a4, letter"):
        render_label(LABEL, "a5")


@pytest.mark.parametrize("number", ["R7K4M9QX2W", "SN-12345", ""])
def test_a_label_is_never_printed_for_an_invalid_rma_number(number):
    with pytest.raises(ValueError, match="cannot print a label for RMA number"):
        render_label(replace(LABEL, rma_number=number))


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="no labels"):
        render_labels([])


def test_unknown_caption_keys_are_refused():
    with pytest.raises(ValueError, match="unknown label captions: retrun_to"):
        replace(LABEL, texts={"retrun_to": "Retur till"})


def test_a_batch_stays_small_enough_to_send_to_a_printer():
    items = [replace(LABEL, rma_number=new_rma_number()) for _ in range(200)]

    pdf = render_labels(items, "4x6")

    # 2 MB for 1,000 labels.
    assert len(pdf) < 200 * 2_000


def test_short_text_is_kept_as_it_is():
    assert fit_text("Åsa Öberg", REGULAR, 10, 200) == "Åsa Öberg"


@pytest.mark.parametrize("text", ["W" * 300, "Maximiliana " * 1000, "x" * 100_000])
def test_long_text_is_cut_with_an_ellipsis_to_fit(text):
    from reportlab.pdfbase.pdfmetrics import stringWidth

    fitted = fit_text(text, BOLD, 10, 150)

    assert fitted.endswith("…")
    assert text.startswith(fitted[:-1])
    assert stringWidth(fitted, BOLD, 10) <= 150


def test_control_characters_and_direction_overrides_are_not_printed():
    assert fit_text("Main St\n12\t\x00B\u202ecba\x1b", REGULAR, 10, 500) == "Main St 12 Bcba"


def test_fonts_fall_back_to_reportlabs_bundled_vera(tmp_path):
    regular, bold = font_files([tmp_path])

    assert (regular.name, bold.name) == ("Vera.ttf", "VeraBd.ttf")
    assert regular.is_file() and bold.is_file()


# Scanned at printer resolution ------------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("page", PAGES)
def test_the_barcode_scans_as_the_rma_number(page, tmp_path):
    pdf = write_pdf(tmp_path, render_label(LABEL, page))

    assert scan(rasterise(pdf)) == ["R7K4M9QX2V"]


@needs_tools
def test_the_barcode_holds_the_canonical_number_when_given_a_formatted_one(tmp_path):
    pdf = write_pdf(tmp_path, render_label(replace(LABEL, rma_number=" r7k4m-9qx2v ")))

    assert scan(rasterise(pdf)) == ["R7K4M9QX2V"]


@needs_tools
@pytest.mark.parametrize("page", PAGES)
def test_bars_are_two_printer_dots_wide_with_quiet_zones(page, tmp_path):
    raster = read_pgm(rasterise(write_pdf(tmp_path, render_label(LABEL, page))))
    top, height = barcode_band(raster)
    row = raster.row(top)
    bars = dark_runs(row)
    spaces = [(end, start) for (_, end), (start, _) in zip(bars, bars[1:], strict=False)]
    modules = Code128("R7K4M9QX2V").build()[0]

    assert (raster.width, raster.height) == RASTER_SIZES[page]
    assert height >= 15 / 25.4 * DPI
    # Every bar and space is a whole number of 2-dot modules: the bars sit on the dot grid.
    assert min(end - start for start, end in bars) == 2
    assert min(end - start for start, end in spaces) == 2
    assert all((end - start) % 2 == 0 for start, end in bars + spaces)
    assert bars[-1][1] - bars[0][0] == len(modules) * 2
    light = bytes(range(128, 256))
    left_quiet = len(row[: bars[0][0]]) - len(row[: bars[0][0]].rstrip(light))
    right_quiet = len(row[bars[-1][1] :]) - len(row[bars[-1][1] :].lstrip(light))
    assert left_quiet >= 20
    assert right_quiet >= 20


@needs_tools
@pytest.mark.parametrize("page", PAGES)
def test_the_label_shows_what_people_need_to_read(page, tmp_path):
    pdf = write_pdf(tmp_path, render_label(LABEL, page))
    text = pdf_text(pdf)
    words = flat(text)

    assert text.count("\f") == (2 if page == "4x6" else 1)
    for expected in [
        "R7K4M-9QX2V",
        "R7K4M9QX2V",
        "SN-ABC-123456",
        "PH-128-BLK",
        "Phone X 128 GB black",
        "CL-2025-000123",
        "battery",
        "repair",
        "2025-06-01",
        *LABEL.return_to,
        "Åsa Öberg",
        *LABEL.sender_address,
        "Return label",
        "Return to",
        "From",
        "Packing slip",
        "Attach this label to the outside of the box",
        "Put this slip inside the box",
        "Serial number",
        "Product",
        "Fault",
        "Remedy",
        "Claim",
    ]:
        assert expected in words, expected
    assert ("Cut along this line" in words) is (page != "4x6")


@needs_tools
def test_names_in_any_latin_script_print(tmp_path):
    label = replace(
        LABEL,
        sender_name="José Muñoz Ñúñez",
        sender_address=("Calle de la Peña 7", "Łódź", "Straße 5, Malmö"),
    )

    words = flat(pdf_text(write_pdf(tmp_path, render_label(label))))

    for expected in ["José Muñoz Ñúñez", "Calle de la Peña 7", "Łódź", "Straße 5, Malmö"]:
        assert expected in words


@needs_tools
def test_markup_in_names_and_addresses_prints_literally(tmp_path):
    label = replace(
        LABEL,
        sender_name="<script>alert(1)</script>",
        sender_address=("<b>bold</b> &amp; <i>", "<para>x</para>"),
    )

    words = flat(pdf_text(write_pdf(tmp_path, render_label(label, "a4"))))

    assert "<script>alert(1)</script>" in words
    assert "<b>bold</b> &amp; <i>" in words
    assert "<para>x</para>" in words


@needs_tools
@pytest.mark.parametrize("texts", [SWEDISH, SPANISH], ids=["sv", "es"])
def test_captions_come_from_the_translation(texts, tmp_path):
    pdf = write_pdf(tmp_path, render_label(replace(LABEL, texts=texts), "a4"))
    words = flat(pdf_text(pdf))

    for caption in texts.values():
        assert caption in words, caption
    for english in DEFAULT_TEXTS.values():
        if english != "RMA":
            assert not re.search(rf"\b{english}\b", words), english
    assert scan(rasterise(pdf)) == ["R7K4M9QX2V"]


@needs_tools
@pytest.mark.parametrize("page", PAGES)
def test_long_text_never_runs_off_the_label(page, tmp_path):
    long = "Wolfeschlegelsteinhausenbergerdorff " * 20
    label = replace(
        LABEL,
        claim_number=long,
        sku=long,
        product_name=long,
        serial_number=long,
        fault_category=long,
        remedy=long,
        sender_name=long,
        sender_address=(long,) * 10,
        return_to=(long,) * 10,
        texts={key: long for key in DEFAULT_TEXTS},
    )
    pdf = write_pdf(tmp_path, render_label(label, page))
    margin = 30  # pixels: the frame is inset 12 pt (34 px) on 4x6 and 36 pt on A4/Letter

    for number in (1, 2) if page == "4x6" else (1,):
        raster = read_pgm(rasterise(pdf, number))
        edges = [
            raster.row(y) for y in [*range(margin), *range(raster.height - margin, raster.height)]
        ]
        sides = [raster.row(y)[:margin] + raster.row(y)[-margin:] for y in range(raster.height)]
        assert min(min(row) for row in edges + sides) >= 200, f"ink at the edge of page {number}"
    assert "…" in pdf_text(pdf)
    assert scan(rasterise(pdf)) == ["R7K4M9QX2V"]


@needs_tools
@pytest.mark.parametrize(("page", "pages_per_label"), [("4x6", 2), ("a4", 1), ("letter", 1)])
def test_a_batch_prints_every_label_and_each_scans(page, pages_per_label, tmp_path):
    items = [replace(LABEL, rma_number=new_rma_number()) for _ in range(50)]
    pdf = write_pdf(tmp_path, render_labels(items, page))

    assert pdf_text(pdf).count("\f") == 50 * pages_per_label
    for index in (0, 37, 49):
        label_page = index * pages_per_label + 1
        assert scan(rasterise(pdf, label_page)) == [items[index].rma_number]
