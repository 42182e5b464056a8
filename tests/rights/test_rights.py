"""GDPR requests: letters, identity elements, sending through the outbox, deadlines, answers, complaints."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date
from pathlib import Path

import pytest

from openvrm.cli import context as cli_context
from openvrm.documents.service import DocumentService
from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.ledger.upcoming import to_ics, upcoming
from openvrm.outbox import Outbox, SmtpTransport, load_mail_settings
from openvrm.profile.service import ProfileService
from openvrm.rights import REQUEST_TYPES, RightsService
from openvrm.rights.letters import LANGUAGES, pick_language, request_letter
from openvrm.rights.service import deadline_for
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.cli.test_cli import person_with_vendor
from tests.outbox.support import free_port, smtp_sink, use_sink

SENT = date(2026, 1, 31)


def person(uv: UnlockedVault) -> None:
    p = ProfileService(uv)
    p.set("name", "Anna Example")
    p.set("email", "anna@example.org")
    p.set(
        "address", {"street": "12 Lindenstraße", "postal_code": "20095", "city": "Hamburg", "country": "DE"}
    )


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", list(REQUEST_TYPES))
def test_every_letter_cites_its_article(kind: str, lang: str) -> None:
    letter = request_letter(
        kind=kind,
        lang=lang,
        identity=[("Name", "Anna Example")],
        details="My surname is misspelt.",
        deadline=date(2026, 3, 1),
        signer="Anna Example",
        today=date(2026, 2, 1),
        customer_number="C-42",
    )
    article = REQUEST_TYPES[kind]
    assert f"{article}" in letter.body and (
        "GDPR" in letter.body or "RGPD" in letter.body or "DSGVO" in letter.body
    )
    assert "C-42" in letter.subject and "Anna Example" in letter.body
    assert "2026" in letter.body  # the deadline is written out
    assert letter.pdf().startswith(b"%PDF")


def test_language_choice() -> None:
    assert pick_language("de", "FR") == "de"
    assert pick_language(None, "FR") == "fr"
    assert pick_language("it", "AT") == "de"
    assert pick_language(None, "IT") == "en"
    assert pick_language("de", "DE", "fr") == "fr"
    with pytest.raises(InvalidValue, match="en, fr, de"):
        pick_language(None, None, "es")


def test_deadline_is_one_month_extendable_by_two() -> None:
    assert deadline_for(SENT) == date(2026, 2, 28)
    assert deadline_for(SENT, extended=True) == date(2026, 4, 30)


def test_missing_identity_elements_are_listed_together(unlocked: UnlockedVault) -> None:
    svc = RightsService(unlocked)
    with pytest.raises(InvalidValue) as exc:
        svc.create("buecherhallen", "access")
    msg = str(exc.value)
    assert "Name" in msg and "Email" in msg and "Nummer Ihrer Kundenkarte" in msg
    person(unlocked)
    with pytest.raises(InvalidValue, match="Nummer Ihrer Kundenkarte"):
        svc.create("buecherhallen", "access")
    # The card number from a labelled profile field, matched to the vendor's slug.
    ProfileService(unlocked).set("customer-number.buecherhallen", "K-778")
    rec = svc.create("buecherhallen", "access")
    assert rec.language == "de" and rec.channel == "email" and rec.stored_status == "draft"
    letter = svc.letter(rec.id, today=SENT)
    assert "Artikel 15" in letter.body and "K-778" in letter.body and "28. Februar 2026" in letter.body


def test_bad_input_says_what_is_wrong(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    with pytest.raises(NotFound, match="unknown vendor"):
        svc.create("no-such-vendor-anywhere", "access")
    with pytest.raises(InvalidValue, match="one of access"):
        svc.create("7mind", "delete-everything")
    with pytest.raises(InvalidValue, match="needs details"):
        svc.create("7mind", "rectification")
    lonely = VendorService(unlocked).add("Corner Shop Nobody Knows")
    with pytest.raises(InvalidValue, match="has no contact"):
        svc.create(lonely.id, "erasure")
    with pytest.raises(InvalidValue, match="not a valid e-mail"):
        svc.create(lonely.id, "erasure", to="not-an-address")
    assert svc.create(lonely.id, "erasure", to="privacy@corner.example").channel == "email"


def test_send_by_email_tracks_deadline_and_upcoming(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    with smtp_sink() as (sink, port):
        use_sink(unlocked, port)
        rec = svc.create("7mind", "portability", language="fr")
        assert Outbox(unlocked).list() == []  # a draft sends nothing
        sent = svc.send(rec.id, today=SENT)
        assert sent.stored_status == "sent" and sent.deadline == date(2026, 2, 28)
        msg = Outbox(unlocked).get(sent.outbox_id or "")
        assert msg.status == "pending" and msg.origin["id"] == rec.id
        # the request is "sent" once queued; where its e-mail stands is told apart
        assert svc.email_states(svc.list()) == {rec.id: "pending"}
        Outbox(unlocked).deliver_now(SmtpTransport(load_mail_settings(unlocked)))
        assert len(sink.messages) == 1
        assert svc.email_states(svc.list()) == {rec.id: "sent"}
        mail = sink.messages[0]
        assert "portabilit" in str(mail["Subject"]).lower()
        body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert "article 20" in body and "28 février 2026" in body
    with pytest.raises(Conflict, match="already"):
        svc.send(rec.id, today=SENT)
    events = [e for e in upcoming(unlocked, today=date(2026, 2, 10), days=30) if e.kind.startswith("rights")]
    assert [(e.kind, e.day) for e in events] == [
        ("rights-reminder", date(2026, 2, 21)),
        ("rights-deadline", date(2026, 2, 28)),
    ]
    ics = to_ics(events).decode()
    assert f"rights-deadline-{rec.id}-2026-02-28@openvrm" in ics
    assert svc.get(rec.id).status(date(2026, 3, 1)) == "overdue"
    assert [e.kind for e in upcoming(unlocked, today=date(2026, 3, 5)) if e.kind.startswith("rights")] == [
        "rights-overdue"
    ]
    svc.acknowledge(rec.id, "ticket 123")
    svc.extend(rec.id, "complex request")
    assert svc.get(rec.id).deadline == date(2026, 4, 30)
    assert svc.get(rec.id).status(date(2026, 3, 1)) == "acknowledged"
    with pytest.raises(Conflict, match="once"):
        svc.extend(rec.id)


def test_post_and_webform_need_no_mail_server(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    rec = svc.create("7mind", "erasure", channel="post")
    letter = svc.letter(rec.id, today=SENT)
    assert letter.sender_lines[0] == "Anna Example" and "12 Lindenstraße" in letter.sender_lines
    assert letter.pdf().startswith(b"%PDF")
    assert svc.send(rec.id, today=SENT).stored_status == "sent"
    assert Outbox(unlocked).list() == []
    with pytest.raises(InvalidValue, match="no web form"):
        svc.create("7mind", "erasure", channel="webform")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_answer_brings_the_data_back_into_the_vault(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    rec = svc.create("7mind", "access", channel="post")
    with pytest.raises(Conflict, match="draft"):
        svc.answer(rec.id, [("a.csv", b"x")])
    svc.send(rec.id, today=SENT)
    archive = _zip(
        {
            "export/orders.csv": b"order,date\n1,2025-01-02\n",
            "export/profile.json": json.dumps({"email": "anna@example.org"}).encode(),
            "../../escape.txt": b"outside",
            "export/.hidden": b"skip me",
        }
    )
    result = svc.answer(rec.id, [("7mind-export.zip", archive), ("letter.pdf", b"%PDF-1.4 not really")])
    by_path = {o.path: o for o in result.outcomes}
    assert by_path["7mind-export.zip#../../escape.txt"].status == "rejected"
    assert by_path["7mind-export.zip#export/orders.csv"].status == "imported"
    assert not any("hidden" in p for p in by_path)
    after = svc.get(rec.id)
    assert after.stored_status == "answered" and len(after.documents) == 4  # zip, csv, json, pdf
    docs = DocumentService(unlocked)
    contents = {docs.get(d).filename: docs.content(d)[1] for d in after.documents}
    assert contents["orders.csv"].startswith(b"order,date")
    assert all(docs.get(d).vendor_id == rec.vendor_id for d in after.documents)


def test_zip_bomb_members_are_refused(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    rec = svc.create("7mind", "access", channel="post")
    svc.send(rec.id, today=SENT)
    bomb = _zip({"zeros.bin": b"\0" * (8 * 1024 * 1024)})
    outcomes = svc.answer(rec.id, [("bomb.zip", bomb)]).outcomes
    assert [o.status for o in outcomes if o.path.endswith("zeros.bin")] == ["rejected"]


def test_escalation_to_the_authority_with_history(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    with smtp_sink() as (sink, port):
        use_sink(unlocked, port)
        rec = svc.create("7mind", "access")
        with pytest.raises(Conflict, match="draft"):
            svc.escalate(rec.id)
        svc.send(rec.id, today=SENT)
        preview = svc.escalate(rec.id, today=date(2026, 3, 10), send=False)
        assert preview.authority.countries == ("DE",) and preview.channel == "email"
        assert svc.get(rec.id).stored_status == "sent"  # a preview changes nothing
        assert "Artikel 77" in preview.letter.body or "Artikel 77" in preview.letter.subject
        done = svc.escalate(rec.id, today=date(2026, 3, 10))
        assert done.request.stored_status == "escalated"
        Outbox(unlocked).deliver_now(SmtpTransport(load_mail_settings(unlocked)))
        complaint = sink.messages[-1]
        assert str(complaint["To"]) == preview.authority.email
        attachments = [p for p in complaint.walk() if p.get_filename()]
        assert attachments and attachments[0].get_payload(decode=True).startswith(b"%PDF")  # type: ignore[union-attr]
    cnil = svc.escalate(rec.id, authority="frcnil", today=date(2026, 3, 10), send=False)
    assert cnil.channel in ("webform", "post") and cnil.letter.language == "fr"


def test_email_needs_a_mail_server(unlocked: UnlockedVault) -> None:
    person(unlocked)
    svc = RightsService(unlocked)
    rec = svc.create("7mind", "objection")
    with pytest.raises(NotFound, match="vrm mail setup"):
        svc.send(rec.id, today=SENT)
    assert svc.get(rec.id).stored_status == "draft"
    use_sink(unlocked, free_port())
    assert svc.send(rec.id, today=SENT).stored_status == "sent"


def test_merging_vendors_carries_requests_and_deleting_is_refused(unlocked: UnlockedVault) -> None:
    from openvrm.errors import Conflict
    from openvrm.vendors.service import VendorService

    person(unlocked)
    vendors = VendorService(unlocked)
    keep = vendors.add("Corner Shop")
    dup = vendors.add("Corner Shop Ltd")
    rec = RightsService(unlocked).create(dup.id, "erasure", to="privacy@corner.example")
    with pytest.raises(Conflict, match="GDPR requests"):
        vendors.delete(dup.id)
    vendors.merge(keep.id, dup.id)
    assert RightsService(unlocked).get(rec.id).vendor_id == keep.id


def test_request_whose_pdf_cannot_be_written_leaves_no_draft(tmp_path: Path) -> None:
    vrm, vendor = person_with_vendor(tmp_path / "home", "Acme")
    args = ["rights", "request", vendor, "access", "--to", "privacy@acme.example"]
    err = vrm(*args, "--pdf", str(tmp_path / "no-such-folder" / "letter.pdf"), code=1)
    assert "No such file or directory" in err.stderr
    assert vrm.json("rights", "list") == []  # the failed command kept a draft; a rerun made a second
    vrm(*args, "--pdf", str(tmp_path / "letter.pdf"))
    assert len(vrm.json("rights", "list")) == 1 and (tmp_path / "letter.pdf").exists()


def test_list_tells_a_request_whose_email_has_not_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request is "sent" once its e-mail is queued; the list says when that e-mail has not left."""
    monkeypatch.setattr(cli_context.out, "_width", 300)  # wide: each row on one line
    vrm, vendor = person_with_vendor(tmp_path / "home", "Acme")
    vrm("mail", "setup", "--from", "anna@example.org", "--host", "127.0.0.1", "--port", str(free_port()))
    request = vrm.json("rights", "request", vendor, "access", "--to", "privacy@acme.example")
    vrm("rights", "send", request["id"], "--yes")
    (listed,) = vrm.json("rights", "list")
    assert listed["status"] == "sent" and listed["email_status"] == "pending"
    assert "email (not sent yet)" in vrm("rights", "list").stdout
    vrm("outbox", "cancel", vrm.json("outbox", "list")[0]["id"])
    assert vrm.json("rights", "list")[0]["email_status"] == "cancelled"
    assert "email (not sent: cancelled)" in vrm("rights", "list").stdout


def test_list_by_status_with_no_match_does_not_say_there_are_no_requests(tmp_path: Path) -> None:
    vrm, vendor = person_with_vendor(tmp_path / "home", "Acme")
    vrm("rights", "request", vendor, "access", "--to", "privacy@acme.example")
    listed = vrm("rights", "list", "--status", "overdue").stdout
    assert "No request is overdue." in listed and "No requests yet" not in listed  # it said "yet"
    assert "draft" in vrm("rights", "list", "--status", "draft").stdout
