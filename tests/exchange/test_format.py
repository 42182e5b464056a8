"""The published manifest schema and the one the importer uses are the same file, and it is valid."""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from openvrm.errors import ArchiveError
from openvrm.exchange import manifest_schema
from openvrm.exchange.format import check_entry_name, parse_time, sha_of_entry

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_published_schema_is_the_packaged_schema() -> None:
    packaged = resources.files("openvrm.exchange").joinpath("export.schema.json").read_bytes()
    assert (DOCS / "export.schema.json").read_bytes() == packaged


def test_schema_is_valid_draft_2020_12() -> None:
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_docs_describe_the_format() -> None:
    text = (DOCS / "export-format.md").read_text()
    for word in ("manifest.json", "format_version", "files/", "age -d", "export.schema.json"):
        assert word in text
    assert "restore" in (DOCS / "backup.md").read_text().lower()


@pytest.mark.parametrize(
    "name", ["../x", "/abs", "a/../b", "files//x", "C:/x", "files\\x", "x\x00", "", "./manifest.json"]
)
def test_unsafe_names(name: str) -> None:
    with pytest.raises(ArchiveError, match="unsafe name"):
        check_entry_name(name)


def test_names_of_the_format() -> None:
    check_entry_name("manifest.json")
    check_entry_name("files/")
    check_entry_name("files/" + "a" * 64)
    assert sha_of_entry("files/" + "a" * 64) == "a" * 64
    assert sha_of_entry("files/" + "A" * 64) is None
    with pytest.raises(ArchiveError, match="not part of the format"):
        check_entry_name("files/" + "a" * 63)


def test_timestamps_need_a_time_zone() -> None:
    assert parse_time("2026-01-02T03:04:05.000001+02:00", "x").hour == 1
    with pytest.raises(ArchiveError, match="no time zone"):
        parse_time("2026-01-02T03:04:05", "here")


def _props(name: str) -> set[str]:
    return set(manifest_schema()["$defs"][name]["properties"])


def test_schema_carries_every_key_the_core_writes() -> None:
    """When a service starts writing a new payload key, this fails until the format carries it."""
    from datetime import date
    from decimal import Decimal

    from openvrm.documents.service import EXTRA_KEYS
    from openvrm.exchange.format import KINDS
    from openvrm.ledger.contracts import ContractRecord, PaymentRecord
    from openvrm.ledger.terms import PricePoint
    from openvrm.vendors.service import RelationshipRecord, VendorRecord

    stamps = {"id", "created_at", "updated_at"}
    assert _props("vendor") == stamps | set(VendorRecord(id="", name="x").payload())
    relationship = RelationshipRecord(id="", vendor_id="").payload()
    assert _props("relationship") == stamps | {"vendor_id"} | set(relationship)
    contract = ContractRecord(
        id="",
        vendor_id="",
        relationship_id=None,
        plan="p",
        category=None,
        price=Decimal(1),
        currency="EUR",
        billing_cycle="monthly",
        start=date(2024, 1, 1),
        price_history=[PricePoint(date(2024, 2, 1), Decimal(2), "EUR")],
    ).payload()
    assert _props("contract") == stamps | {"vendor_id", "relationship_id"} | set(contract)
    assert _props("price_point") == set(contract["price_history"][0])
    payment = PaymentRecord(
        id="",
        contract_id=None,
        vendor_id=None,
        document_id=None,
        due_date=None,
        paid_on=date(2024, 1, 1),
        amount=Decimal(1),
        currency="EUR",
    ).payload()
    assert _props("payment") == stamps | {"contract_id", "vendor_id", "document_id"} | set(payment)
    assert set(EXTRA_KEYS) | {"filename", "media_type", "title", "kind", "size", "text"} <= _props("document")
    schema = manifest_schema()
    from openvrm.exchange.format import OPTIONAL_KINDS

    # The kinds added later are optional, so archives written before them still import.
    required = [k for k in KINDS if k not in OPTIONAL_KINDS]
    assert schema["required"][-len(required) :] == required
    assert set(OPTIONAL_KINDS) <= set(schema["properties"]) - set(schema["required"])
    assert list(schema["properties"])[-len(KINDS) :] == list(KINDS)
    assert schema["properties"]["counts"]["required"] == [*required, "files"]
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "required" in definition:
            assert set(definition["required"]) == set(definition["properties"]), name


def test_schema_carries_every_parsed_field() -> None:
    """The parsed invoice fields, line items, formats and statuses the import service can write."""
    importer = pytest.importorskip("openvrm.documents.importer")
    model = pytest.importorskip("openvrm.documents.parsers.model")
    import re
    from dataclasses import fields

    assert _props("document_fields") == set(importer._FIELDS)
    assert _props("line_item") == {f.name for f in fields(model.LineItem)}
    document = manifest_schema()["$defs"]["document"]["properties"]
    assert document["parse_status"]["enum"] == [*model.STATUSES, None]
    token = re.compile(document["format"]["anyOf"][0]["pattern"])
    assert all(token.match(f) for f in model.FORMATS)
    doc_type = re.compile(
        manifest_schema()["$defs"]["document_fields"]["properties"]["document_type"]["pattern"]
    )
    assert all(doc_type.match(t) for t in model.DOCUMENT_TYPES)


