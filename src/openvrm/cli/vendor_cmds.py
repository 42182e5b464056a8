"""`vrm vendors`, `vrm docs`, `vrm shares`: the minimal ledger the vault issue needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import JsonOpt, emit, err, id_table, out, unlocked
from openvrm.documents.service import KINDS, DocumentRecord, DocumentService
from openvrm.errors import InvalidValue, NotFound, OpenVRMError
from openvrm.sharing.service import SharingService
from openvrm.vendors.service import VendorRecord, VendorService

if TYPE_CHECKING:
    from openvrm.documents.importer import ImportOutcome

vendors = typer.Typer(help="The vendors you deal with and your relationship with each.", no_args_is_help=True)
docs = typer.Typer(
    help="Documents kept in the vault: bills, receipts, contracts, letters.", no_args_is_help=True
)
shares = typer.Typer(
    help="Which profile fields you have shared with which relationship.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(vendors, name="vendors")
    app.add_typer(docs, name="docs")
    app.add_typer(shares, name="shares")


VendorArg = Annotated[str, typer.Argument(help="The vendor's id, as `vrm vendors list` shows it.")]
RelationshipArg = Annotated[
    str, typer.Argument(help="The relationship's id, as `vrm vendors show VENDOR_ID` shows it.")
]
DocumentArg = Annotated[str, typer.Argument(help="The document's id, as `vrm docs list` shows it.")]
ShareArg = Annotated[str, typer.Argument(help="The share's id, as `vrm shares list` shows it.")]
DocVendorOpt = Annotated[
    str | None,
    typer.Option("--vendor", help="Only this vendor's documents (its id, from `vrm vendors list`)."),
]


@vendors.command("add")
def vendors_add(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The vendor's name (or use --directory).")] = None,
    directory_slug: Annotated[
        str | None,
        typer.Option("--directory", help="Add this directory entry (slug from `vrm vendors search`)."),
    ] = None,
    domain: Annotated[
        list[str] | None, typer.Option("--domain", help="A web domain of the vendor (repeatable).")
    ] = None,
    country: Annotated[str | None, typer.Option(help="Two-letter country code.")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="A category (repeatable).")] = None,
    website: Annotated[
        str | None, typer.Option(help="The vendor's website, e.g. https://example.com.")
    ] = None,
    vat_id: Annotated[
        list[str] | None, typer.Option("--vat-id", help="An EU VAT number (repeatable).")
    ] = None,
    customer_number: Annotated[
        str | None, typer.Option(help="Also record a relationship with this customer number.")
    ] = None,
    alias: Annotated[
        bool,
        typer.Option(
            "--alias", help="Also give the vendor its own e-mail alias (needs `vrm mail gateway setup`)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a vendor: from the bundled directory (--directory SLUG) or by hand (NAME).

    With --customer-number your relationship with it is recorded too.
    """
    if (name is None) == (directory_slug is None):
        raise InvalidValue("give either a NAME or --directory SLUG")
    with unlocked(ctx) as uv:
        svc = VendorService(uv)
        if name is None:
            v = svc.add_from_directory(str(directory_slug))
        else:
            v = svc.add(
                name,
                domains=domain or [],
                country=country,
                categories=category or [],
                website=website,
                vat_ids=vat_id or [],
            )
        rel = svc.relate(v.id, customer_number=customer_number) if customer_number else None
        made = _alias_for(uv, v.id) if alias else None
    data = v.to_json() | ({"relationship": rel.to_json()} if rel else {})
    if made is not None:
        data["alias"] = made.to_json()
    emit(as_json, data, f"Added {v.name} ({v.id})." + (f" Its alias: {made.address}" if made else ""))


