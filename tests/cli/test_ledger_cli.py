"""The ledger through the real `vrm` app: directory, contracts, import, search, upcoming, spending."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.cli.test_cli import Vrm
from tests.documents.parsers.support import EINVOICES

FNFE = EINVOICES / "ZUGFeRDv2" / "correct" / "FNFE-factur-x-examples"


@pytest.fixture
def vrm(tmp_path: Path) -> Vrm:
    v = Vrm(tmp_path / "home")
    v("init")
    return v


def test_directory_search_and_add(vrm: Vrm) -> None:
    hits = vrm.json("vendors", "search", "free mobile")
    assert hits[0]["slug"] == "free-fr"
    assert vrm.json("vendors", "search", "bank", "--country", "FR", "--limit", "3")
    v = vrm.json("vendors", "add", "--directory", "free-fr", "--customer-number", "FM-1")
    assert v["directory_slug"] == "free-fr" and "free.fr" in v["domains"]
    again = vrm.json("vendors", "add", "--directory", "free-fr")
    assert again["id"] == v["id"]  # added once
    assert "no directory entry" in vrm("vendors", "add", "--directory", "no-such-slug", code=1).stderr
    assert "either a NAME or --directory" in vrm("vendors", "add", code=1).stderr
    assert [m["id"] for m in vrm.json("vendors", "search", "FREE", "--mine")] == [v["id"]]


def test_merge_duplicates(vrm: Vrm) -> None:
    a = vrm.json("vendors", "add", "Free", "--domain", "free.fr")
    b = vrm.json("vendors", "add", "Free SAS", "--vat-id", "FR40303265045", "--customer-number", "C1")
    merged = vrm.json("vendors", "merge", a["id"], b["id"])
    assert merged["vat_ids"] == ["FR40303265045"] and merged["domains"] == ["free.fr"]
    shown = vrm.json("vendors", "show", a["id"])
    assert len(shown["relationships"]) == 1
    assert "no vendor" in vrm("vendors", "show", b["id"], code=1).stderr
    assert "not a valid EU VAT" in vrm("vendors", "add", "X", "--vat-id", "FR00000000000", code=1).stderr


def test_contract_life(vrm: Vrm) -> None:
    v = vrm.json("vendors", "add", "Orange", "--customer-number", "C1")
    c = vrm.json(
        "contracts",
        "add",
        v["id"],
        "--plan",
        "Livebox",
        "--price",
        "42.99",
        "--start",
        "2024-01-15",
        "--min-term",
        "12",
        "--renewal-term",
        "12",
        "--notice",
        "1 month",
        "--today",
        "2024-12-01",
    )
    assert c["cancellation_deadline"] == "2024-12-14" and c["next_renewal"] == "2025-01-15"
    shown = vrm.json("contracts", "show", c["id"], "--today", "2024-03-01", "--months", "1")
    assert [(e["due_date"], e["status"]) for e in shown["expected_payments"]] == [
        ("2024-01-15", "overdue"),
        ("2024-02-15", "overdue"),
        ("2024-03-15", "upcoming"),
    ]
    paid = vrm.json("contracts", "pay", c["id"], "--today", "2024-03-01")
    assert paid["due_date"] == "2024-01-15" and paid["amount"] == "42.99"
    vrm.json("contracts", "pay", c["id"], "--due", "2024-02-15", "--amount", "40.00", "--today", "2024-03-01")
    assert (
        "already recorded"
        in vrm("contracts", "pay", c["id"], "--due", "2024-02-15", "--today", "2024-03-01", code=1).stderr
    )
    vrm.json("contracts", "price", c["id"], "44.99", "--from", "2024-06-15")
    listed = vrm.json("contracts", "list", "--today", "2024-07-01")
    assert listed[0]["monthly_cost"] == "44.99"
    cancelled = vrm.json("contracts", "cancel", c["id"], "--today", "2024-12-01")
    assert cancelled["end_date"] == "2025-01-14"
    spend = vrm.json("spend", "--by", "month")
    assert [(r["key"], r["total"]) for r in spend] == [("2024-03", "82.99")]  # both paid on --today
    rows = list(csv.reader(io.StringIO(vrm("spend", "--csv").stdout)))
    assert rows[0] == ["vendor", "currency", "total", "count"] and rows[1] == ["Orange", "EUR", "82.99", "2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--price", "abc"], "not a number"),
        (["--notice", "soon"], "notice period"),
        (["--cycle", "daily"], "billing cycle"),
        (["--start", "2024/01/01"], "YYYY-MM-DD"),
        # was stored, then `contracts add`, `contracts list` and `upcoming` crashed (year 10000)
        (["--start", "9999-12-31"], "between 1900-01-01 and 2999-12-31"),
    ],
)
def test_contract_bad_input(vrm: Vrm, args: list[str], message: str) -> None:
    v = vrm.json("vendors", "add", "Orange")
    base = {"--plan": "P", "--price": "1", "--start": "2024-01-01"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    result = vrm("contracts", "add", v["id"], *flat, code=1)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert vrm.json("contracts", "list") == []


def test_contract_show_prints_a_payment_of_zero(vrm: Vrm) -> None:
    v = vrm.json("vendors", "add", "Gym")
    c = vrm.json("contracts", "add", v["id"], "--plan", "P", "--price", "30", "--start", "2024-01-31")
    vrm.json("contracts", "pay", c["id"], "--amount", "0", "--today", "2024-03-01")  # a free month
    shown = vrm("contracts", "show", c["id"], "--today", "2024-03-01", "--months", "1").stdout
    first = next(line for line in shown.splitlines() if "2024-01-31" in line)
    assert "paid" in first and first.rstrip(" │").endswith(" 0"), first  # was an empty paid column


def test_spend_period_checks(vrm: Vrm) -> None:
    v = vrm.json("vendors", "add", "Gym")
    c = vrm.json("contracts", "add", v["id"], "--plan", "P", "--price", "30", "--start", "2024-01-31")
    vrm.json("contracts", "pay", c["id"], "--on", "2024-02-01")
    # an inverted period was accepted and answered "No spending recorded yet."
    err = vrm("spend", "--since", "2024-12-31", "--until", "2024-01-01", code=1).stderr
    assert "--since 2024-12-31 is after --until 2024-01-01" in err
    assert vrm("spend", "--since", "2025-01-01").stdout.strip() == "No spending in this period."
    assert "30.00 EUR" in vrm("spend", "--until", "2024-02-01").stdout


def test_upcoming_has_no_cancel_deadline_for_a_contract_that_does_not_renew(vrm: Vrm) -> None:
    v = vrm.json("vendors", "add", "Insurer")
    args = ["--price", "5", "--start", "2024-01-15", "--min-term", "12", "--notice", "1 month"]
    vrm.json("contracts", "add", v["id"], "--plan", "Fixed", *args, "--no-auto-renew")
    vrm.json("contracts", "add", v["id"], "--plan", "Renews", *args)
    events = vrm.json("upcoming", "--today", "2024-12-01", "--days", "30")
    deadlines = [e["title"] for e in events if e["kind"] == "cancellation-deadline"]
    # "Last day to cancel" was listed for the fixed term too, although it ends by itself
    assert deadlines == ["Last day to cancel Insurer: Renews"]


def test_upcoming_and_ics(vrm: Vrm, tmp_path: Path) -> None:
    v = vrm.json("vendors", "add", "MAIF")
    vrm.json(
        "contracts",
        "add",
        v["id"],
        "--plan",
        "Habitation",
        "--price",
        "460.80",
        "--cycle",
        "yearly",
        "--start",
        "2024-05-05",
        "--min-term",
        "12",
        "--renewal-term",
        "12",
        "--notice",
        "2 months",
    )
    events = vrm.json("upcoming", "--today", "2025-02-20", "--days", "90")
    kinds = [(e["date"], e["kind"]) for e in events]
    assert ("2025-03-04", "cancellation-deadline") in kinds and ("2025-05-05", "renewal") in kinds
    ics = tmp_path / "cal.ics"
    vrm("upcoming", "--today", "2025-02-20", "--days", "90", "--ics", str(ics))
    text = ics.read_text()
    assert (
        text.startswith("BEGIN:VCALENDAR")
        and "DTSTART;VALUE=DATE:20250304" in text
        and "BEGIN:VALARM" in text
    )


@pytest.mark.skipif(not FNFE.is_dir(), reason=f"no e-invoice corpus at {EINVOICES}")
def test_docs_import_json_lines_search_and_edit(vrm: Vrm, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ("Facture_FR_BASICWL.pdf", "Facture_UE_BASICWL.pdf"):
        (folder / name).write_bytes((FNFE / name).read_bytes())
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / ".hidden.pdf").write_bytes(b"ignored")
    result = vrm("docs", "import", str(folder), "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(x["path"]).name for x in lines] == [
        "Facture_FR_BASICWL.pdf",
        "Facture_UE_BASICWL.pdf",
        "broken.pdf",
    ]
    good, _, broken = lines
    assert good["status"] == "imported" and good["format"] == "facturx"
    for key in (
        "seller",
        "seller_vat_id",
        "invoice_number",
        "issue_date",
        "currency",
        "net_total",
        "tax_total",
        "grand_total",
        "vendor_id",
    ):
        assert good[key], key
    assert broken["status"] == "unparsed" and broken["reason"]
    again = [
        json.loads(x)
        for x in vrm("docs", "import", str(folder / "Facture_FR_BASICWL.pdf"), "--json").stdout.splitlines()
    ]
    assert again[0]["status"] == "duplicate"
    hits = vrm.json("docs", "search", good["invoice_number"])
    assert good["document_id"] in [h["id"] for h in hits]
    assert vrm.json("docs", "search", "zzzznotthere") == []
    edited = vrm.json(
        "docs", "edit", good["document_id"], "--warranty-until", "2030-01-01", "--kind", "receipt"
    )
    assert edited["warranty_until"] == "2030-01-01" and edited["kind"] == "receipt"
    assert "YYYY-MM-DD" in vrm("docs", "edit", good["document_id"], "--warranty-until", "soon", code=1).stderr


def test_docs_import_text_names_each_file_with_what_was_read(vrm: Vrm, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    (folder / "2017").mkdir(parents=True)
    (folder / "2017" / "Facture_FR_BASICWL.pdf").write_bytes((FNFE / "Facture_FR_BASICWL.pdf").read_bytes())
    (folder / "[x] broken [bold].pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    lines = vrm("docs", "import", str(folder)).stdout.splitlines()
    # each file by its path inside the folder, its status first; under it what was read, or why not
    first = lines.index(next(x for x in lines if x.endswith("2017/Facture_FR_BASICWL.pdf")))
    assert lines[first].split() == ["imported", "2017/Facture_FR_BASICWL.pdf"]
    assert lines[first + 1].strip().split(" · ") == [
        "Au bon moulin",
        "FA-2017-0010",
        "2017-11-13",
        "671.15 EUR",
    ]
    broken = lines.index("unparsed  [x] broken [bold].pdf")
    assert lines[broken + 1].startswith(" " * 10) and lines[broken + 1].strip()
    assert lines[-1] == "1 imported, 1 unparsed"
    again = vrm("docs", "import", str(folder / "2017" / "Facture_FR_BASICWL.pdf")).stdout.splitlines()
    assert again[0].split() == ["duplicate", "Facture_FR_BASICWL.pdf"]
    assert "same content as document" in again[2]


def test_docs_import_missing_path(vrm: Vrm, tmp_path: Path) -> None:
    assert "no such file or folder" in vrm("docs", "import", str(tmp_path / "nope"), code=1).stderr


def test_feed_token(vrm: Vrm) -> None:
    t = vrm.json("tokens", "create", "phone calendar", "--kind", "feed")
    assert t["kind"] == "feed"
    assert "api or feed" in vrm("tokens", "create", "x", "--kind", "session", code=1).stderr


def test_card_and_costs(vrm: Vrm, tmp_path: Path) -> None:
    v = vrm.json("vendors", "add", "Orange", "--customer-number", "C-9", "--category", "telecom")
    vrm.json("contracts", "add", v["id"], "--plan", "Livebox", "--price", "42.99", "--start", "2024-01-15")
    card = vrm.json("vendors", "card", v["relationship"]["id"])
    assert card["format"] == "openvrm-relationship-card" and card["relationship"]["customer_number"] == "C-9"
    assert [c["plan"] for c in card["contracts"]] == ["Livebox"]
    out = tmp_path / "card.json"
    vrm("vendors", "card", v["relationship"]["id"], "-o", str(out))
    assert json.loads(out.read_text())["vendor"]["name"] == "Orange"
    assert "exists" in vrm("vendors", "card", v["relationship"]["id"], "-o", str(out), code=1).stderr
    costs = vrm.json("contracts", "costs", "--by", "category")
    assert costs == [
        {"key": "telecom", "currency": "EUR", "monthly": "42.99", "yearly": "515.88", "contracts": 1}
    ]
