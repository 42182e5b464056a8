"""Helpers for the exchange tests: fill a vault, and look at a vault as raw rows or as plain records."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import select

from openvrm.agent.service import DEFAULT_PURPOSE, DEFAULT_TERMS, AgentService, ConnectResult
from openvrm.config import Settings
from openvrm.documents.service import DocumentService
from openvrm.exchange.format import MAIL_MESSAGE_DEFAULTS
from openvrm.intents import ranking
from openvrm.intents.service import IntentService, price_max
from openvrm.ledger.contracts import ContractService
from openvrm.mail.gateway import INBOX_KIND
from openvrm.mail.keys import MailKeys
from openvrm.mail.service import MailService
from openvrm.moves.service import MoveService
from openvrm.outbox.settings import clean_mail_settings, save_mail_settings
from openvrm.profile.service import ProfileService
from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_intent, make_offer, seal_offer
from openvrm.protocol.terms import term
from openvrm.records import insert
from openvrm.rights.service import RightsService
from openvrm.sharing.service import SharingService
from openvrm.storage.models import (
    Base,
    Connection,
    ConnectionEvent,
    Contract,
    Document,
    Grant,
    InboxItem,
    Intent,
    IntentOffer,
    MailAlias,
    MailMessage,
    MailReverseAlias,
    MailState,
    Move,
    Payment,
    ProfileChange,
    ProfileShare,
    Relationship,
    RightsRequest,
    SealedSetting,
    Vendor,
)
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE, fast_kdf, new_pg_schema


def new_vault(home: Path) -> UnlockedVault:
    """A new SQLite vault at ``home``, unlocked (callers close ``.vault``)."""
    return Vault.open(Settings.resolve(home), create=True).create(PASSPHRASE, kdf=fast_kdf())


class PopulatedCopies:
    """A vault filled by :func:`populate`, built once per backend, then copied for each test that wants one.

    Filling a vault through the services takes seconds, copying one a fraction of that. Each copy is a vault
    of its own (its own home folder and, on PostgreSQL, its own schema), made by the real migrations on
    PostgreSQL and a file copy on SQLite, so a test may change its copy freely.
    """

    def __init__(self, base: Path, stack: ExitStack, tag: str = "") -> None:
        self._base, self._stack, self._tag = base, stack, tag
        self._sources: dict[str, tuple[Settings, str]] = {}

    def _source(self, backend: str) -> tuple[Settings, str]:
        """The populated (and closed) vault on ``backend``, and on PostgreSQL the name of its schema."""
        if backend not in self._sources:
            url = None if backend == "sqlite" else self._stack.enter_context(new_pg_schema())
            settings = Settings.resolve(self._base / backend, database_url=url)
            with Vault.open(settings, create=True) as vault:
                populate(vault.create(PASSPHRASE, kdf=fast_kdf()), tag=self._tag)
                schema = ""
                if not settings.is_sqlite:
                    with vault.db.engine.connect() as conn:
                        schema = conn.execute(sa.text("select current_schema()")).scalar_one()
                        stored = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
                    # Only the model's tables are copied below (as `dump` sees them): there must be no other.
                    assert stored == set(Base.metadata.tables), stored ^ set(Base.metadata.tables)
            self._sources[backend] = (settings, schema)
        return self._sources[backend]

    def open_copy(self, settings: Settings) -> Vault:
        """Open a copy of the populated vault at ``settings`` (a new home; on PostgreSQL an empty schema)."""
        source, schema = self._source("sqlite" if settings.is_sqlite else "postgresql")
        if source.home.exists():  # on SQLite the database and blob files; on PostgreSQL nothing so far
            shutil.copytree(source.home, settings.home, dirs_exist_ok=True)  # the source is closed
        if settings.is_sqlite:
            return Vault.open(settings)
        vault = Vault.open(settings, create=True)
        try:
            with vault.db.engine.begin() as conn:
                for table in Base.metadata.sorted_tables:  # parents before children
                    copy = f'INSERT INTO "{table.name}" SELECT * FROM "{schema}"."{table.name}"'  # noqa: S608
                    conn.execute(sa.text(copy))
        except BaseException:
            vault.close()
            raise
        return vault


def populate(vault: UnlockedVault, tag: str = "") -> dict[str, str]:
    """A small vault with one of everything; returns some of the ids."""
    profile = ProfileService(vault)
    profile.set("name", f"Ada Lovelace{tag}")
    profile.set("email", f"ada{tag}@example.org")
    profile.set("phone", "+33 1 23 45 67 89")
    profile.set(
        "address.home",
        {"street": "1 rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "fr"},
    )
    profile.set("free.note", "likes tea")
    profile.unset("free.note")
    vendors = VendorService(vault)
    shop = vendors.add(
        f"Example Shop{tag}",
        domains=["www.example.com"],
        country="fr",
        categories=["Retail"],
        vat_ids=["fr 40 303 265 045"],
    )
    bank = vendors.add(f"Bank{tag}", website="https://bank.example", notes="main account")
    rel = vendors.relate(
        shop.id, customer_number="C-1", since="2020-05-01", tags=["online"], notes="ok", folder="home/shops"
    )
    vendors.relate(bank.id, status="ended", stance="trusted")
    ledger = ContractService(vault)
    plan = ledger.add(
        shop.id,
        plan="Premium",
        price="9.99",
        start="2024-01-15",
        category="Streaming",
        minimum_term_months=12,
        notice_value=1,
        notice_unit="months",
        notes="family plan",
    )
    ledger.set_price(plan.id, "11,49", effective="2025-01-15")
    paid = ledger.pay(plan.id, due_date="2024-01-15", today=date(2024, 2, 1), note="card")
    docs = DocumentService(vault)
    bill = docs.add(
        f"%PDF-1.4 bill {tag}".encode(), filename="bill.pdf", kind="invoice", relationship_id=rel.id
    )
    docs.add(b"\x00\x01binary" + tag.encode(), filename="scan.png", title="A scan", vendor_id=bank.id)
    docs.add(f"%PDF-1.4 bill {tag}".encode(), filename="copy.pdf", allow_duplicate=True)
    invoice = docs.add(
        f"<Invoice>{tag}</Invoice>".encode(),
        filename="invoice-42.xml",
        kind="invoice",
        title="Invoice 42 from Example Shop",
        relationship_id=rel.id,
        extra={
            "format": "ubl",
            "parse_status": "partial",
            "reason": "the due date is missing",
            "fields": {
                "document_type": "invoice",
                "seller": "Example Shop SAS",
                "seller_vat_id": "FR40303265045",
                "invoice_number": "42",
                "issue_date": "2024-01-15",
                "currency": "EUR",
                "net_total": "8.33",
                "tax_total": "1.66",
                "gross_total": "9.99",
                "line_items": [
                    {
                        "description": "Premium, January",
                        "quantity": "1",
                        "unit_price": "8.325000",
                        "net_amount": "8.33",
                        "tax_rate": "20.00",
                        "unit": None,
                    }
                ],
                "email_date": "2024-01-15T10:00:00+01:00",
            },
            "contract_id": plan.id,
            "warranty_until": "2026-01-15",
            "notes": "paid by card",
        },
        text=f"Invoice 42\nExample Shop SAS\nTotal 9,99 €{tag}",
    ).document
    with vault.db.write() as s:  # a payment of a bill, linked to its document (the service has no call)
        insert(
            vault,
            s,
            Payment,
            {"due_date": None, "paid_on": "2024-01-20", "amount": "9.99", "currency": "EUR", "note": ""},
            contract_id=plan.id,
            vendor_id=shop.id,
            document_id=invoice.id,
        )
    sharing = SharingService(vault)
    share = sharing.share(rel.id, "email", purpose="receipts", until="2030-01-01")
    revoked = sharing.share(rel.id, "phone", purpose="delivery")
    sharing.revoke(revoked.id)
    vault.vault.deposit({"type": "receipt", "from": "shop", "total": "12.50", "tag": tag})
    # The person's mail server, a GDPR request sent by e-mail and answered, and a move of the e-mail
    # address (its notice to the shop waits in the outbox, which the archive does not carry).
    save_mail_settings(
        vault,
        clean_mail_settings(
            host="smtp.example.org",
            port=587,
            from_addr=f"ada{tag}@example.org",
            username="ada",
            password=f"smtp secret{tag}",
            from_name="Ada Lovelace",
        ),
    )
    rights = RightsService(vault)
    request = rights.create(shop.id, "access", to="privacy@shop.example", language="fr")
    rights.send(request.id, today=date(2026, 1, 31))
    rights.extend(request.id, note="they need more time")
    answer = rights.answer(request.id, [("my-data.csv", f"order;total\n42;9.99{tag}\n".encode())])
    draft = rights.create(bank.id, "erasure", to="dpo@bank.example")
    rights.close(draft.id, note="changed my mind")
    move = MoveService(vault).start(
        "email", f"ada.new{tag}@example.org", contacts={shop.id: "dpo@shop.example"}, language="en"
    )
    connection = add_connection(vault, shop.id, name=f"Protocol Shop{tag}")
    mail = add_mail(vault, shop.id, bank.id, tag)
    draft_intent, published_intent, offers = add_intents(vault, tag)
    return {
        **mail,
        "draft_intent": draft_intent,
        "published_intent": published_intent,
        "offers": ",".join(offers),
        "connection": connection,
        "shop": shop.id,
        "bank": bank.id,
        "rel": rel.id,
        "bill": bill.document.id,
        "share": share.id,
        "contract": plan.id,
        "payment": paid.id,
        "invoice": invoice.id,
        "request": request.id,
        "draft": draft.id,
        "answer": answer.request.documents[0],
        "move": move.id,
    }


def view(vault: UnlockedVault) -> dict[str, list[Any]]:
    """Every record as plain data: ids, plain columns, timestamps, payloads and file bytes."""
    out: dict[str, list[Any]] = {}
    with vault.db.read() as s:
        out["profile_changes"] = [
            (r.id, r.created_at, vault.open("profile_changes", r.id, r.sealed))
            for r in s.scalars(select(ProfileChange).order_by(ProfileChange.id))
        ]
        out["vendors"] = [
            (r.id, r.created_at, r.updated_at, vault.open("vendors", r.id, r.sealed))
            for r in s.scalars(select(Vendor).order_by(Vendor.id))
        ]
        out["relationships"] = [
            (r.id, r.vendor_id, r.created_at, r.updated_at, vault.open("relationships", r.id, r.sealed))
            for r in s.scalars(select(Relationship).order_by(Relationship.id))
        ]
        out["contracts"] = [
            (
                r.id,
                r.vendor_id,
                r.relationship_id,
                r.created_at,
                r.updated_at,
                vault.open("contracts", r.id, r.sealed),
            )
            for r in s.scalars(select(Contract).order_by(Contract.id))
        ]
        out["payments"] = [
            (
                r.id,
                r.contract_id,
                r.vendor_id,
                r.document_id,
                r.created_at,
                r.updated_at,
                vault.open("payments", r.id, r.sealed),
            )
            for r in s.scalars(select(Payment).order_by(Payment.id))
        ]
        docs = list(s.scalars(select(Document).order_by(Document.id)))
        out["shares"] = [
            (
                r.id,
                r.relationship_id,
                r.created_at,
                r.updated_at,
                vault.open("profile_shares", r.id, r.sealed),
            )
            for r in s.scalars(select(ProfileShare).order_by(ProfileShare.id))
        ]
        inbox_ids = [(r.id, r.received_at) for r in s.scalars(select(InboxItem).order_by(InboxItem.id))]
        out["rights_requests"] = [
            (r.id, r.created_at, r.updated_at, vault.open("rights_requests", r.id, r.sealed))
            for r in s.scalars(select(RightsRequest).order_by(RightsRequest.id))
        ]
        out["moves"] = [
            (r.id, r.created_at, r.updated_at, vault.open("moves", r.id, r.sealed))
            for r in s.scalars(select(Move).order_by(Move.id))
        ]
        out["connections"] = [
            (r.id, r.handle, r.vendor_did, r.status, r.vendor_id, r.created_at, r.updated_at)
            + (vault.open("connections", r.id, r.sealed),)
            for r in s.scalars(select(Connection).order_by(Connection.id))
        ]
        entries = [
            (r.id, r.connection_id, r.position, r.event_id, r.author, r.state, r.created_at, r.updated_at)
            + (vault.open("connection_events", r.id, r.sealed),)
            for r in s.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id))
        ]
        out["grants"] = [
            (r.id, r.connection_id, r.until, r.revoked_at, r.vendor_box, r.created_at, r.updated_at)
            + (vault.open("grants", r.id, r.sealed),)
            for r in s.scalars(select(Grant).order_by(Grant.id))
        ]
        out["intents"] = [
            (r.id, r.state, r.expires_at, r.created_at, r.updated_at, vault.open("intents", r.id, r.sealed))
            for r in s.scalars(select(Intent).order_by(Intent.id))
        ]
        out["intent_offers"] = [
            (r.id, r.intent_id, r.offer_id, r.created_at, r.updated_at)
            + (vault.open("intent_offers", r.id, r.sealed),)
            for r in s.scalars(select(IntentOffer).order_by(IntentOffer.id))
        ]
        out["vendor of request"] = [(r.id, r.vendor_id) for r in s.scalars(select(RightsRequest))]
        out["settings"] = [
            (r.id, r.created_at, r.updated_at, vault.open("sealed_settings", r.id, r.sealed))
            for r in s.scalars(select(SealedSetting).order_by(SealedSetting.id))
        ]
    out["documents"] = [
        (
            d.id,
            d.vendor_id,
            d.relationship_id,
            d.created_at,
            d.updated_at,
            vault.open("documents", d.id, d.sealed),
            vault.get_file(d.blob_address),
        )
        for d in docs
    ]
    # A received file's blob address is the vault's own: compare the file's bytes instead.
    out["connection_events"] = []
    for *plain, p in entries:
        attachment = p["note"].get("attachment")
        if attachment is not None:
            blob = vault.get_file(attachment["blob"])
            p = {**p, "note": {**p["note"], "attachment": {**attachment, "blob": blob}}}
        out["connection_events"].append((*plain, p))
    out["texts"] = sorted(DocumentService(vault).texts().items())
    out.update(_mail_view(vault))
    items = {e.id: e.item for e in vault.inbox()}
    out["inbox"] = [(i, at, items[i]) for i, at in inbox_ids]
    return out


def _mail_view(vault: UnlockedVault) -> dict[str, list[Any]]:
    """The mail tables opened with the vault's mail key; lookups and pairs are the vault's own keyed hashes
    (they differ between vaults), and a kept message's blob address is its own too: compare its bytes."""
    keys = MailKeys.from_vault(vault)
    out: dict[str, list[Any]] = {}
    with vault.db.read() as s:
        out["mail_gateway"] = [
            (r.id, r.updated_at, keys.open("mail_state", r.id, r.sealed))
            for r in s.scalars(select(MailState).order_by(MailState.id))
        ]
        out["mail_aliases"] = [
            (
                r.id,
                r.vendor_id,
                r.state,
                r.created_at,
                r.updated_at,
                keys.open("mail_aliases", r.id, r.sealed),
            )
            for r in s.scalars(select(MailAlias).order_by(MailAlias.id))
        ]
        out["mail_reverse_aliases"] = [
            (r.id, r.alias_id, r.created_at, r.updated_at)
            + (keys.open("mail_reverse_aliases", r.id, r.sealed),)
            for r in s.scalars(select(MailReverseAlias).order_by(MailReverseAlias.id))
        ]
        messages = [
            (r.id, r.vendor_id, r.alias_id, r.received_at, r.created_at, r.updated_at)
            + (vault.open("mail_messages", r.id, r.sealed),)
            for r in s.scalars(select(MailMessage).order_by(MailMessage.id))
        ]
    out["mail_messages"] = []
    for *plain, p in messages:
        blob = vault.get_file(p["blob"]) if p.get("blob") else None
        out["mail_messages"].append((*plain, {**MAIL_MESSAGE_DEFAULTS, **p, "blob": blob}))
    return out


