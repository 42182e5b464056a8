"""The bundled roster of personal terms a person proffers to a vendor.

Each term has an id, a semver version, a title, a one-page plain-language text, a legal text with numbered
clauses, the SHA-256 of that legal text (recorded in agreements), and a machine form in W3C DPV terms. The
roster ships as ``roster.json`` next to this module; the loader recomputes every legal hash and refuses a
roster whose recorded hash does not match its text.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from openvrm.errors import IntegrityError, InvalidValue, NotFound

__all__ = ["DPV", "Machine", "Retention", "Term", "legal_hash", "parse_roster", "roster", "term"]

DPV = "https://w3id.org/dpv#"
"""The W3C Data Privacy Vocabulary namespace; machine forms write its IRIs in full."""

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IRI = re.compile(r"^(https://|urn:)\S+$")
_TERM_FIELDS = ("id", "version", "title", "plain_text", "legal_text", "legal_sha256", "machine")
_MACHINE_LISTS = (
    "purposes",
    "prohibited_purposes",
    "prohibited_processing",
    "recipients",
    "prohibited_recipients",
    "obligations",
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a vendor may keep data under a term (``concept`` is ``dpv:StorageDuration``)."""

    concept: str
    until: str
    """The event the period counts from: ``end-of-relationship`` or ``intent-expiry``."""
    grace: str
    """An ISO 8601 duration after ``until`` within which the data must be gone."""
    legal_hold: bool
    """Whether data a law obliges the vendor to keep may outlive ``grace`` for that purpose only."""

    def to_json(self) -> dict[str, Any]:
        return {
            "concept": self.concept,
            "until": self.until,
            "grace": self.grace,
            "legal_hold": self.legal_hold,
        }


@dataclass(frozen=True, slots=True)
class Machine:
    """The machine form of a term: every entry is a full IRI (DPV, or ``urn:openvrm:`` where DPV has none)."""

    purposes: tuple[str, ...]
    prohibited_purposes: tuple[str, ...]
    prohibited_processing: tuple[str, ...]
    recipients: tuple[str, ...]
    prohibited_recipients: tuple[str, ...]
    retention: Retention | None
    obligations: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: list(getattr(self, name)) for name in _MACHINE_LISTS}
        out["retention"] = self.retention.to_json() if self.retention else None
        return out


@dataclass(frozen=True, slots=True)
class Term:
    """One personal term of the roster, at one version."""

    id: str
    version: str
    title: str
    plain_text: str
    legal_text: str
    legal_sha256: str
    machine: Machine

    @property
    def ref(self) -> str:
        """``id@version``: how agreements and proffers name a term."""
        return f"{self.id}@{self.version}"

    def version_key(self) -> tuple[int, int, int]:
        major, minor, patch = self.version.split(".")
        return int(major), int(minor), int(patch)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "plain_text": self.plain_text,
            "legal_text": self.legal_text,
            "legal_sha256": self.legal_sha256,
            "machine": self.machine.to_json(),
        }


def legal_hash(legal_text: str) -> str:
    """The hex SHA-256 of the UTF-8 legal text, as recorded in ``legal_sha256`` and in agreements."""
    return hashlib.sha256(legal_text.encode("utf-8")).hexdigest()


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{where}: '{key}' must be a non-empty string")
    return value


def _iris(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and _IRI.match(v) for v in value):
        raise InvalidValue(f"{where}: '{key}' must be a list of full IRIs")
    return tuple(value)


def _machine(raw: object, where: str) -> Machine:
    if not isinstance(raw, dict):
        raise InvalidValue(f"{where}: 'machine' must be an object")
    lists = {name: _iris(raw, name, where) for name in _MACHINE_LISTS}
    ret = raw.get("retention")
    retention: Retention | None = None
    if ret is not None:
        if not isinstance(ret, dict) or not isinstance(ret.get("legal_hold"), bool):
            raise InvalidValue(f"{where}: 'retention' must be an object with a boolean 'legal_hold'")
        retention = Retention(
            concept=_text(ret, "concept", where),
            until=_text(ret, "until", where),
            grace=_text(ret, "grace", where),
            legal_hold=ret["legal_hold"],
        )
    return Machine(retention=retention, **lists)


def _term(raw: object, index: int) -> Term:
    where = f"roster term #{index}"
    if not isinstance(raw, dict):
        raise InvalidValue(f"{where}: must be an object")
    missing = [f for f in _TERM_FIELDS if f not in raw]
    if missing:
        raise InvalidValue(f"{where}: missing {', '.join(missing)}")
    tid = _text(raw, "id", where)
    where = f"roster term {tid!r}"
    version = _text(raw, "version", where)
    if not _ID.match(tid):
        raise InvalidValue(f"{where}: id must be lowercase words joined by hyphens")
    if not _SEMVER.match(version):
        raise InvalidValue(f"{where}: version {version!r} is not MAJOR.MINOR.PATCH")
    legal_text = _text(raw, "legal_text", where)
    recorded = _text(raw, "legal_sha256", where)
    if not _SHA256.match(recorded):
        raise InvalidValue(f"{where}: legal_sha256 must be 64 lowercase hex digits")
    if legal_hash(legal_text) != recorded:
        raise IntegrityError(f"{where}: the legal text does not match its recorded SHA-256")
    return Term(
        id=tid,
        version=version,
        title=_text(raw, "title", where),
        plain_text=_text(raw, "plain_text", where),
        legal_text=legal_text,
        legal_sha256=recorded,
        machine=_machine(raw["machine"], where),
    )


def parse_roster(data: str | bytes) -> list[Term]:
    """Parse and check a roster document; raise IntegrityError if any legal hash does not match."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidValue(f"the terms roster is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("terms"), list):
        raise InvalidValue("the terms roster must be an object with a 'terms' list")
    terms = [_term(raw, i) for i, raw in enumerate(doc["terms"])]
    refs = [t.ref for t in terms]
    if len(set(refs)) != len(refs):
        raise InvalidValue("the terms roster lists the same id and version twice")
    return terms


@functools.cache
def _bundled() -> tuple[Term, ...]:
    data = resources.files(__name__).joinpath("roster.json").read_bytes()
    return tuple(parse_roster(data))


def roster() -> list[Term]:
    """Every term of the bundled roster, every version, in roster order."""
    return list(_bundled())


def term(term_id: str, version: str | None = None) -> Term:
    """One term by id: the given version, or the highest one. Raises NotFound if there is none."""
    found = [t for t in _bundled() if t.id == term_id]
    if not found:
        raise NotFound(f"no term {term_id!r} in the roster")
    if version is None:
        return max(found, key=Term.version_key)
    for t in found:
        if t.version == version:
            return t
    raise NotFound(f"term {term_id!r} has no version {version!r}")