def _source_tree(module: str) -> ast.Module:
    path = resources.files(module.rpartition(".")[0]).joinpath(module.rpartition(".")[2] + ".py")
    return ast.parse(path.read_text("utf-8"))


def test_schema_carries_every_key_of_rights_moves_and_settings() -> None:
    """When the rights, moves or mail settings code writes a new key, this fails until the format has it."""
    from dataclasses import fields

    from openvrm.exchange import export, importer
    from openvrm.moves.service import MoveRecord, MoveService, Notice
    from openvrm.outbox.settings import SMTP_SETTING, MailSettings
    from openvrm.rights.contacts import Contact
    from openvrm.rights.service import RightsRequestRecord

    stamps = {"id", "created_at", "updated_at"}
    request = RightsRequestRecord(
        id="", vendor_id="", vendor_name="", kind="", language="", channel="", stored_status="",
        contact={}, identity=[],
    ).payload()  # fmt: skip
    assert _props("rights_request") == stamps | {"vendor_id"} | set(request)
    assert set(export._RIGHTS_KEYS) == set(request)
    assert _props("rights_contact") == set(Contact(name="x").to_json()) == set(export._CONTACT_KEYS)
    notice = Notice(vendor_id="", vendor_name="", channel="email", status="pending")
    move = MoveService._payload(MoveRecord("", "email", "a@b.example", "c@d.example", "", [notice]))
    assert _props("move") == stamps | set(move) and set(export._MOVE_KEYS) == set(move)
    assert _props("move_notice") == set(move["notices"][0]) == {f.name for f in fields(Notice)}
    assert _props("smtp_settings") == {f.name for f in fields(MailSettings)}
    assert manifest_schema()["$defs"]["setting"]["properties"]["id"]["enum"] == [SMTP_SETTING]
    assert set(export._SETTINGS) == {SMTP_SETTING}

    # What RightsService writes into a request's history and complaint, read from its source.
    tree = _source_tree("openvrm.rights.service")
    events, extras, complaint = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_event":
            assert isinstance(node.args[0], ast.Constant)
            events.add(node.args[0].value)
            extras |= {k.arg for k in node.keywords}
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr == "complaint"
            and isinstance(node.value, ast.Dict)
        ):
            complaint |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    assert events == set(importer.REQUEST_EVENTS)
    assert _props("rights_event") == {"at", "event", "note"} | extras
    assert complaint and _props("rights_complaint") == complaint


def test_every_sealed_setting_is_one_the_format_knows() -> None:
    """A new sealed setting elsewhere in openvrm must be added to the archive (export, schema, import)."""
    root = Path(__file__).resolve().parents[2] / "src" / "openvrm"
    users = {
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "SealedSetting" in p.read_text("utf-8") and p.parent.name != "exchange"
    }
    assert users == {"storage/models.py", "outbox/settings.py"}
    tree = _source_tree("openvrm.outbox.settings")
    ids = {
        node.targets[0].id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.endswith("_SETTING")
    }
    assert ids == {"SMTP_SETTING"}


def test_the_outbox_is_not_part_of_the_format() -> None:
    """Delivery state, not the person's data: no kind, no schema definition; the doc says so."""
    from openvrm.exchange.format import KINDS

    assert not any("outbox" in k for k in KINDS)
    assert not any("outbox" in name for name in manifest_schema()["$defs"])
    text = (DOCS / "export-format.md").read_text()
    assert "outbox" in text and "not carried over" in text and "SMTP password" in text


def test_schema_carries_every_key_of_the_mailbox() -> None:
    """When the mail code writes a new alias, gateway or message key, this fails until the format has it."""
    from datetime import UTC, datetime

    from openvrm.exchange.format import MAIL_ALIAS_KEYS, MAIL_MESSAGE_KEYS
    from openvrm.mail.routing import Alias, Downstream, GatewayConfig

    stamps = {"id", "created_at", "updated_at"}
    alias = Alias("", "a@b.example", None, "", "active", datetime.now(UTC)).payload()
    assert set(MAIL_ALIAS_KEYS) == set(alias)
    assert _props("mail_alias") == stamps | {"vendor_id", "state"} | set(alias)
    config = GatewayConfig(("b.example",), "a@c.example", downstream=Downstream("h", 25)).to_json()
    assert _props("mail_gateway_config") == set(config)
    assert _props("mail_downstream") == set(config["downstream"])
    assert _props("mail_reverse_alias") == stamps | {"alias_id", "address", "contact"}
    plain = {"vendor_id", "alias_id", "received_at", "file", "sha256", "size"}
    assert _props("mail_message") == stamps | plain | set(MAIL_MESSAGE_KEYS)
    assert not any("spool" in name for name in manifest_schema()["$defs"])
