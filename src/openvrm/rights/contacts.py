"""Where a vendor is reached: its directory record (privacy e-mail, postal address, web form).

A vendor added from the directory carries its slug; one added by hand is looked up by its domains. The
channel is the one asked for, else the directory's suggested transport, else e-mail, web form, post in
that order of preference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openvrm.directory.catalog import DirectoryEntry, directory
from openvrm.errors import InvalidValue
from openvrm.vendors.service import VendorRecord

CHANNELS = ("email", "post", "webform")
_TRANSPORT = {"email": "email", "letter": "post", "webform": "webform"}


@dataclass(frozen=True)
class Contact:
    name: str
    email: str | None = None
    address: str | None = None
    webform: str | None = None
    suggested: str | None = None
    request_language: str | None = None
    country: str | None = None
    required_elements: tuple[dict[str, str], ...] = field(default=())
    slug: str | None = None

    @property
    def channels(self) -> list[str]:
        out = []
        if self.email:
            out.append("email")
        if self.webform:
            out.append("webform")
        if self.address:
            out.append("post")
        return out

    def choose(self, wanted: str | None = None) -> str:
        """The channel to use, or :class:`InvalidValue` saying what is missing."""
        if wanted is not None and wanted not in CHANNELS:
            raise InvalidValue(f"a channel is one of {', '.join(CHANNELS)}, not {wanted!r}")
        have = self.channels
        if not have:
            raise InvalidValue(
                f"{self.name} has no contact: no privacy e-mail, postal address or web form is known; "
                "give an e-mail address with --to"
            )
        if wanted is not None:
            if wanted not in have:
                need = {"email": "an e-mail address", "post": "a postal address", "webform": "a web form"}
                raise InvalidValue(
                    f"{self.name} has no {need[wanted].split(' ', 1)[1]} on record; "
                    f"it can be reached by {', '.join(have)}"
                )
            return wanted
        suggested = _TRANSPORT.get(self.suggested or "")
        return suggested if suggested in have else have[0]

    def address_lines(self) -> tuple[str, ...]:
        lines = [self.name]
        if self.address:
            lines += [ln.strip() for ln in self.address.splitlines() if ln.strip()]
        return tuple(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "email": self.email,
            "address": self.address,
            "webform": self.webform,
            "suggested": self.suggested,
            "slug": self.slug,
        }


def directory_entry_for(vendor: VendorRecord) -> DirectoryEntry | None:
    d = directory()
    if vendor.directory_slug:
        entry = d.get(vendor.directory_slug)
        if entry is not None:
            return entry
    for domain in vendor.domains:
        hits = d.by_domain(domain)
        if len(hits) == 1:
            return hits[0]
    return None


def contact_for(vendor: VendorRecord, *, email: str | None = None) -> Contact:
    """The vendor's contact; ``email`` (given by the person) replaces the directory's e-mail."""
    entry = directory_entry_for(vendor)
    if email is not None:
        from openvrm.profile.fields import validate

        _, email = validate("email", email)  # type: ignore[assignment]
    if entry is None:
        return Contact(name=vendor.name, email=email, country=vendor.country)
    countries = [c for c in entry.countries if c != "all"]
    return Contact(
        name=vendor.name,
        email=email or entry.email,
        address=entry.address,
        webform=entry.webform,
        suggested="email" if email else entry.transport,
        request_language=entry.request_language,
        country=vendor.country or (countries[0] if len(countries) == 1 else None),
        required_elements=entry.required_elements,
        slug=entry.slug,
    )
