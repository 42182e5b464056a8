"""What the gateway needs to route mail, readable with the mail key alone.

Settings (the gateway's domains, the person's real address, the downstream server) and aliases are rows
sealed by the mail key; an address is found by its keyed hash. The person's side (:mod:`.service`) writes
them with the vault unlocked; the gateway reads them, and adds reverse aliases as vendors write.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openvrm.errors import InvalidValue, NotFound
from openvrm.mail.keys import MailKeys, normalise_address
from openvrm.storage.db import Database, after_commit
from openvrm.storage.models import MailAlias, MailReverseAlias, MailState, new_id, utcnow

Mode = Literal["forward_all", "transactional_only", "mute_promotions"]
MODES: tuple[Mode, ...] = ("forward_all", "transactional_only", "mute_promotions")
Deliver = Literal["forward", "vault"]
DELIVERIES: tuple[Deliver, ...] = ("forward", "vault")
TlsMode = Literal["starttls", "tls", "none"]
CONFIG_ID = "config"
REVERSE_PREFIX = "re."
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 20
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


# -- in-process notice of alias changes --------------------------------------------------------------------
# The gateway caches the aliases it routes to for a few seconds. Every change this process makes to an alias
# (state, vendor stance, rules, deletion, and with it its reverse aliases) bumps a counter per database once
# it has committed, and the gateway drops its cache when the counter moved: such a change takes effect at
# the next RCPT. Changes made by another process (a CLI next to `vrm mail serve`) take effect when a cached
# entry expires (the gateway's ``alias_ttl``).

_generations: dict[Any, int] = {}
_generations_lock = threading.Lock()


def alias_generation(db: Database) -> int:
    """How many committed alias changes this process has made on ``db``'s database so far."""
    return _generations.get(db.engine.url, 0)


def aliases_changed(s: Session) -> None:
    """Say that the write transaction of ``s`` changes aliases: caches are dropped once it commits."""
    url = s.get_bind().engine.url

    def bump() -> None:
        with _generations_lock:
            _generations[url] = _generations.get(url, 0) + 1

    after_commit(s, bump)


def clean_domain(value: str) -> str:
    try:
        d = value.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        d = ""
    if not _DOMAIN.match(d):
        raise InvalidValue(f"not a mail domain: {value[:80]!r} (write it like mail.example.org)")
    return d


def clean_mailbox(value: str, what: str) -> str:
    try:
        return normalise_address(str(validate_email(value, check_deliverability=False).normalized))
    except EmailNotValidError as exc:
        raise InvalidValue(f"{what} is not a valid e-mail address: {exc}") from None


@dataclass(frozen=True)
class Downstream:
    """The server the gateway hands mail to: the person's provider, or a local MTA."""

    host: str
    port: int
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not reveal:
            d["password"] = "***" if self.password else None
        return d


@dataclass(frozen=True)
class GatewayConfig:
    domains: tuple[str, ...]
    forward_to: str
    deliver: Deliver = "forward"
    downstream: Downstream | None = None
    max_message_bytes: int = DEFAULT_MAX_BYTES
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    # Give each vendor an alias when a relationship with it is made (a connection, an accepted offer).
    auto_alias: bool = False

    @property
    def hostname(self) -> str:
        return self.domains[0]

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        return {
            "domains": list(self.domains),
            "forward_to": self.forward_to,
            "deliver": self.deliver,
            "downstream": self.downstream.to_json(reveal=reveal) if self.downstream else None,
            "max_message_bytes": self.max_message_bytes,
            "max_recipients": self.max_recipients,
            "auto_alias": self.auto_alias,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GatewayConfig:
        ds = d.get("downstream")
        return cls(
            domains=tuple(d["domains"]),
            forward_to=d["forward_to"],
            deliver=d.get("deliver", "forward"),
            downstream=Downstream(**ds) if ds else None,
            max_message_bytes=int(d.get("max_message_bytes", DEFAULT_MAX_BYTES)),
            max_recipients=int(d.get("max_recipients", DEFAULT_MAX_RECIPIENTS)),
            auto_alias=bool(d.get("auto_alias", False)),
        )


def clean_config(
    *,
    domains: list[str],
    forward_to: str,
    deliver: str = "forward",
    downstream: Downstream | None = None,
    max_message_bytes: int = DEFAULT_MAX_BYTES,
    max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    auto_alias: bool = False,
) -> GatewayConfig:
    if not domains:
        raise InvalidValue("the gateway needs at least one domain (--domain mail.example.org)")
    ds = tuple(dict.fromkeys(clean_domain(d) for d in domains))
    real = clean_mailbox(forward_to, "the forwarding address")
    if real.rpartition("@")[2] in ds:
        raise InvalidValue("the forwarding address must be your real mailbox, not one on the alias domains")
    if deliver not in DELIVERIES:
        raise InvalidValue(f"delivery is one of {', '.join(DELIVERIES)}, not {deliver!r}")
    if not 1024 <= max_message_bytes <= 50 * 1024 * 1024:
        raise InvalidValue("the message size limit is between 1 KiB and 50 MiB")
    if not 1 <= max_recipients <= 100:
        raise InvalidValue("the recipient limit is between 1 and 100")
    if downstream is not None:
        if downstream.tls not in ("starttls", "tls", "none"):
            raise InvalidValue(f"the TLS mode is starttls, tls or none, not {downstream.tls!r}")
        if not 0 < downstream.port < 65536:
            raise InvalidValue(f"the port is a number from 1 to 65535, not {downstream.port}")
    return GatewayConfig(
        ds,
        real,
        deliver,
        downstream,
        max_message_bytes,
        max_recipients,
        auto_alias,
    )


@dataclass(frozen=True)
class Alias:
    id: str
    address: str
    vendor_id: str | None
    vendor_name: str
    state: str  # active | disabled
    created_at: datetime
    vendor_domains: tuple[str, ...] = ()
    blocked: bool = False
    mode: Mode = "forward_all"
    deliver: Deliver = "forward"
    style: str = "vendor"
    note: str | None = None
    learned_domains: tuple[str, ...] = field(default=())
    # The relationship the alias was made for (the forwarded copy names it); None: the vendor's in general.
    relationship_id: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "vendor_name": self.vendor_name,
            "vendor_domains": list(self.vendor_domains),
            "learned_domains": list(self.learned_domains),
            "blocked": self.blocked,
            "mode": self.mode,
            "deliver": self.deliver,
            "style": self.style,
            "note": self.note,
            "relationship_id": self.relationship_id,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "vendor_id": self.vendor_id,
            "vendor_name": self.vendor_name,
            "relationship_id": self.relationship_id,
            "state": self.state,
            "blocked": self.blocked,
            "mode": self.mode,
            "deliver": self.deliver,
            "style": self.style,
            "note": self.note,
            "vendor_domains": list(self.vendor_domains),
            "learned_domains": list(self.learned_domains),
            "created_at": self.created_at.isoformat(),
        }

    @property
    def accepts_mail(self) -> bool:
        return self.state == "active" and not self.blocked


