"""Vendors and relationships.

A vendor is a company the person deals with (its name, domains, country, categories, and the directory
slug when it came from the bundled directory). A relationship is the person's side of dealing with one
vendor: customer and account numbers, since when, status, the person's stance, tags and notes.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from stdnum.eu import vat as stdnum_vat
from stdnum.exceptions import ValidationError as StdnumError

from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.profile.fields import _text
from openvrm.records import all_rows, get_row, insert, payload_of, update
from openvrm.storage.models import Document, Relationship, Vendor
from openvrm.vault.core import UnlockedVault

STATUSES = ("active", "ended")
STANCES = ("trusted", "neutral", "blocked")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _domain(value: str) -> str:
    d = value.strip().lower().removeprefix("https://").removeprefix("http://").split("/")[0]
    d = d.removeprefix("www.")
    try:
        d = d.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidValue(f"not a domain name: {value!r}") from None
    if not _DOMAIN.match(d):
        raise InvalidValue(f"not a domain name: {value!r}")
    return d


def _vat_id(value: str) -> str:
    """An EU VAT number, normalised (FR40303265045); the checksum is verified where stdnum knows it."""
    try:
        return str(stdnum_vat.validate(value))
    except StdnumError:
        raise InvalidValue(f"not a valid EU VAT number: {value!r}") from None


def _folder(value: str) -> str:
    """A folder path such as ``home/utilities``: words separated by '/', no empty parts."""
    parts = [_text(p, "a folder name", max_len=60) for p in str(value).strip().strip("/").split("/")]
    if not parts or len(parts) > 5:
        raise InvalidValue("a folder is one to five names separated by '/'")
    return "/".join(parts)


def _tags(values: list[str]) -> list[str]:
    out = []
    for v in values:
        t = _text(v, "a tag", max_len=40).lower()
        if t not in out:
            out.append(t)
    return out


@dataclass
class VendorRecord:
    id: str
    name: str
    domains: list[str] = field(default_factory=list)
    country: str | None = None
    categories: list[str] = field(default_factory=list)
    directory_slug: str | None = None
    website: str | None = None
    notes: str = ""
    vat_ids: list[str] = field(default_factory=list)
    created_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("id")
        d.pop("created_at")
        return d

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d


@dataclass
class RelationshipRecord:
    id: str
    vendor_id: str
    status: str = "active"
    stance: str = "neutral"
    customer_number: str | None = None
    account: str | None = None
    since: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    folder: str | None = None
    created_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("id", "vendor_id", "created_at"):
            d.pop(k)
        return d

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d


def clean_vendor(
    name: str,
    *,
    domains: list[str] | None = None,
    country: str | None = None,
    categories: list[str] | None = None,
    directory_slug: str | None = None,
    website: str | None = None,
    notes: str = "",
    vat_ids: list[str] | None = None,
) -> dict[str, Any]:
    if country is not None:
        country = country.strip().upper()
        if not _COUNTRY.match(country):
            raise InvalidValue(f"the country must be a two-letter ISO 3166 code, not {country!r}")
    return {
        "name": _text(name, "a vendor name", max_len=200),
        "domains": list(dict.fromkeys(_domain(d) for d in domains or [])),
        "country": country,
        "categories": _tags(categories or []),
        "directory_slug": _text(directory_slug, "a directory slug", max_len=200) if directory_slug else None,
        "website": _text(website, "a website", max_len=500) if website else None,
        "notes": notes.strip()[:10000],
        "vat_ids": list(dict.fromkeys(_vat_id(v) for v in vat_ids or [])),
    }


def clean_relationship(
    *,
    status: str = "active",
    stance: str = "neutral",
    customer_number: str | None = None,
    account: str | None = None,
    since: str | date | None = None,
    tags: list[str] | None = None,
    notes: str = "",
    folder: str | None = None,
) -> dict[str, Any]:
    if status not in STATUSES:
        raise InvalidValue(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if stance not in STANCES:
        raise InvalidValue(f"stance must be one of {', '.join(STANCES)}, not {stance!r}")
    since_s = None
    if since:
        try:
            since_s = (since if isinstance(since, date) else date.fromisoformat(str(since))).isoformat()
        except ValueError:
            raise InvalidValue(f"'since' must be a date in YYYY-MM-DD form, not {since!r}") from None
    return {
        "status": status,
        "stance": stance,
        "customer_number": _text(customer_number, "a customer number", max_len=100)
        if customer_number
        else None,
        "account": _text(account, "an account", max_len=200) if account else None,
        "since": since_s,
        "tags": _tags(tags or []),
        "notes": notes.strip()[:10000],
        "folder": _folder(folder) if folder else None,
    }


class VendorService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault

    # vendors

    def add(self, name: str, **kw: Any) -> VendorRecord:
        payload = clean_vendor(name, **kw)
        with self.vault.db.write() as s:
            row = insert(self.vault, s, Vendor, payload)
        return VendorRecord(id=row.id, created_at=row.created_at, **payload)

    def list(self) -> list[VendorRecord]:
        with self.vault.db.read() as s:
            rows = list(all_rows(s, Vendor))
        out = [VendorRecord(id=r.id, created_at=r.created_at, **payload_of(self.vault, r)) for r in rows]
        return sorted(out, key=lambda v: v.name.casefold())

    def get(self, vendor_id: str) -> VendorRecord:
        with self.vault.db.read() as s:
            row = get_row(s, Vendor, vendor_id, "vendor")
        return VendorRecord(id=row.id, created_at=row.created_at, **payload_of(self.vault, row))

    def edit(self, vendor_id: str, **changes: Any) -> VendorRecord:
        with self.vault.db.write() as s:
            row = get_row(s, Vendor, vendor_id, "vendor")
            current = payload_of(self.vault, row)
            current.update({k: v for k, v in changes.items() if v is not None})
            payload = clean_vendor(current.pop("name"), **current)
            update(self.vault, row, payload)
            _sync_mail(self.vault, s, row.id)
        return VendorRecord(id=row.id, created_at=row.created_at, **payload)

    def delete(self, vendor_id: str) -> None:
        with self.vault.db.write() as s:
            row = get_row(s, Vendor, vendor_id, "vendor")
            from openvrm.storage.models import Contract, RightsRequest

            holders = (
                (Relationship, "relationships"),
                (Contract, "contracts"),
                (RightsRequest, "GDPR requests"),
            )
            for model, what in holders:
                if s.scalar(select(func.count()).select_from(model).where(model.vendor_id == row.id)):
                    raise Conflict(f"this vendor still has {what}; merge it into another vendor instead")
            s.query(Document).filter(Document.vendor_id == row.id).update({Document.vendor_id: None})
            from openvrm.mail.routing import aliases_changed

            aliases_changed(s)  # its aliases go with it (ON DELETE CASCADE): the gateway's cache too
            s.delete(row)

    # relationships

    def relate(self, vendor_id: str, **kw: Any) -> RelationshipRecord:
        payload = clean_relationship(**kw)
        with self.vault.db.write() as s:
            get_row(s, Vendor, vendor_id, "vendor")
            row = insert(self.vault, s, Relationship, payload, vendor_id=vendor_id)
            s.flush()
            _sync_mail(self.vault, s, vendor_id)
        _auto_alias(self.vault, vendor_id, row.id)
        return RelationshipRecord(id=row.id, vendor_id=vendor_id, created_at=row.created_at, **payload)

    def relationships(self, vendor_id: str | None = None) -> builtins.list[RelationshipRecord]:
        with self.vault.db.read() as s:
            q = select(Relationship).order_by(Relationship.id)
            if vendor_id is not None:
                q = q.where(Relationship.vendor_id == vendor_id)
            rows = list(s.scalars(q))
        return [
            RelationshipRecord(
                id=r.id, vendor_id=r.vendor_id, created_at=r.created_at, **payload_of(self.vault, r)
            )
            for r in rows
        ]

    def relationship(self, relationship_id: str) -> RelationshipRecord:
        with self.vault.db.read() as s:
            r = get_row(s, Relationship, relationship_id, "relationship")
        return RelationshipRecord(
            id=r.id, vendor_id=r.vendor_id, created_at=r.created_at, **payload_of(self.vault, r)
        )

    def edit_relationship(self, relationship_id: str, **changes: Any) -> RelationshipRecord:
        with self.vault.db.write() as s:
            row = get_row(s, Relationship, relationship_id, "relationship")
            current = payload_of(self.vault, row)
            current.update({k: v for k, v in changes.items() if v is not None})
            payload = clean_relationship(**current)
            update(self.vault, row, payload)
            if "stance" in changes and changes["stance"] is not None:
                from openvrm.agent.service import sync_vendor_stance

                sync_vendor_stance(s, row.vendor_id, payload["stance"])
                s.flush()
                _sync_mail(self.vault, s, row.vendor_id)
        return RelationshipRecord(id=row.id, vendor_id=row.vendor_id, created_at=row.created_at, **payload)

    # directory, search, matching, merging

    def add_from_directory(self, slug: str) -> VendorRecord:
        """Add a vendor from the bundled directory (or return the one already added from it)."""
        from openvrm.directory import directory

        entry = directory().get(slug)
        if entry is None:
            raise NotFound(f"no directory entry {slug!r}; find one with `vrm vendors search`")
        for v in self.list():
            if v.directory_slug == slug:
                return v
        countries = [c for c in entry.countries if c != "all"]
        return self.add(
            entry.name,
            domains=list(entry.domains[:20]),
            country=countries[0] if len(countries) == 1 else None,
            categories=list(entry.categories),
            directory_slug=slug,
            website=entry.web,
        )

    def search(self, query: str) -> builtins.list[VendorRecord]:
        """My vendors whose name, domains or VAT ids match ``query`` (case and accent blind)."""
        from openvrm.directory.catalog import normalise

        q = normalise(query)
        if not q:
            return self.list()
        out = []
        for v in self.list():
            hay = normalise(" ".join([v.name, *v.domains, *v.vat_ids, *v.categories]))
            if all(word in hay for word in q.split()):
                out.append(v)
        return out

    def match(
        self,
        *,
        vat_id: str | None = None,
        domain: str | None = None,
        name: str | None = None,
        vendors: builtins.list[VendorRecord] | None = None,
    ) -> VendorRecord | None:
        """The vendor an incoming bill belongs to: by VAT id, then domain, then (exact, normalised) name."""
        from openvrm.directory.catalog import domain_of, normalise

        candidates = vendors if vendors is not None else self.list()
        if vat_id:
            key = re.sub(r"[^A-Z0-9]", "", vat_id.upper())
            for v in candidates:
                if key in v.vat_ids:
                    return v
        if domain:
            d = domain_of(domain)
            if d:
                for v in candidates:
                    if any(d == vd or d.endswith("." + vd) for vd in v.domains):
                        return v
        if name:
            n = _strip_legal(normalise(name))
            for v in candidates:
                if n and _strip_legal(normalise(v.name)) == n:
                    return v
        return None

    def merge(self, keep_id: str, other_id: str) -> VendorRecord:
        """Fold ``other`` into ``keep``: everything that pointed at ``other`` now points at ``keep``."""
        from openvrm.storage.models import Contract, Payment, RightsRequest

        if keep_id == other_id:
            raise InvalidValue("a vendor cannot be merged with itself")
        with self.vault.db.write() as s:
            keep = get_row(s, Vendor, keep_id, "vendor")
            other = get_row(s, Vendor, other_id, "vendor")
            a, b = payload_of(self.vault, keep), payload_of(self.vault, other)
            merged = dict(a)
            for key in ("domains", "categories", "vat_ids"):
                merged[key] = list(dict.fromkeys([*a.get(key, []), *b.get(key, [])]))
            for key in ("country", "directory_slug", "website"):
                merged[key] = a.get(key) or b.get(key)
            merged["notes"] = "\n\n".join(n for n in (a.get("notes"), b.get("notes")) if n)
            update(self.vault, keep, merged)
            from openvrm.mail.routing import aliases_changed
            from openvrm.storage.models import MailAlias, MailMessage

            aliases_changed(s)
            for model in (Relationship, Document, Contract, Payment, RightsRequest, MailAlias, MailMessage):
                s.query(model).filter(model.vendor_id == other.id).update({model.vendor_id: keep.id})
            s.flush()
            s.delete(other)
            s.flush()
            _sync_mail(self.vault, s, keep.id)
        return self.get(keep_id)


def _sync_mail(vault: UnlockedVault, s: Session, vendor_id: str) -> None:
    from openvrm.mail.service import sync_vendor_mail

    sync_vendor_mail(vault, s, vendor_id)


def _auto_alias(vault: UnlockedVault, vendor_id: str, relationship_id: str) -> None:
    from openvrm.mail.service import MailService

    MailService(vault).ensure_alias(vendor_id, relationship_id)


_LEGAL = re.compile(r"\b(sa|sas|sasu|sarl|gmbh|ag|kg|ltd|limited|inc|llc|plc|se|bv|nv|ab|spa|srl|co)\b")


def _strip_legal(name: str) -> str:
    return " ".join(_LEGAL.sub(" ", name).split())
