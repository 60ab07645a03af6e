"""Time return-label rendering: native Code128 bars against reportlab's own barcode widget.

``python -m bench.labels [--labels 500] [--batch 1000]``

Three renders of the same 4x6 label through the same layout code differ only in how the
barcode is drawn: not at all (the bare label), as dot-grid rectangles (``render_label``),
and with ``reportlab.graphics.barcode.code128.Code128``. Then one PDF of ``--batch``
labels, against the targets of 1 s and 2 MB for 1,000.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date

from reportlab.graphics.barcode.code128 import Code128 as ReportlabCode128
from reportlab.pdfgen.canvas import Canvas

from rma.labels import (
    DOT,
    MODULE_DOTS,
    BarcodeDrawer,
    LabelData,
    _render,
    render_label,
    render_labels,
)
from rma.numbers import new_rma_number

TARGET_BATCH_SECONDS = 1.0
TARGET_BATCH_BYTES = 2_000_000
TARGET_RATIO = 1.5

SAMPLE = LabelData(
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


def no_barcode(canvas: Canvas, number: str, centre_x: float, bottom: float, height: float) -> None:
    """The bare label: everything but the barcode."""


def reportlab_code128(
    canvas: Canvas, number: str, centre_x: float, bottom: float, height: float
) -> None:
    """reportlab's Code128 widget with the same module width and height."""
    symbol = ReportlabCode128(number, barWidth=MODULE_DOTS * DOT, barHeight=height, quiet=0)
    symbol.drawOn(canvas, centre_x - symbol.width / 2, bottom)


def labels_per_second(items: list[LabelData], render: Callable[[LabelData], bytes]) -> float:
    """Labels a second, each rendered as its own PDF as ``render_label`` does."""
    render(items[0])
    started = time.perf_counter()
    for data in items:
        render(data)
    return len(items) / (time.perf_counter() - started)


def with_barcode(draw: BarcodeDrawer) -> Callable[[LabelData], bytes]:
    """``render_label`` for 4x6 with another barcode drawer."""
    return lambda data: _render([data], "4x6", draw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=500, help="labels per single-label run")
    parser.add_argument("--batch", type=int, default=1000, help="labels in the batch PDF")
    args = parser.parse_args()

    rng = random.Random(1)
    items = [replace(SAMPLE, rma_number=new_rma_number(rng.randrange)) for _ in range(args.labels)]
    accelerated = importlib.util.find_spec("_rl_accel") is not None
    print(f"reportlab C accelerator (rl_accel): {'yes' if accelerated else 'no'}")

    bare = labels_per_second(items, with_barcode(no_barcode))
    native = labels_per_second(items, render_label)
    widget = labels_per_second(items, with_barcode(reportlab_code128))
    print(f"render_label 4x6, one PDF per label, {args.labels} labels:")
    for name, rate in [
        ("bare label (no barcode)", bare),
        ("native dot-grid Code128", native),
        ("reportlab Code128 widget", widget),
    ]:
        print(f"  {name:<26} {rate:8.0f} labels/s  {1000 / rate:6.2f} ms/label")
    print(
        f"  native / bare    {bare / native:5.2f}x time (target <= {TARGET_RATIO}x)\n"
        f"  reportlab / bare {bare / widget:5.2f}x time\n"
        f"  reportlab / native {native / widget:5.2f}x time"
    )

    batch = [replace(SAMPLE, rma_number=new_rma_number(rng.randrange)) for _ in range(args.batch)]
    render_labels(batch[:10], "4x6")
    started = time.perf_counter()
    pdf = render_labels(batch, "4x6")
    seconds = time.perf_counter() - started
    print(f"render_labels 4x6, {args.batch} labels in one PDF ({2 * args.batch} pages):")
    print(
        f"  {seconds:.3f} s ({1000 * seconds / args.batch:.2f} ms/label), "
        f"{len(pdf):,} bytes ({len(pdf) / args.batch:.0f} bytes/label)"
    )
    if args.batch == 1000:
        print(
            f"  targets: < {TARGET_BATCH_SECONDS:.0f} s "
            f"{'met' if seconds < TARGET_BATCH_SECONDS else 'MISSED'}, "
            f"< {TARGET_BATCH_BYTES / 1e6:.0f} MB "
            f"{'met' if len(pdf) < TARGET_BATCH_BYTES else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