@dataclass(frozen=True)
class ReverseAlias:
    id: str
    address: str
    alias_id: str
    contact: str


def alias_of_row(row: MailAlias, p: dict[str, Any]) -> Alias:
    """An alias from its row and opened payload, with the defaults of payloads written before a field."""
    return Alias(
        id=row.id,
        address=p["address"],
        vendor_id=row.vendor_id,
        vendor_name=p.get("vendor_name", ""),
        state=row.state,
        created_at=row.created_at,
        vendor_domains=tuple(p.get("vendor_domains", ())),
        learned_domains=tuple(p.get("learned_domains", ())),
        blocked=bool(p.get("blocked")),
        mode=p.get("mode", "forward_all"),
        deliver=p.get("deliver", "forward"),
        style=p.get("style", "vendor"),
        note=p.get("note"),
        relationship_id=p.get("relationship_id"),
    )


def _alias(keys: MailKeys, row: MailAlias) -> Alias:
    return alias_of_row(row, keys.open(MailAlias.__tablename__, row.id, row.sealed))


class Routes:
    """Reads and writes the mail tables with a mail key; the vault may be locked."""

    def __init__(self, db: Database, keys: MailKeys) -> None:
        self.db = db
        self.keys = keys

    # -- settings --------------------------------------------------------------------------------------

    def config(self) -> GatewayConfig | None:
        with self.db.read() as s:
            row = s.get(MailState, CONFIG_ID)
            if row is None:
                return None
            return GatewayConfig.from_json(self.keys.open(MailState.__tablename__, row.id, row.sealed))

    def require_config(self) -> GatewayConfig:
        cfg = self.config()
        if cfg is None:
            raise NotFound(
                "the mail gateway is not set up: run `vrm mail gateway setup --domain D --forward-to ADDRESS`"
            )
        return cfg

    def save_config(self, cfg: GatewayConfig) -> GatewayConfig:
        sealed = self.keys.seal(MailState.__tablename__, CONFIG_ID, cfg.to_json(reveal=True))
        with self.db.write() as s:
            row = s.get(MailState, CONFIG_ID)
            if row is None:
                s.add(MailState(id=CONFIG_ID, updated_at=utcnow(), sealed=sealed))
            else:
                row.sealed, row.updated_at = sealed, utcnow()
        return cfg

    # -- aliases ---------------------------------------------------------------------------------------

    def aliases(self, *, vendor_id: str | None = None) -> list[Alias]:
        q = select(MailAlias).order_by(MailAlias.id)
        if vendor_id is not None:
            q = q.where(MailAlias.vendor_id == vendor_id)
        with self.db.read() as s:
            return [_alias(self.keys, r) for r in s.scalars(q)]

    def alias(self, alias_id: str) -> Alias:
        with self.db.read() as s:
            return _alias(self.keys, self._alias_row(s, alias_id))

    @staticmethod
    def _alias_row(s: Session, alias_id: str) -> MailAlias:
        row = s.get(MailAlias, alias_id) if alias_id else None
        if row is None:
            raise NotFound(f"no alias with id {alias_id[:40]!r}")
        return row

    def add_alias(self, s: Session, alias: Alias) -> Alias:
        lookup = self.keys.lookup(alias.address)
        if s.scalar(select(MailAlias.id).where(MailAlias.lookup == lookup)) is not None:
            raise InvalidValue(f"{alias.address} is taken")
        aliases_changed(s)
        s.add(
            MailAlias(
                id=alias.id,
                lookup=lookup,
                vendor_id=alias.vendor_id,
                state=alias.state,
                created_at=alias.created_at,
                updated_at=utcnow(),
                sealed=self.keys.seal(MailAlias.__tablename__, alias.id, alias.payload()),
            )
        )
        return alias

    def write_alias(self, s: Session, alias: Alias) -> Alias:
        row = self._alias_row(s, alias.id)
        aliases_changed(s)
        row.state = alias.state
        row.vendor_id = alias.vendor_id
        row.sealed = self.keys.seal(MailAlias.__tablename__, alias.id, alias.payload())
        row.updated_at = utcnow()
        return alias

    def change_alias(self, alias_id: str, **changes: Any) -> Alias:
        with self.db.write() as s:
            return self.write_alias(s, replace(_alias(self.keys, self._alias_row(s, alias_id)), **changes))

    def learn_domain(self, alias_id: str, domain: str) -> None:
        """Add ``domain`` to the alias's learned domains, read afresh in the write transaction (two
        messages learning at once both count, whatever copy of the alias each was routed with)."""
        with self.db.write() as s:
            alias = _alias(self.keys, self._alias_row(s, alias_id))
            if domain not in alias.learned_domains:
                self.write_alias(s, replace(alias, learned_domains=(*alias.learned_domains, domain)))

    def delete_alias(self, alias_id: str) -> None:
        with self.db.write() as s:
            row = self._alias_row(s, alias_id)
            aliases_changed(s)
            s.execute(delete(MailReverseAlias).where(MailReverseAlias.alias_id == alias_id))
            s.execute(delete(MailAlias).where(MailAlias.id == row.id))

    def vendor_aliases(self, s: Session, vendor_id: str) -> list[Alias]:
        return [
            _alias(self.keys, r) for r in s.scalars(select(MailAlias).where(MailAlias.vendor_id == vendor_id))
        ]

    # -- finding an address ----------------------------------------------------------------------------

    def find(self, address: str) -> Alias | tuple[ReverseAlias, Alias] | None:
        """The alias, or the reverse alias and its alias, that ``address`` names; None if neither."""
        lookup = self.keys.lookup(address)
        with self.db.read() as s:
            row = s.scalar(select(MailAlias).where(MailAlias.lookup == lookup))
            if row is not None:
                return _alias(self.keys, row)
            rev = s.scalar(select(MailReverseAlias).where(MailReverseAlias.lookup == lookup))
            if rev is None:
                return None
            p = self.keys.open(MailReverseAlias.__tablename__, rev.id, rev.sealed)
            alias_row = s.get(MailAlias, rev.alias_id)
            if alias_row is None:
                return None
            return ReverseAlias(rev.id, p["address"], rev.alias_id, p["contact"]), _alias(
                self.keys, alias_row
            )

    def reverse_for(self, alias: Alias, contact: str) -> ReverseAlias:
        """The reverse alias through which the person writes to ``contact`` as ``alias`` (made once).

        Found in a read transaction, the usual case (the contact has written before); the write
        transaction, and the database's write lock, only the first time.
        """
        contact = normalise_address(contact)
        pair = self.keys.pair(alias.id, contact)
        with self.db.read() as s:
            found = self._reverse_by_pair(s, alias, pair)
        if found is not None:
            return found
        with self.db.write() as s:
            found = self._reverse_by_pair(s, alias, pair)
            if found is not None:
                return found
            domain = alias.address.rpartition("@")[2]
            address = f"{REVERSE_PREFIX}{secrets.token_hex(10)}@{domain}"
            rid = new_id()
            s.add(
                MailReverseAlias(
                    id=rid,
                    lookup=self.keys.lookup(address),
                    pair=pair,
                    alias_id=alias.id,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                    sealed=self.keys.seal(
                        MailReverseAlias.__tablename__, rid, {"address": address, "contact": contact}
                    ),
                )
            )
            return ReverseAlias(rid, address, alias.id, contact)

    def _reverse_by_pair(self, s: Session, alias: Alias, pair: str) -> ReverseAlias | None:
        row = s.scalar(select(MailReverseAlias).where(MailReverseAlias.pair == pair))
        if row is None:
            return None
        p = self.keys.open(MailReverseAlias.__tablename__, row.id, row.sealed)
        return ReverseAlias(row.id, p["address"], alias.id, p["contact"])

    def reverse_aliases(self, alias_id: str) -> list[ReverseAlias]:
        with self.db.read() as s:
            rows = list(s.scalars(select(MailReverseAlias).where(MailReverseAlias.alias_id == alias_id)))
            out = []
            for r in rows:
                p = self.keys.open(MailReverseAlias.__tablename__, r.id, r.sealed)
                out.append(ReverseAlias(r.id, p["address"], alias_id, p["contact"]))
            return out
