"""Which identity elements a vendor asks for, filled from the profile and the relationship.

The directory lists, per company, the ``required-elements`` it needs to find a person: ``name``,
``email``, ``address``, ``birthdate``, or a free ``input``/``textarea`` described in its own words
("Kundennummer", "Username"). Typed elements map to profile fields; free ones are matched by their
description (a customer number comes from the relationship or a ``customer-number.<label>`` field, a
user name from the relationship's account, a phone from the profile), or given by the person. Whatever
cannot be filled is reported all at once, so one message says everything that is missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from openvrm.directory.catalog import normalise
from openvrm.profile.fields import FieldValue, display
from openvrm.rights.letters import ELEMENT_LABELS

DEFAULT_ELEMENTS: tuple[dict[str, str], ...] = ({"type": "name", "desc": ""}, {"type": "email", "desc": ""})

_CUSTOMER = re.compile(r"kund|custom|client|abo|mitglied|member|vertrag|contract|konto|account|vers")
_USER = re.compile(r"user|benutzer|login|pseudo|nutzer")
_PHONE = re.compile(r"phone|telefon|appel|mobil|handy|portable")
_EMAIL = re.compile(r"e ?mail|courriel")


@dataclass(frozen=True)
class IdentityResult:
    elements: list[tuple[str, str]]
    missing: list[str]


def _first(profile: Mapping[str, FieldValue], key: str) -> FieldValue | None:
    if key in profile:
        return profile[key]
    for k in sorted(profile):
        if k.startswith(key + "."):
            return profile[k]
    return None


def person_name(profile: Mapping[str, FieldValue]) -> str | None:
    name = _first(profile, "name")
    if isinstance(name, str):
        return name
    given, family = _first(profile, "given-name"), _first(profile, "family-name")
    if isinstance(given, str) and isinstance(family, str):
        return f"{given} {family}"
    return None


def resolve_identity(
    required: tuple[dict[str, str], ...] | list[dict[str, str]],
    *,
    profile: Mapping[str, FieldValue],
    lang: str,
    vendor_labels: list[str],
    customer_number: str | None = None,
    account: str | None = None,
    given: Mapping[str, str] | None = None,
) -> IdentityResult:
    """Fill ``required`` (directory elements); ``given`` maps an element's type or description to a value."""
    labels = ELEMENT_LABELS[lang]
    given_n = {normalise(k): v for k, v in (given or {}).items() if v and v.strip()}
    out: list[tuple[str, str]] = []
    missing: list[str] = []
    for el in required or DEFAULT_ELEMENTS:
        kind, desc = el.get("type", ""), el.get("desc", "").strip()
        label = labels.get(kind) or desc or kind
        value: FieldValue | None = given_n.get(normalise(desc)) if desc else None
        value = value or given_n.get(normalise(kind))
        if value is None:
            if kind == "name":
                value = person_name(profile)
            elif kind == "email":
                value = _first(profile, "email")
            elif kind == "address":
                value = _first(profile, "address")
            elif kind == "birthdate":
                value = _first(profile, "birth-date")
            else:
                value = _free_element(normalise(desc), profile, vendor_labels, customer_number, account)
        if value is None or value == "":
            missing.append(f"{desc or kind} ({kind})" if desc else kind)
            continue
        out.append((label, display(value)))
    return IdentityResult(out, missing)


def _free_element(
    desc: str,
    profile: Mapping[str, FieldValue],
    vendor_labels: list[str],
    customer_number: str | None,
    account: str | None,
) -> FieldValue | None:
    if _CUSTOMER.search(desc):
        if customer_number:
            return customer_number
        for label in vendor_labels:
            v = profile.get(f"customer-number.{label}")
            if v:
                return v
        return None
    if _USER.search(desc):
        return account
    if _PHONE.search(desc):
        return _first(profile, "phone")
    if _EMAIL.search(desc):
        return _first(profile, "email")
    # A labelled free field whose label is in the description ("Geburtsort" -> free.geburtsort).
    words = set(desc.split())
    for key, v in profile.items():
        _, _, label = key.partition(".")
        if label and (label.replace("-", " ").replace("_", " ") in desc or label in words):
            return v
    return None
