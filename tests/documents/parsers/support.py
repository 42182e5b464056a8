"""Shared helpers for the parser tests: the shared e-invoice corpus and small PDFs built on the fly."""

from __future__ import annotations

import io
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfWriter

DATA = Path(__file__).resolve().parent / "data"
# tests/documents/parsers/conftest.py -> parents[4] is the repository's parent, where shared/ lives.
EINVOICES = Path(__file__).resolve().parents[4] / "shared" / "data" / "einvoices"


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines``."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    for line in lines:
        pdf.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def with_attachment(pdf: bytes, name: str, content: bytes) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.add_attachment(name, content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
