"""Small helpers shared by the parsers: strict money and date reading, text capping, sniffing."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath, PureWindowsPath

from openvrm.documents.parsers.model import MAX_TEXT_CHARS

# A plain decimal number as XML invoices write it. Anything else (exponents, NaN, Infinity, thousands
# separators) is refused so that a hostile file cannot smuggle a 10**999999 into the arithmetic.
_DECIMAL_RE = re.compile(r"[+-]?(\d{1,18}(\.\d{0,12})?|\.\d{1,12})", re.ASCII)
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def to_decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    text = text.strip()
    if not _DECIMAL_RE.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        return None


def per_unit(price: Decimal | None, basis: Decimal | None) -> Decimal | None:
    """The price of one unit when a price is given for ``basis`` units (EN 16931 BT-149)."""
    if price is None or basis is None or basis in (Decimal(0), Decimal(1)):
        return price
    value = price / basis
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:  # an inexact quotient: keep six decimals
        value = value.quantize(Decimal("0.000001"))
    return value


def to_currency(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip().upper()
    return text if _CURRENCY_RE.fullmatch(text) else None


def date_from_parts(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_iso_date(text: str | None) -> date | None:
    """``YYYY-MM-DD`` (UBL), tolerating a trailing time or zone as some producers write."""
    if not text:
        return None
    m = re.match(r"\s*(\d{4})-(\d{2})-(\d{2})", text)
    return date_from_parts(int(m[1]), int(m[2]), int(m[3])) if m else None


def parse_cii_date(text: str | None, fmt: str | None) -> date | None:
    """A UN/CEFACT ``DateTimeString``: format 102 is ``YYYYMMDD``; 610 (``YYYYMM``) gives the 1st."""
    if not text:
        return None
    text = text.strip()
    if fmt in (None, "", "102") and re.fullmatch(r"\d{8}", text):
        return date_from_parts(int(text[:4]), int(text[4:6]), int(text[6:8]))
    if fmt == "610" and re.fullmatch(r"\d{6}", text):
        return date_from_parts(int(text[:4]), int(text[4:6]), 1)
    return parse_iso_date(text)


def clean_text(text: str | None, limit: int = 2_000) -> str | None:
    """One-line, trimmed, length-capped text for a field such as a name; ``None`` when empty."""
    if text is None:
        return None
    text = " ".join(text.split())
    return text[:limit] or None


def cap_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit]


def squeeze_whitespace(text: str) -> str:
    """Collapse runs of blank lines and spaces, keeping line structure for search snippets."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def fix_surrogates(text: str) -> str:
    """Undo ``surrogateescape``: raw bytes that were not UTF-8 are read as Windows-1252 instead."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", "replace")


def safe_filename(name: str | None, fallback: str) -> str:
    """A bare file name: no directories, no control characters, at most 200 characters."""
    if name:
        name = fix_surrogates(name)
        name = PureWindowsPath(PurePosixPath(name).name).name
        name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return (name or fallback)[:200]


def extension(filename: str) -> str:
    return PurePosixPath(filename.lower()).suffix


def looks_like_pdf(data: bytes) -> bool:
    # The PDF header may be preceded by junk; readers accept it within the first kilobyte.
    return b"%PDF-" in data[:1024]


def sniff_head(data: bytes, size: int = 262_144) -> bytes:
    """The first ``size`` bytes as UTF-8, decoding UTF-16/32 text marked by a byte-order mark."""
    head = data[:size]
    if head[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        return head.decode("utf-32", "ignore").encode("utf-8")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return head.decode("utf-16", "ignore").encode("utf-8")
    return head


def looks_like_xml(data: bytes) -> bool:
    head = sniff_head(data, 1024).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def domain_of_email(address: str | None) -> str | None:
    if address and "@" in address:
        domain = address.rsplit("@", 1)[1].strip().strip(">").lower()
        return domain or None
    return None


def domain_of_url(url: str | None) -> str | None:
    if not url:
        return None
    m = re.match(r"\s*(?:[a-z][a-z0-9+.-]*://)?([^/\s:?#]+)", url, re.IGNORECASE)
    if not m:
        return None
    host = m[1].lower()
    return host.removeprefix("www.") or None