def without_outbox(seen: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``view`` as an import gives it back: the outbox is not carried, so nothing names its messages."""
    out = dict(seen)
    requests = []
    for rid, created, updated, p in seen["rights_requests"]:
        p = {**p, "outbox_id": None}
        if p["complaint"] is not None:
            p["complaint"] = {**p["complaint"], "outbox_id": None}
        requests.append((rid, created, updated, p))
    out["rights_requests"] = requests
    out["moves"] = [
        (mid, created, updated, {**p, "notices": [{**n, "outbox_id": None} for n in p["notices"]]})
        for mid, created, updated, p in seen["moves"]
    ]
    return out


def dump(vault: Vault) -> dict[str, Any]:
    """Every row of every table exactly as stored, and every stored blob: the vault's whole state."""
    out: dict[str, Any] = {}
    with vault.db.read() as s:
        for table in Base.metadata.sorted_tables:
            out[table.name] = sorted(tuple(row) for row in s.execute(select(table)))
    out["blob store"] = {a: vault.blobs.get(a) for a in vault.blobs.addresses()}
    return out


def rewrite(
    archive: bytes,
    *,
    manifest: Callable[[dict[str, Any]], None] | None = None,
    files: Callable[[dict[str, bytes]], None] | None = None,
    extra: list[tuple[str, bytes]] | None = None,
) -> bytes:
    """A copy of a plain archive with its manifest and/or files changed (and entries added)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        data = json.loads(zf.read("manifest.json"))
        contents = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    if manifest is not None:
        manifest(data)
    if files is not None:
        files(contents)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in contents.items():
            zf.writestr(name, content)
        for name, content in extra or []:
            zf.writestr(name, content)
        zf.writestr("manifest.json", json.dumps(data))
    return buf.getvalue()


def connect_in_memory(
    vault: UnlockedVault, vendor_id: str | None = None, *, name: str = "Protocol Shop"
) -> tuple[AgentService, KeyPair, ConnectResult]:
    """A connection made through AgentService with a vendor simulated in memory, which signs with a key of
    its own: it accepts the first term proffered, countersigns, acknowledges events (not GDPR requests,
    which stay pending). The agent, the vendor's key pair and what connecting gave."""
    vendor = KeyPair.generate()
    base = f"https://{name.lower().replace(' ', '-')}.example"
    doc = {
        "vrm_versions": [m.VRM_VERSION],
        "name": name,
        "vendor": vendor.did,
        "keys": [{"kid": m.kid_of(vendor.did), "use": "sign"}],
        "endpoints": {"relationship": f"{base}/vrm/relationship", "ledger": f"{base}/vrm/ledger"},
        "terms": [m.term_ref(term(t)) for t in DEFAULT_TERMS],
    }

    def vendor_side(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=doc)
        body = json.loads(request.content)
        if body.get("type") == "proffer":
            chosen = m.roster_term(body["terms"][0])
            return httpx.Response(200, json=m.make_answer(vendor, body, "accept", chosen=chosen))
        if body.get("type") == "agreement":
            return httpx.Response(200, json=m.countersign(vendor, body))
        if body.get("type") == "event" and body["subtype"] != "gdpr-request":
            return httpx.Response(200, json=m.make_ack(vendor, body))
        return httpx.Response(503)  # the GDPR request stays pending in the ledger

    agent = AgentService(
        vault, client_factory=lambda: httpx.Client(transport=httpx.MockTransport(vendor_side))
    )
    connected = agent.connect(base, agent_base_url="https://agent.example", vendor_id=vendor_id)
    assert connected.connection is not None
    return agent, vendor, connected


def add_connection(vault: UnlockedVault, vendor_id: str | None = None, *, name: str = "Protocol Shop") -> str:
    """A protocol connection made through AgentService against a vendor simulated in memory: an agreement,
    grants (one revoked), a delivered and an undelivered event, and vendor events received and decided.

    The profile needs a name, an e-mail address and a phone number to grant. Returns the connection id.
    """
    agent, vendor, connected = connect_in_memory(vault, vendor_id, name=name)
    assert connected.connection is not None
    cid = connected.connection.id
    agent.revoke(agent.grant(cid, ["email", "name"]).id)
    agent.grant(cid, ["phone"], until=date(2031, 1, 1))
    agreement_id = str(connected.connection.agreement_id)
    pdf = b"%PDF-1.4 receipt " + name.encode()
    receipt = m.make_event(
        vendor,
        agreement_id,
        "receipt",
        {
            "receipt_id": "R-1",
            "attachment": {
                "content": base64.b64encode(pdf).decode(),
                "media_type": "application/pdf",
                "sha256": hashlib.sha256(pdf).hexdigest(),
            },
        },
        None,
    )
    agent.receive(cid, receipt)
    asked = m.make_event(
        vendor,
        agreement_id,
        "data-request",
        {"request_id": "Q-1", "fields": ["phone"], "purpose": DEFAULT_PURPOSE},
        receipt["event_id"],
    )
    entry_id = [e for e in agent.ledger(cid) if e.state == "received"][0].id
    agent.receive(cid, asked)
    asked_id = next(e.id for e in agent.ledger(cid) if e.state == "pending-decision")
    agent.answer_data_request(asked_id, approve=False)
    agent.gdpr_request(cid, "access", scope="everything", respond_by=date(2030, 1, 1))
    assert entry_id
    return cid


def add_intents(vault: UnlockedVault, tag: str = "") -> tuple[str, str, list[str]]:
    """A draft intent made by IntentService, and a published intent with two offers, its rows written as
    IntentService.publish and fetch write them (the relay is not reached). Returns the ids."""
    service = IntentService(vault, relay_url="https://relay.example/relay")
    draft = service.create(
        "telecom.mobile",
        f"a phone plan{tag}",
        price=price_max("15", "EUR", "month"),
        features=[{"name": "data_gb", "value": "50", "required": True}],
        where={"country": "fr"},
    )
    key = KeyPair.generate()
    now = m.now_utc()
    signed = make_intent(
        key,
        category="energy.electricity",
        text=f"green power{tag}",
        constraints={"price_max": price_max("80", "EUR", "month")},
        where={"country": "FR"},
        kind="rfp",
        expires_at=now + timedelta(days=14),
        now=now,
    )
    payload: dict[str, Any] = {
        "intent_id": signed["intent_id"],
        "kind": "rfp",
        "category": "energy.electricity",
        "text": f"green power{tag}",
        "constraints": {"price_max": price_max("80", "EUR", "month")},
        "terms": ["intent-only"],
        "expires_in_days": 14,
        "seed": base64.b64encode(key.private_bytes).decode(),
        "author": key.did,
        "muted": False,
        "where": {"country": "FR"},
        "when": {},
        "published": signed,
        "relay_url": "https://relay.example/relay",
        "matched": 3,
        "exclude": [],
        "cursor": "page-2",
    }
    offer_ids: list[str] = []
    with vault.db.write() as s:
        row = insert(
            vault, s, Intent, payload, state="published", expires_at=m.parse_time(signed["expires_at"])
        )
        for n, price in enumerate(("70", "95")):
            vendor = KeyPair.generate()
            offer = make_offer(
                vendor,
                signed,
                vendor_name=f"Power {n}{tag}",
                discovery=f"https://power-{n}.example",
                price={"amount": price, "currency": "EUR", "per": "month"},
                includes=["green"],
                valid_until=now + timedelta(days=30),
                now=now,
            )
            offer_payload = {
                "envelope": seal_offer(offer, signed),
                "offer": offer,
                "state": "open",
                "reason": None,
                "score": ranking.score_offer(signed, offer).to_json(),
            }
            orow = insert(vault, s, IntentOffer, offer_payload, intent_id=row.id, offer_id=offer["offer_id"])
            offer_ids.append(orow.id)
    return draft.id, row.id, offer_ids


RAW_MAIL = (
    b"From: Shop News <news@shop.example>\r\nTo: {alias}\r\nSubject: Your order{tag}\r\n"
    b"Date: Mon, 02 Mar 2026 09:30:00 +0000\r\nMessage-ID: <order-1@shop.example>\r\n\r\n"
    b"Your order has shipped.\r\n"
)


def add_mail(vault: UnlockedVault, vendor_id: str, other_vendor_id: str, tag: str = "") -> dict[str, str]:
    """The relationship mailbox: gateway settings (with the SMTP server as its downstream, password and
    all), an alias for each vendor, a reverse alias, a message sent as an alias and one received and filed
    (both kept whole, as files). Returns the ids and addresses."""
    mail = MailService(vault)
    mail.setup(domains=[f"mail{tag}.example.org"], forward_to=f"ada.real{tag}@example.net")
    alias = mail.create_alias(vendor_id, note="orders")
    other = mail.create_alias(other_vendor_id, style="words")
    reverse = mail.routes.reverse_for(alias, "support@shop.example")
    mail.send(alias.id, to="support@shop.example", subject="Where is my order?", body="Order 42, please.")
    raw = RAW_MAIL.replace(b"{alias}", alias.address.encode()).replace(b"{tag}", tag.encode())
    vault.vault.deposit(
        {
            "kind": INBOX_KIND,
            "direction": "in",
            "alias_id": alias.id,
            "alias": alias.address,
            "vendor_id": vendor_id,
            "envelope": {
                "mail_from": "bounce@shop.example",
                "helo": "mx.shop.example",
                "peer_ip": "192.0.2.7",
            },
            "summary": {"subject": f"Your order{tag}", "from": "news@shop.example", "kind": "transactional"},
            "auth": {"spf": "pass", "dkim": [], "dmarc": "pass"},
            "leak": {"leaked": False, "reason": None, "reached": None, "learned": None},
            "forwarded": False,
            "reply_to": None,
            "received_at": "2026-03-02T09:30:05+00:00",
            "raw": base64.b64encode(raw).decode(),
        }
    )
    assert mail.file_inbox() == 1
    received = next(m for m in mail.messages() if m.direction == "in")
    return {
        "alias": alias.id,
        "alias_address": alias.address,
        "other_alias": other.id,
        "other_alias_address": other.address,
        "reverse": reverse.id,
        "reverse_address": reverse.address,
        "received": received.id,
    }
