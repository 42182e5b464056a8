"""Property: whatever a vault holds, export then import into a new vault gives back the same vault."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvrm.documents.service import KINDS as DOCUMENT_KINDS
from openvrm.documents.service import DocumentService
from openvrm.exchange import export_vault, import_archive
from openvrm.profile.service import ProfileService
from openvrm.sharing.service import SharingService
from openvrm.vault.check import check_vault
from openvrm.vendors.service import STANCES, STATUSES, VendorService

from .support import new_vault, view

text = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=30).filter(
    lambda s: s.strip() != ""
)
label = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)
email = st.builds(
    "{}@{}.example".format,
    st.from_regex(r"[a-z][a-z0-9.]{0,10}[a-z]", fullmatch=True).filter(lambda s: ".." not in s),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
)
phone = st.sampled_from(["+33 1 23 45 67 89", "+49 30 123456", "+44 20 7946 0958", "+1 212 555 0123"])
iban = st.sampled_from(
    ["FR14 2004 1010 0505 0001 3M02 606", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"]
)
birth = st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)).map(date.isoformat)
address = st.fixed_dictionaries(
    {"street": text, "city": text, "country": st.sampled_from(["FR", "de", "GB", "us"])},
    optional={"postal_code": st.from_regex(r"[0-9]{5}", fullmatch=True), "extra": text, "region": text},
)
profile_value = st.one_of(
    st.tuples(st.sampled_from(["name", "given-name", "family-name"]), text),
    st.tuples(st.just("email").map(lambda k: k), email),
    st.tuples(label.map("email.{}".format), email),
    st.tuples(st.just("phone"), phone),
    st.tuples(label.map("address.{}".format), address),
    st.tuples(st.just("birth-date"), birth),
    st.tuples(st.just("iban"), iban),
    st.tuples(label.map("loyalty.{}".format), text),
    st.tuples(label.map("free.{}".format), text),
)
profile_ops = st.lists(st.one_of(profile_value, st.tuples(st.just("unset"), st.integers(0, 50))), max_size=12)
domain = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]\.(com|org|fr|example)", fullmatch=True)
vendor = st.fixed_dictionaries(
    {"name": text},
    optional={
        "domains": st.lists(domain, max_size=3),
        "country": st.sampled_from(["FR", "de", "US"]),
        "categories": st.lists(text, max_size=3),
        "website": text,
        "notes": text,
        "directory_slug": label,
    },
)
relationship = st.fixed_dictionaries(
    {"vendor": st.integers(0, 20)},
    optional={
        "status": st.sampled_from(STATUSES),
        "stance": st.sampled_from(STANCES),
        "customer_number": text,
        "account": text,
        "since": birth,
        "tags": st.lists(text, max_size=3),
        "notes": text,
    },
)
document = st.fixed_dictionaries(
    {
        "data": st.binary(max_size=3000),
        "filename": st.from_regex(r"[A-Za-z0-9 _-]{1,20}\.(pdf|png|txt|xml)", fullmatch=True),
        "kind": st.sampled_from(DOCUMENT_KINDS),
        "link": st.one_of(
            st.none(), st.tuples(st.sampled_from(["vendor", "relationship"]), st.integers(0, 20))
        ),
        "duplicate": st.booleans(),
    },
    optional={"title": text},
)
share = st.fixed_dictionaries(
    {
        "relationship": st.integers(0, 20),
        "field": st.sampled_from(["email", "phone", "address.home", "name", "loyalty.shop"]),
        "purpose": text,
        "until": st.one_of(st.none(), birth),
        "revoke": st.booleans(),
    }
)
inbox = st.dictionaries(st.sampled_from(["type", "from", "total", "note"]), text, min_size=1)
contents = st.fixed_dictionaries(
    {
        "profile": profile_ops,
        "vendors": st.lists(vendor, max_size=4),
        "relationships": st.lists(relationship, max_size=4),
        "documents": st.lists(document, max_size=4),
        "shares": st.lists(share, max_size=4),
        "inbox": st.lists(inbox, max_size=2),
    }
)


def fill(vault: Any, c: dict[str, Any]) -> None:
    profile = ProfileService(vault)
    for key, value in c["profile"]:
        if key == "unset":
            current = sorted(profile.current())
            if current:
                profile.unset(current[value % len(current)])
        else:
            profile.set(key, value)
    vendors = VendorService(vault)
    vendor_ids = [vendors.add(v.pop("name"), **v).id for v in c["vendors"]]
    rel_ids: list[str] = []
    for r in c["relationships"]:
        if vendor_ids:
            index = r.pop("vendor")
            rel_ids.append(vendors.relate(vendor_ids[index % len(vendor_ids)], **r).id)
    docs = DocumentService(vault)
    for d in c["documents"]:
        kw: dict[str, Any] = {"filename": d["filename"], "kind": d["kind"], "title": d.get("title")}
        if d["link"] is not None:
            what, index = d["link"]
            ids = vendor_ids if what == "vendor" else rel_ids
            if ids:
                kw[f"{what}_id"] = ids[index % len(ids)]
        docs.add(d["data"], allow_duplicate=d["duplicate"], **kw)
    sharing = SharingService(vault)
    for s in c["shares"]:
        if rel_ids:
            rec = sharing.share(
                rel_ids[s["relationship"] % len(rel_ids)], s["field"], purpose=s["purpose"], until=s["until"]
            )
            if s["revoke"]:
                sharing.revoke(rec.id)
    for item in c["inbox"]:
        vault.vault.deposit(item)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=contents)
def test_export_import_round_trip(c: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        source = new_vault(base / "source")
        target = new_vault(base / "target")
        try:
            fill(source, c)
            exported = export_vault(source, base / "vault.zip")
            imported = import_archive(target, base / "vault.zip")
            assert imported.skipped_total == 0
            assert imported.added == {k: v for k, v in exported.counts.items() if k != "files"}
            assert view(target) == view(source)
            assert check_vault(target).ok
        finally:
            source.vault.close()
            target.vault.close()
