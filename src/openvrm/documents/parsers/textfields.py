"""Best-effort invoice fields from free text (a PDF without embedded XML, a plain-text receipt).

Regular expressions for the labels German, French and English invoices use. This is a guess, and the
parsers say so: results from here are never better than ``"partial"`` unless all key fields were found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from stdnum.eu import vat as eu_vat

from openvrm.documents.parsers._util import date_from_parts

_SEP = r"[ \u00a0\u202f'.,]"
# 1.234,56 / 1,234.56 / 1 234,56 / 1234.56 / 12,5 ... always with a decimal part so that years, postcodes
# and quantities are not mistaken for money.
_AMOUNT = rf"(?P<amount>-?\d{{1,3}}(?:{_SEP}\d{{3}})+[.,]\d{{2}}|-?\d+[.,]\d{{2}})(?!\d)"
_CURRENCY_TOKENS = {
    "€": "EUR",
    "EUR": "EUR",
    "$": "USD",
    "USD": "USD",
    "£": "GBP",
    "GBP": "GBP",
    "CHF": "CHF",
}

_MONTHS = {
    **dict.fromkeys(("january", "jan", "januar", "janvier", "jänner"), 1),
    **dict.fromkeys(("february", "feb", "februar", "février", "fevrier"), 2),
    **dict.fromkeys(("march", "mar", "märz", "maerz", "mars"), 3),
    **dict.fromkeys(("april", "apr", "avril"), 4),
    **dict.fromkeys(("may", "mai"), 5),
    **dict.fromkeys(("june", "jun", "juni", "juin"), 6),
    **dict.fromkeys(("july", "jul", "juli", "juillet"), 7),
    **dict.fromkeys(("august", "aug", "août", "aout"), 8),
    **dict.fromkeys(("september", "sep", "sept", "septembre"), 9),
    **dict.fromkeys(("october", "oct", "oktober", "octobre", "okt"), 10),
    **dict.fromkeys(("november", "nov", "novembre"), 11),
    **dict.fromkeys(("december", "dec", "dezember", "décembre", "decembre", "dez"), 12),
}
_MONTH_NAMES = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_DATE = (
    r"(?P<date>\d{4}-\d{2}-\d{2}"
    r"|\d{1,2}[./]\d{1,2}[./]\d{4}"
    r"|\d{1,2}[./]\d{1,2}[./]\d{2}(?!\d)"
    rf"|\d{{1,2}}\.?\s+(?:{_MONTH_NAMES})\.?\s+\d{{4}}"
    rf"|(?:{_MONTH_NAMES})\.?\s+\d{{1,2}},?\s+\d{{4}})"
)
_GAP = r"[^\n\d]{0,40}?"

_NUMBER_RE = re.compile(
    r"\b(?:rechnungs-?\s*nr\.?|rechnungsnummer|rechnung\s+nr\.?|rechnung\s+nummer|belegnummer|beleg-nr\.?"
    r"|invoice\s*(?:no\.?|number|num\.?|#)|receipt\s*(?:no\.?|number|#)"
    r"|(?:num[ée]ro\s+de\s+)?facture\s*(?:n[°o]\.?|num[ée]ro)?|n[°o]\s*de\s*facture)"
    r"\s*[:#.]?\s*(?P<number>[A-Z0-9][A-Z0-9/_.-]{0,39})",
    re.IGNORECASE,
)
_ISSUE_RE = re.compile(
    r"\b(?:rechnungsdatum|belegdatum|invoice\s+date|date\s+of\s+issue|issue\s+date|date\s+de\s+(?:la\s+)?facture"
    r"|date\s+d'[ée]mission|issued(?:\s+(?:at|on))?)" + _GAP + _DATE,
    re.IGNORECASE,
)
_ISSUE_GENERIC_RE = re.compile(r"(?<!due )\b(?:datum|date)" + _GAP + _DATE, re.IGNORECASE)
_DUE_RE = re.compile(
    r"\b(?:f[äa]llig(?:keitsdatum|\s+am|\s+bis)?|zahlbar\s+bis|due\s+date|payment\s+due|due\s+by"
    r"|remit\s+(?:until|by)|pay(?:able)?\s+(?:until|by)"
    r"|date\s+d'[ée]ch[ée]ance|[ée]ch[ée]ance)" + _GAP + _DATE,
    re.IGNORECASE,
)
_GROSS_RE = re.compile(
    r"\b(?P<label>gesamtbetrag|rechnungsbetrag|bruttobetrag|endbetrag|gesamtsumme|zu\s+zahlen|zahlbetrag"
    r"|total\s+ttc|montant\s+ttc|net\s+[àa]\s+payer|grand\s+total|total\s+amount|amount\s+due|total\s+due"
    r"|due\s+payable|amount\s+payable|total\s+payable|balance\s+due|invoice\s+total"
    r"|(?<!vat\s)(?<!net\s)(?<!tax\s)(?<!sub-)total)" + _GAP + _AMOUNT,
    re.IGNORECASE,
)
_NET_RE = re.compile(
    r"\b(?:nettobetrag|summe\s+netto|netto|total\s+ht|montant\s+ht|sub-?total|net\s+amount|net\s+total"
    r"|total\s+net)" + _GAP + _AMOUNT,
    re.IGNORECASE,
)
_TAX_RE = re.compile(
    r"\b(?:mwst\.?|mehrwertsteuer|umsatzsteuer|ust\.?|tva|vat|sales\s+tax)"
    r"[^\n\d%]{0,30}?(?:\d{1,2}(?:[.,]\d{1,2})?\s*%[^\n\d]{0,30}?)?" + _AMOUNT,
    re.IGNORECASE,
)
_VAT_ID_RE = re.compile(
    r"\b(?:ATU|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI)"
    r"[ ]?[0-9A-Z][0-9A-Z .]{6,14}[0-9A-Z]\b"
)
_CURRENCY_RE = re.compile(r"€|\$|£|\b(?:EUR|USD|GBP|CHF)\b")


@dataclass(frozen=True)
class TextFields:
    invoice_number: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    net_total: Decimal | None = None
    tax_total: Decimal | None = None
    gross_total: Decimal | None = None
    currency: str | None = None
    vat_id: str | None = None

    KEY_FIELDS = ("invoice_number", "issue_date", "gross_total")

    def found(self) -> list[str]:
        return [name for name in self.KEY_FIELDS if getattr(self, name) is not None]

    def missing(self) -> list[str]:
        return [name for name in self.KEY_FIELDS if getattr(self, name) is None]


def parse_amount(text: str) -> Decimal | None:
    text = text.strip()
    negative = text.startswith("-")
    digits = text.lstrip("-")
    decimal_sep = digits[-3]  # the pattern guarantees two decimals after the separator
    whole = re.sub(r"\D", "", digits[:-3])
    try:
        value = Decimal(f"{whole or '0'}.{digits[-2:]}") if decimal_sep in ".," else None
    except InvalidOperation:  # pragma: no cover - only digits reach here
        return None
    return -value if (value is not None and negative) else value


def parse_date(text: str) -> date | None:
    text = text.strip().lower()
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text):
        return date_from_parts(int(m[1]), int(m[2]), int(m[3]))
    if m := re.fullmatch(r"(\d{1,2})[./](\d{1,2})[./](\d{2}|\d{4})", text):
        year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
        # Day first: the European order used by the invoices this project meets.
        return date_from_parts(year, int(m[2]), int(m[1]))
    if m := re.fullmatch(r"(\d{1,2})\.?\s+(\S+?)\.?\s+(\d{4})", text):
        month = _MONTHS.get(m[2])
        return date_from_parts(int(m[3]), month, int(m[1])) if month else None
    if m := re.fullmatch(r"(\S+?)\.?\s+(\d{1,2}),?\s+(\d{4})", text):
        month = _MONTHS.get(m[1])
        return date_from_parts(int(m[3]), month, int(m[2])) if month else None
    return None


def _first_amount(pattern: re.Pattern[str], text: str) -> Decimal | None:
    for m in pattern.finditer(text):
        value = parse_amount(m["amount"])
        if value is not None:
            return value
    return None


def _first_date(pattern: re.Pattern[str], text: str) -> date | None:
    for m in pattern.finditer(text):
        value = parse_date(m["date"])
        if value is not None:
            return value
    return None


def _vat_id(text: str) -> str | None:
    for m in _VAT_ID_RE.finditer(text):
        candidate = re.sub(r"[ .]", "", m[0])
        try:
            if eu_vat.is_valid(candidate):
                return str(eu_vat.compact(candidate))
        except Exception:  # noqa: S112 - python-stdnum raises for odd inputs; the next candidate is tried
            continue
    return None


def guess_fields(text: str) -> TextFields:
    """Pick invoice fields out of ``text``; every field is ``None`` when not found."""
    text = text[:200_000]
    number = None
    for m in _NUMBER_RE.finditer(text):
        candidate = m["number"].rstrip(".-/")
        if any(ch.isdigit() for ch in candidate):
            number = candidate
            break
    counts: dict[str, int] = {}
    for m in _CURRENCY_RE.finditer(text):
        code = _CURRENCY_TOKENS[m[0]]
        counts[code] = counts.get(code, 0) + 1
    currency = max(sorted(counts), key=lambda c: counts[c]) if counts else None
    return TextFields(
        invoice_number=number,
        issue_date=_first_date(_ISSUE_RE, text) or _first_date(_ISSUE_GENERIC_RE, text),
        due_date=_first_date(_DUE_RE, text),
        net_total=_first_amount(_NET_RE, text),
        tax_total=_first_amount(_TAX_RE, text),
        gross_total=_last_gross(text),
        currency=currency,
        vat_id=_vat_id(text),
    )


def _last_gross(text: str) -> Decimal | None:
    # A receipt repeats "Total" (subtotals, per-rate totals); the last labelled total is the grand total
    # more often than the first. Specific labels (Gesamtbetrag, amount due, TTC) beat the bare word.
    specific = [m for m in _GROSS_RE.finditer(text) if m["label"].lower() != "total"]
    matches = specific or list(_GROSS_RE.finditer(text))
    for m in reversed(matches):
        value = parse_amount(m["amount"])
        if value is not None:
            return value
    return None
