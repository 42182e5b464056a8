"""Profile field types and their validation.

A field key is ``<type>`` or ``<type>.<label>`` (``email``, ``email.work``, ``address.home``,
``loyalty.fnac``). Each type has one validator that turns raw input into the stored (normalised) value or
raises :class:`InvalidValue` saying what is wrong. Postal addresses are objects; every other value is a
string.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError as StdnumError

from openvrm.errors import InvalidValue

FieldValue = str | dict[str, str]

_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_TEXT = 500
ADDRESS_PARTS = ("street", "extra", "postal_code", "city", "region", "country")


def _text(value: Any, what: str, *, max_len: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be text")
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise InvalidValue(f"{what} is empty")
    if len(text) > max_len:
        raise InvalidValue(f"{what} is longer than {max_len} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise InvalidValue(f"{what} contains control characters")
    return text


def _name(value: Any) -> str:
    return _text(value, "a name", max_len=200)


def _email(value: Any) -> str:
    text = _text(value, "an e-mail address", max_len=254)
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise InvalidValue(f"not a valid e-mail address: {exc}") from None


def _phone(value: Any) -> str:
    text = _text(value, "a phone number", max_len=40)
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidValue(
            f"not a phone number: {text!r} (write it in international form, such as +33 1 23 45 67 89)"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidValue(f"not a valid phone number: {text!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _birth_date(value: Any) -> str:
    text = _text(value, "a birth date", max_len=10)
    try:
        born = date.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"not a date in YYYY-MM-DD form: {text!r}") from None
    if born.year < 1880 or born > date.today():  # noqa: DTZ011 - a calendar date, local to the person
        raise InvalidValue(f"not a plausible birth date: {text}")
    return born.isoformat()


def _iban(value: Any) -> str:
    text = _text(value, "an IBAN", max_len=50)
    try:
        return str(stdnum_iban.validate(text))
    except StdnumError:
        raise InvalidValue(f"not a valid IBAN (the checksum or length is wrong): {text!r}") from None


def _identifier(value: Any) -> str:
    return _text(value, "a number", max_len=100)


def _free(value: Any) -> str:
    return _text(value, "the value", max_len=4000)


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidValue("a postal address is given by its parts: street, postal code, city, country")
    unknown = set(value) - set(ADDRESS_PARTS)
    if unknown:
        raise InvalidValue(f"unknown address parts: {', '.join(sorted(unknown))}")
    out: dict[str, str] = {}
    for part in ADDRESS_PARTS:
        raw = value.get(part)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        out[part] = _text(raw, f"the address {part.replace('_', ' ')}", max_len=200)
    missing = [p for p in ("street", "city", "country") if p not in out]
    if missing:
        raise InvalidValue(f"a postal address needs {', '.join(p.replace('_', ' ') for p in missing)}")
    country = out["country"].upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise InvalidValue(
            f"the country must be a two-letter ISO 3166 code such as FR or DE, not {country!r}"
        )
    out["country"] = country
    return out


@dataclass(frozen=True)
class FieldType:
    name: str
    description: str
    validate: Callable[[Any], FieldValue]
    needs_label: bool = False


FIELD_TYPES: dict[str, FieldType] = {
    t.name: t
    for t in (
        FieldType("name", "full name as vendors should write it", _name),
        FieldType("given-name", "given (first) name", _name),
        FieldType("family-name", "family (last) name", _name),
        FieldType("email", "e-mail address", _email),
        FieldType("phone", "phone number, international form", _phone),
        FieldType("address", "postal address (street, extra, postal code, city, region, country)", _address),
        FieldType("birth-date", "birth date, YYYY-MM-DD", _birth_date),
        FieldType("iban", "bank account (IBAN)", _iban),
        FieldType(
            "loyalty", "loyalty card or programme number; label it with the programme", _identifier, True
        ),
        FieldType("customer-number", "a customer number; label it with the vendor", _identifier, True),
        FieldType("free", "any other fact; label it", _free, True),
    )
}


def parse_key(key: str) -> tuple[FieldType, str | None]:
    """Split and check a field key such as ``email.work``; return its type and label."""
    if not isinstance(key, str) or not key:
        raise InvalidValue("a field name is needed, such as email or address.home")
    type_name, dot, label = key.strip().lower().partition(".")
    ftype = FIELD_TYPES.get(type_name)
    if ftype is None:
        raise InvalidValue(f"unknown field type {type_name!r}; known types: {', '.join(FIELD_TYPES)}")
    if label or dot:  # "email." has an empty label: not the unlabelled email
        if not _LABEL.match(label):
            raise InvalidValue(f"a field label is 1-40 of a-z, 0-9, '-' or '_', not {label!r}")
        return ftype, label
    if ftype.needs_label:
        raise InvalidValue(f"a {type_name} field needs a label, such as {type_name}.example")
    return ftype, None


def normalise_key(key: str) -> str:
    ftype, label = parse_key(key)
    return f"{ftype.name}.{label}" if label else ftype.name


def query_key(key: str) -> str:
    """A field key as a question about fields ("who holds my ..."): normalised like a key, but a type
    that needs a label may come without one, to mean every field of that type (``address``)."""
    type_name = key.strip().lower().partition(".")[0] if isinstance(key, str) else ""
    ftype = FIELD_TYPES.get(type_name)
    if ftype is not None and ftype.needs_label and key.strip().lower() == type_name:
        return type_name
    return normalise_key(key)


def validate(key: str, value: Any) -> tuple[str, FieldValue]:
    """Check a key and value; return the normalised key and value."""
    ftype, label = parse_key(key)
    return (f"{ftype.name}.{label}" if label else ftype.name), ftype.validate(value)


def display(value: FieldValue) -> str:
    """One-line rendering of a value (addresses joined with commas)."""
    if isinstance(value, dict):
        parts = [value.get("street"), value.get("extra")]
        parts.append(" ".join(p for p in (value.get("postal_code"), value.get("city")) if p))
        parts += [value.get("region"), value.get("country")]
        return ", ".join(p for p in parts if p)
    return value
