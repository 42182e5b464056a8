"""Money and dates from outside: parsed strictly into Decimal, ISO 4217 codes and calendar dates."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from openvrm.errors import InvalidValue

_AMOUNT = re.compile(r"^-?\d{1,12}([.,]\d{1,4})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def parse_amount(value: object, what: str = "an amount", *, allow_negative: bool = False) -> Decimal:
    """A decimal amount from ``Decimal``, ``int`` or text ("15.99" or "15,99"); never from float."""
    if isinstance(value, float):
        raise InvalidValue(f"{what} must be given as text or Decimal, not a float")
    if isinstance(value, Decimal | int):
        amount = Decimal(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "")
        if not _AMOUNT.match(text):
            raise InvalidValue(f"{what} is not a number such as 15.99: {str(value)[:40]!r}")
        try:
            amount = Decimal(text.replace(",", "."))
        except InvalidOperation:
            raise InvalidValue(f"{what} is not a number: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise InvalidValue(f"{what} must be a finite number")
    if amount < 0 and not allow_negative:
        raise InvalidValue(f"{what} cannot be negative")
    return amount


def parse_currency(value: object) -> str:
    code = str(value or "").strip().upper()
    if not _CURRENCY.match(code):
        raise InvalidValue(f"a currency is a three-letter ISO 4217 code such as EUR, not {str(value)[:20]!r}")
    return code


def parse_date(value: object, what: str = "a date") -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidValue(f"{what} must be in YYYY-MM-DD form, not {str(value)[:40]!r}") from None


def optional_date(value: object, what: str = "a date") -> date | None:
    return None if value in (None, "") else parse_date(value, what)