@vendors.command("search")
def vendors_search(
    ctx: typer.Context,
    query: Annotated[
        str, typer.Argument(help="Name, brand or domain; case, accents and small typos do not matter.")
    ],
    country: Annotated[
        str | None, typer.Option(help="Only vendors serving this country (two letters).")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Only this directory category, e.g. telecommunication.")
    ] = None,
    mine: Annotated[
        bool, typer.Option("--mine", help="Search your own vendors instead of the directory.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Show at most this many vendors.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Search the bundled directory of 3,069 organisations (or, with --mine, your vendors)."""
    if mine:
        with unlocked(ctx) as uv:
            found = VendorService(uv).search(query)[:limit]
        emit(as_json, [v.to_json() for v in found], lambda: _vendor_table(found))
        return
    from openvrm.directory import directory

    hits = directory().search(query, country=country, category=category, limit=limit)

    def text() -> None:
        if not hits:
            out.print(f"Nothing in the directory matches {query!r}. Add it by hand: vrm vendors add NAME")
            return
        table = Table("slug", "name", "domains", "countries", "privacy contact")
        for h in hits:
            e = h.entry
            table.add_row(
                e.slug,
                e.name,
                ", ".join(e.domains[:3]),
                ", ".join(e.countries[:5]),
                e.email or e.webform or "",
            )
        out.print(table)
        out.print("Add one with: vrm vendors add --directory SLUG")

    emit(as_json, [h.to_json() for h in hits], text)


def _vendor_table(items: list[VendorRecord]) -> None:
    if not items:
        out.print("No vendors yet. Add one with `vrm vendors add NAME`.")
        return
    table = id_table("name", "domains", "country")
    for v in items:
        table.add_row(v.id, v.name, ", ".join(v.domains), v.country or "")
    out.print(table)


@vendors.command("merge")
def vendors_merge(
    ctx: typer.Context,
    keep_id: Annotated[str, typer.Argument(help="The vendor to keep.")],
    other_id: Annotated[str, typer.Argument(help="The duplicate, folded into the first and removed.")],
    as_json: JsonOpt = False,
) -> None:
    """Merge a duplicate vendor into another: relationships, contracts, documents and payments move over."""
    with unlocked(ctx) as uv:
        v = VendorService(uv).merge(keep_id, other_id)
    emit(as_json, v.to_json(), f"Merged into {v.name} ({v.id}).")


@vendors.command("list")
def vendors_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List your vendors."""
    with unlocked(ctx) as uv:
        items = VendorService(uv).list()
    emit(as_json, [v.to_json() for v in items], lambda: _vendor_table(items))


@vendors.command("show")
def vendors_show(ctx: typer.Context, vendor_id: VendorArg, as_json: JsonOpt = False) -> None:
    """Show one vendor with its relationships and documents."""
    with unlocked(ctx) as uv:
        svc = VendorService(uv)
        v = svc.get(vendor_id)
        rels = svc.relationships(v.id)
        documents = DocumentService(uv).list(vendor_id=v.id)
    data = v.to_json() | {
        "relationships": [r.to_json() for r in rels],
        "documents": [d.to_json() for d in documents],
    }

    def text() -> None:
        out.print(Text.assemble((v.name, "bold"), f"  ({v.id})"))
        if v.domains:
            out.print("domains: " + ", ".join(v.domains))
        for r in rels:
            out.print(
                f"relationship {r.id}: {r.status}, {r.stance}, customer number {r.customer_number or '-'}"
            )
        for d in documents:
            out.print(f"document {d.id}: {d.title} ({d.kind}, {d.size} bytes)")

    emit(as_json, data, text)


@vendors.command("card")
def vendors_card(
    ctx: typer.Context,
    relationship_id: RelationshipArg,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the card (JSON) to this file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The relationship card: everything about one relationship in one portable JSON document."""
    import json

    from openvrm.ledger.contracts import today_local
    from openvrm.vendors.card import relationship_card

    with unlocked(ctx) as uv:
        card = relationship_card(uv, relationship_id, today=today_local())
    if output is not None:
        if output.exists():
            raise InvalidValue(f"{output} exists; choose another file name")
        output.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def text() -> None:
        v, r = card["vendor"], card["relationship"]
        out.print(
            Text.assemble(
                (str(v["name"]), "bold"),
                f"  {r['status']}, {r['stance']}, customer number {r['customer_number'] or '-'}",
            )
        )
        out.print(
            f"{len(card['contracts'])} contract(s), {len(card['documents'])} document(s), "
            f"{len(card['payments'])} payment(s), {len(card['shares'])} shared field(s)"
        )
        for c in card["contracts"]:
            out.print(
                f"  {c['plan']}: {c['price']} {c['currency']}/{c['billing_cycle']}, "
                f"cancel by {c.get('cancellation_deadline') or '-'}"
            )
        if output is not None:
            out.print(f"Written to {output}.")

    emit(as_json, card, text)


@vendors.command("relate")
def vendors_relate(
    ctx: typer.Context,
    vendor_id: VendorArg,
    customer_number: Annotated[
        str | None, typer.Option(help="Your customer number at the vendor, as on its bills.")
    ] = None,
    account: Annotated[str | None, typer.Option(help="Login or account name at the vendor.")] = None,
    since: Annotated[str | None, typer.Option(help="Customer since, YYYY-MM-DD.")] = None,
    stance: Annotated[str, typer.Option(help="trusted, neutral or blocked.")] = "neutral",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    alias: Annotated[
        bool,
        typer.Option(
            "--alias", help="Also give the vendor its own e-mail alias (needs `vrm mail gateway setup`)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record your relationship with a vendor (with --alias, give it its own e-mail alias too)."""
    with unlocked(ctx) as uv:
        rel = VendorService(uv).relate(
            vendor_id,
            customer_number=customer_number,
            account=account,
            since=since,
            stance=stance,
            tags=tag or [],
        )
        made = _alias_for(uv, vendor_id) if alias else None
    data = rel.to_json() | ({"alias": made.to_json()} if made else {})
    emit(as_json, data, f"Relationship {rel.id} recorded." + (f" Alias: {made.address}" if made else ""))


def _alias_for(uv: Any, vendor_id: str) -> Any:
    """The vendor's alias: the one it has (made with the relationship, say), else a new one."""
    from openvrm.mail.service import MailService

    mail = MailService(uv)
    return next(iter(mail.aliases(vendor_id=vendor_id)), None) or mail.create_alias(vendor_id)


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.exists():
            found.append(p)
        else:
            raise NotFound(f"no such file or folder: {p}")
    return found


@docs.command("add")
def docs_add(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (folders are read recursively).")],
    vendor: Annotated[str | None, typer.Option("--vendor", help="Link to this vendor id.")] = None,
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")] = "other",
    as_json: JsonOpt = False,
) -> None:
    """Store files in the vault, sealed. The same content added twice is reported as a duplicate."""
    files = _files(paths)
    results: list[dict[str, object]] = []
    with unlocked(ctx) as uv:
        svc = DocumentService(uv)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=as_json or len(files) < 2,
        ) as bar:
            task = bar.add_task("Adding documents", total=len(files))
            for f in files:
                try:
                    res = svc.add_file(f, vendor_id=vendor, kind=kind)
                    status = "duplicate" if res.duplicate_of else "imported"
                    results.append({"path": str(f), "status": status, "id": res.document.id})
                except (InvalidValue, OSError) as exc:
                    results.append({"path": str(f), "status": "rejected", "reason": str(exc)})
                except OpenVRMError:
                    raise
                bar.advance(task)

    def text() -> None:
        for r in results:
            detail = r.get("id") or r.get("reason")
            out.print(f"{r['status']:<9} {r['path']}  {detail}")

    emit(as_json, results, text)
    if any(r["status"] == "rejected" for r in results):
        raise typer.Exit(1)


def _shown_paths(paths: list[str]) -> list[str]:
    """The files of an import as the person can tell them apart: relative to the folder they share."""
    if len(paths) < 2:
        return [Path(p).name for p in paths]
    try:
        root = os.path.commonpath(paths)
    except ValueError:  # relative and absolute paths mixed, or different drives
        return paths
    if root in paths:  # one file given twice
        root = str(Path(root).parent)
    return [os.path.relpath(p, root) if root else p for p in paths]


_STATUS_STYLE = {"imported": "green", "duplicate": "cyan", "unparsed": "yellow", "rejected": "bold red"}


def _print_import(outcomes: list[ImportOutcome]) -> None:
    """Each file on a line of its own, its status first, and under it what was read and any reason.

    A table's columns cannot fit long paths, sellers and reasons in a terminal of 80 columns; this stays
    readable at any width. File names and vendor data are printed as plain text, never as markup.
    """
    width = max(len(o.status) for o in outcomes) + 2 if outcomes else 0
    for o, shown in zip(outcomes, _shown_paths([o.path for o in outcomes]), strict=True):
        j = o.to_json()
        line = Text(o.status.ljust(width), style=_STATUS_STYLE.get(o.status, ""))
        line.append(shown)
        out.print(line)  # the console soft-wraps: a long path runs on to the terminal's next line
        total = f"{j['grand_total']} {j['currency'] or ''}".strip() if j["grand_total"] else ""
        read = [j["seller"], j["invoice_number"], j["issue_date"], total]
        details = [" · ".join(str(x) for x in read if x), o.reason or ""]
        for detail in filter(None, details):
            out.print(Text(" " * width + detail, style="dim" if detail is o.reason else ""))


@docs.command("import")
def docs_import(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (read recursively, hidden files skipped).")
    ],
    no_new_vendors: Annotated[
        bool, typer.Option("--no-new-vendors", help="Do not create vendors for sellers you do not have yet.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file (JSON Lines).")
    ] = False,
) -> None:
    """Import bills and documents: Factur-X/ZUGFeRD PDFs, CII and UBL XML, PDFs, images, e-mails (.eml).

    Invoice fields are read (seller, VAT id, number, dates, totals, lines) and each bill is linked to its
    vendor and contract. Every file gets an outcome: imported, duplicate (same content already in the
    vault), unparsed (kept, with the reason) or rejected (unreadable or too large; not kept).
    """
    import json
    import sys

    from openvrm.documents.importer import ImportService, expand_paths

    total = len(list(expand_paths(paths)))
    with unlocked(ctx) as uv:
        svc = ImportService(uv, create_vendors=not no_new_vendors)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=as_json or total < 2,
        ) as bar:
            task = bar.add_task("Importing", total=total)
            outcomes = svc.import_paths(paths, progress=lambda done, _n, _p: bar.update(task, completed=done))
    if as_json:
        for o in outcomes:
            sys.stdout.write(json.dumps(o.to_json(), ensure_ascii=False) + "\n")
    else:
        _print_import(outcomes)
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        out.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if any(o.status == "rejected" for o in outcomes):
        raise typer.Exit(1)


@docs.command("search")
def docs_search(
    ctx: typer.Context,
    query: Annotated[
        str, typer.Argument(help="Words to find in titles, fields and text (all must match).")
    ] = "",
    vendor: DocVendorOpt = None,
    kind: Annotated[str | None, typer.Option(help=f"Only this kind: {', '.join(KINDS)}.")] = None,
    since: Annotated[str | None, typer.Option(help="Issued on or after (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Issued on or before (YYYY-MM-DD).")] = None,
    min_total: Annotated[str | None, typer.Option("--min", help="Total at least.")] = None,
    max_total: Annotated[str | None, typer.Option("--max", help="Total at most.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Show at most this many documents.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Search documents. The index is built in memory after unlock; nothing searchable is stored in clear."""
    from openvrm.documents.search import DocumentIndex
    from openvrm.ledger.money import parse_amount, parse_date

    with unlocked(ctx) as uv:
        hits = DocumentIndex.build(uv).search(
            query,
            vendor_id=vendor,
            kind=kind,
            since=parse_date(since, "--since").isoformat() if since else None,
            until=parse_date(until, "--until").isoformat() if until else None,
            min_total=parse_amount(min_total, "--min") if min_total else None,
            max_total=parse_amount(max_total, "--max") if max_total else None,
            limit=limit,
        )

    def text() -> None:
        if not hits:
            out.print("No document matches.")
            return
        table = _document_table(with_kind=False)
        for h in hits:
            table.add_row(*_document_row(h.document, with_kind=False))
        out.print(table)

    emit(as_json, [h.to_json() for h in hits], text)


@docs.command("edit")
def docs_edit(
    ctx: typer.Context,
    document_id: DocumentArg,
    title: Annotated[str | None, typer.Option(help="A new title.")] = None,
    kind: Annotated[str | None, typer.Option(help=f"One of: {', '.join(KINDS)}.")] = None,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Link to this vendor id.")] = None,
    contract: Annotated[str | None, typer.Option("--contract", help="Link to this contract id.")] = None,
    warranty_until: Annotated[
        str | None, typer.Option(help="Warranty end date (YYYY-MM-DD); '' clears it.")
    ] = None,
    notes: Annotated[
        str | None, typer.Option(help="Your notes, in place of the current ones; '' clears them.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a document's title, kind, vendor, contract, warranty end or notes."""
    changes: dict[str, str | None] = {
        k: v
        for k, v in {
            "title": title,
            "kind": kind,
            "vendor_id": vendor,
            "contract_id": contract,
            "notes": notes,
        }.items()
        if v is not None
    }
    if warranty_until is not None:
        changes["warranty_until"] = warranty_until or None
    if not changes:
        raise InvalidValue("nothing to change: give at least one option")
    with unlocked(ctx) as uv:
        d = DocumentService(uv).edit(document_id, **changes)
    emit(as_json, d.to_json(), f"Updated {d.title}.")


def _document_table(*, with_kind: bool) -> Table:
    """Documents as the web page lists them: the date is the bill's issue date, else the day it was
    added; the date and the total never wrap, the title takes what room is left."""
    table = id_table("title")
    if with_kind:
        table.add_column("kind", no_wrap=True)
    table.add_column("date", no_wrap=True)
    table.add_column("total", no_wrap=True, justify="right")
    return table


def _document_row(d: DocumentRecord, *, with_kind: bool) -> list[str]:
    f = d.fields
    day = str(f.get("issue_date") or (f"{d.created_at:%Y-%m-%d}" if d.created_at else ""))
    total = f"{f['gross_total']} {f.get('currency') or ''}".strip() if f.get("gross_total") else ""
    return [d.id, d.title, *([d.kind] if with_kind else []), day, total]


@docs.command("list")
def docs_list(
    ctx: typer.Context,
    vendor: DocVendorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List documents."""
    with unlocked(ctx) as uv:
        items = DocumentService(uv).list(vendor_id=vendor)

    def text() -> None:
        wide = out.width >= 100  # below that, the kind would leave the title no room
        table = _document_table(with_kind=wide)
        for d in items:
            table.add_row(*_document_row(d, with_kind=wide))
        out.print(table)

    emit(as_json, [d.to_json() for d in items], text)


@docs.command("show")
def docs_show(ctx: typer.Context, document_id: DocumentArg, as_json: JsonOpt = False) -> None:
    """Show a document's details."""
    with unlocked(ctx) as uv:
        d = DocumentService(uv).get(document_id)

    def text() -> None:
        for k, v in d.to_json().items():
            out.print(Text.assemble((k, "bold"), f": {v}"))

    emit(as_json, d.to_json(), text)


@docs.command("get")
def docs_get(
    ctx: typer.Context,
    document_id: DocumentArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the file.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Decrypt a document's file to OUTPUT (after checking its integrity)."""
    if output.exists() and not force:
        raise InvalidValue(f"{output} exists; use --force to overwrite it")
    with unlocked(ctx) as uv:
        d, data = DocumentService(uv).content(document_id)
    output.write_bytes(data)
    emit(
        as_json, {"id": d.id, "path": str(output), "size": len(data)}, f"Wrote {len(data)} bytes to {output}."
    )


@shares.command("add")
def shares_add(
    ctx: typer.Context,
    relationship_id: RelationshipArg,
    field: Annotated[
        str,
        typer.Argument(help="The profile field it holds: TYPE or TYPE.LABEL, e.g. email or address.home."),
    ],
    purpose: Annotated[str, typer.Option(help="Why the vendor holds it, e.g. 'delivery'.")],
    until: Annotated[str | None, typer.Option(help="Until this date, YYYY-MM-DD.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that a relationship holds one of your profile fields."""
    with unlocked(ctx) as uv:
        rec = SharingService(uv).share(relationship_id, field, purpose=purpose, until=until)
    emit(as_json, rec.to_json(), f"Share {rec.id} recorded.")


@shares.command("list")
def shares_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List shares, revoked ones included."""
    with unlocked(ctx) as uv:
        items = SharingService(uv).list()

    def text() -> None:
        table = id_table("relationship", "field", "purpose", "until", "revoked")
        for r in items:
            table.add_row(r.id, r.relationship_id, r.field, r.purpose, r.until or "", r.revoked_at or "")
        out.print(table)

    emit(as_json, [r.to_json() for r in items], text)


@shares.command("revoke")
def shares_revoke(ctx: typer.Context, share_id: ShareArg, as_json: JsonOpt = False) -> None:
    """Mark a share as revoked."""
    with unlocked(ctx) as uv:
        rec = SharingService(uv).revoke(share_id)
    emit(as_json, rec.to_json(), f"Share {rec.id} revoked.")


@shares.command("holders")
def shares_holders(
    ctx: typer.Context,
    field: Annotated[
        str,
        typer.Argument(help="A profile field, e.g. email; address covers address.home and the other labels."),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Who holds my ...? The relationships that currently hold FIELD."""
    with unlocked(ctx) as uv:
        recs = SharingService(uv).holders(field)
        vs = VendorService(uv)
        rows = []
        for r in recs:
            rel = vs.relationship(r.relationship_id)
            rows.append(r.to_json() | {"vendor": vs.get(rel.vendor_id).name})

    def text() -> None:
        if not rows:
            out.print(f"No vendor holds your {field} (as far as the vault knows).")
        for r in rows:
            out.print(f"{r['vendor']}: {r['field']} for {r['purpose']}")

    emit(as_json, rows, text)
