"""`vrm rights`, `vrm move`, `vrm moves`, `vrm outbox`, `vrm mail`: GDPR requests, moves, outgoing mail.

Nothing leaves without an explicit yes: commands that send show a preview by default and send only with
``--yes`` (or after a yes in a terminal). What is sent goes through the durable outbox first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import (
    CityOpt,
    CountryOpt,
    ExtraOpt,
    JsonOpt,
    PostalCodeOpt,
    RegionOpt,
    StreetOpt,
    address_or_value,
    emit,
    err,
    id_table,
    out,
    unlocked,
)
from openvrm.cli.data_cmds import progress_bar
from openvrm.errors import InvalidValue
from openvrm.ledger.contracts import today_local
from openvrm.ledger.money import parse_date
from openvrm.moves.service import MOVABLE, MovePlan, MoveRecord, MoveService
from openvrm.outbox.service import DeliveryReport, Outbox
from openvrm.outbox.settings import TLS_MODES, clean_mail_settings, load_mail_settings, save_mail_settings
from openvrm.outbox.transport import SmtpTransport
from openvrm.rights import REQUEST_TYPES, RightsService
from openvrm.rights.letters import Letter
from openvrm.rights.service import EMAIL_NOT_LEFT, RightsRequestRecord
from openvrm.vault.core import UnlockedVault

rights = typer.Typer(
    help="GDPR requests to vendors: access, portability, rectification, erasure, restriction, objection.",
    no_args_is_help=True,
)
moves = typer.Typer(
    help="Moves already made: per-vendor status, acknowledgements, retries.", no_args_is_help=True
)
outbox = typer.Typer(
    help="Outgoing messages: what is queued, sent, failed or unconfirmed.", no_args_is_help=True
)
mail = typer.Typer(
    help="Your own SMTP server, used to send requests and notices as you.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(rights, name="rights")
    app.command("move")(move_cmd)
    app.add_typer(moves, name="moves")
    app.add_typer(outbox, name="outbox")
    app.add_typer(mail, name="mail")


YesOpt = Annotated[
    bool, typer.Option("--yes", "--send", help="Send without asking (the default is a preview).")
]
TodayOpt = Annotated[
    str | None, typer.Option("--today", help="Act as of this date (YYYY-MM-DD).", hidden=True)
]
NoteOpt = Annotated[str, typer.Option("--note", help="A note kept in the history.")]
RequestArg = Annotated[str, typer.Argument(help="The request's id, as `vrm rights list` shows it.")]
MoveArg = Annotated[str, typer.Argument(help="The move's id, as `vrm moves list` shows it.")]
MoveVendorArg = Annotated[str, typer.Argument(help="The vendor's id, as `vrm moves show MOVE_ID` lists it.")]
MessageArg = Annotated[str, typer.Argument(help="The message's id, as `vrm outbox list` shows it.")]


def _today(value: str | None) -> Any:
    return parse_date(value, "--today") if value else today_local()


def _confirmed(yes: bool, question: str) -> bool:
    """True with --yes, or after a yes in a terminal; never in non-interactive use without --yes."""
    if yes:
        return True
    if sys.stdin.isatty() and sys.stdout.isatty():
        return bool(typer.confirm(question, default=False))
    return False


def _pairs(values: list[str], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            raise InvalidValue(f"{what} is written NAME=VALUE, not {v!r}")
        found[key.strip()] = value.strip()
    return found


def _deliver(uv: UnlockedVault, *, show_progress: bool, limit: int | None = None) -> DeliveryReport:
    transport = SmtpTransport(load_mail_settings(uv))
    with progress_bar(show_progress) as bar:
        return Outbox(uv).deliver_now(transport, limit=limit, progress=lambda d, t: bar("sending", d, t))


def _report_text(r: DeliveryReport) -> None:
    out.print(f"sent {r.sent}, retrying later {r.retrying}, failed {r.failed}")
    if r.unconfirmed:
        out.print(
            Text.assemble(
                (
                    f"{r.unconfirmed} message(s) were being sent when a sender stopped and are now"
                    " unconfirmed",
                    "yellow",
                ),
                ": check whether they arrived, then `vrm outbox confirm ID` or `vrm outbox retry ID`",
            )
        )
    for mid, e in r.errors[:10]:
        out.print(f"  {mid}: {e}")


def _print_letter(letter: Letter, channel: str, contact: dict[str, Any]) -> None:
    to = {"email": contact.get("email"), "webform": contact.get("webform"), "post": contact.get("address")}
    out.print(
        Text.assemble((f"via {channel}", "bold"), f" to {' '.join(str(to.get(channel) or '').split())}")
    )
    out.print(Text.assemble(("Subject:", "bold"), f" {letter.subject}\n"))
    out.print(letter.body, markup=False)


# -- vrm mail ---------------------------------------------------------------------------------------------


@mail.command("setup")
def mail_setup(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Your provider's SMTP server, e.g. smtp.example.org.")],
    from_addr: Annotated[
        str, typer.Option("--from", help="Your e-mail address (the From of every message).")
    ],
    port: Annotated[int | None, typer.Option(help="Port (default: 587 starttls, 465 tls, 25 none).")] = None,
    tls: Annotated[str, typer.Option(help=f"Encryption: {', '.join(TLS_MODES)}.")] = "starttls",
    username: Annotated[str | None, typer.Option(help="Login name, if the server asks for one.")] = None,
    from_name: Annotated[str | None, typer.Option(help="Your name as shown to recipients.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Save your SMTP server, sealed in the vault.

    The password comes from OPENVRM_SMTP_PASSWORD or a hidden prompt.
    """
    password = os.environ.get("OPENVRM_SMTP_PASSWORD")
    if username and password is None:
        if not sys.stdin.isatty():
            raise InvalidValue("a username needs a password: set OPENVRM_SMTP_PASSWORD or run in a terminal")
        password = str(typer.prompt("SMTP password", hide_input=True))
    settings = clean_mail_settings(
        host=host,
        port=port,
        tls=tls,
        from_addr=from_addr,
        username=username,
        password=password,
        from_name=from_name,
    )
    with unlocked(ctx) as uv:
        save_mail_settings(uv, settings)
    emit(
        as_json, settings.to_json(), f"mail goes out through {settings.host}:{settings.port} ({settings.tls})"
    )


@mail.command("show")
def mail_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the SMTP settings (the password is never printed)."""
    with unlocked(ctx) as uv:
        settings = load_mail_settings(uv)
    d = settings.to_json()
    emit(as_json, d, "\n".join(f"{k}: {v}" for k, v in d.items()))


# -- vrm rights -------------------------------------------------------------------------------------------


def _request_text(r: RightsRequestRecord, today: Any) -> None:
    dl = r.deadline
    out.print(
        Text.assemble(
            (r.kind, "bold"),
            f" (Art. {r.article}) to {r.vendor_name} ({r.id}): {r.status(today)}, via {r.channel}",
            f", answer due {dl}" if dl else "",
        )
    )


@rights.command("request")
def rights_request(
    ctx: typer.Context,
    vendor: Annotated[str, typer.Argument(help="Vendor id (`vrm vendors list`) or directory slug.")],
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(REQUEST_TYPES)}.")],
    lang: Annotated[str | None, typer.Option("--lang", help="Letter language: en, fr or de.")] = None,
    via: Annotated[str | None, typer.Option("--via", help="email, post or webform.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Send to this e-mail address instead.")] = None,
    details: Annotated[str, typer.Option(help="What to correct, what you dispute, ...")] = "",
    element: Annotated[
        list[str] | None,
        typer.Option("--element", help="An identity element: 'Kundennummer=123'. Repeatable."),
    ] = None,
    yes: YesOpt = False,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Also write the letter as a PDF here.")] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a GDPR request (a draft) and preview it; with --yes, send it at once."""
    day = _today(today)
    with unlocked(ctx) as uv:
        svc = RightsService(uv)
        rec = svc.create(
            vendor,
            kind,
            language=lang,
            channel=via,
            to=to,
            details=details,
            elements=_pairs(element or [], "--element"),
        )
        letter = svc.letter(rec.id, today=day)
        if pdf is not None:
            try:
                pdf.write_bytes(letter.pdf())
            except OSError:
                svc.discard(rec.id)  # the command failed: leave no draft behind (a rerun made a second)
                raise
        sent, report = _maybe_send(uv, svc, rec, yes, day, as_json)
    _show_sent(as_json, sent, letter, report, day)


def _maybe_send(
    uv: UnlockedVault, svc: RightsService, rec: RightsRequestRecord, yes: bool, day: Any, as_json: bool
) -> tuple[RightsRequestRecord, DeliveryReport | None]:
    if not as_json:
        _print_letter(svc.letter(rec.id, today=day), rec.channel, rec.contact)
    question = {
        "email": f"Send this e-mail to {rec.contact.get('email')}?",
        "post": "Mark this letter as posted (write it with --pdf)?",
        "webform": f"Mark as submitted through {rec.contact.get('webform')}?",
    }[rec.channel]
    if not _confirmed(yes, question):
        if not as_json:
            err.print(f"preview only: nothing sent. Send it with `vrm rights send {rec.id} --yes`.")
        return rec, None
    rec = svc.send(rec.id, today=day)
    report = _deliver(uv, show_progress=False) if rec.channel == "email" else None
    return svc.get(rec.id), report


def _show_sent(
    as_json: bool, rec: RightsRequestRecord, letter: Letter, report: DeliveryReport | None, day: Any
) -> None:
    data = rec.to_json(day) | {"letter": letter.to_json(), "delivery": report.to_json() if report else None}

    def text() -> None:
        _request_text(rec, day)
        if report is not None:
            _report_text(report)

    emit(as_json, data, text)


@rights.command("send")
def rights_send(
    ctx: typer.Context,
    request_id: RequestArg,
    yes: YesOpt = False,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write the letter as a PDF here.")] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a draft request (a preview without --yes).

    E-mail goes through the outbox; a letter (--pdf) is yours to post.
    """
    day = _today(today)
    with unlocked(ctx) as uv:
        svc = RightsService(uv)
        rec = svc.get(request_id)
        letter = svc.letter(rec.id, today=day)
        if pdf is not None:
            pdf.write_bytes(letter.pdf())
        sent, report = _maybe_send(uv, svc, rec, yes, day, as_json)
    _show_sent(as_json, sent, letter, report, day)


@rights.command("list")
def rights_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only requests in this state.")] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List GDPR requests with their state and deadline."""
    day = _today(today)
    with unlocked(ctx) as uv:
        svc = RightsService(uv)
        items = svc.list(status=status, today=day)
        emails = svc.email_states(items)

    def text() -> None:
        if not items:
            out.print(
                f"No request is {status}."
                if status
                else "No requests yet. Write one with `vrm rights request VENDOR access`."
            )
            return
        table = id_table("vendor", "request", "via", "status", "sent", "deadline")
        for r in items:
            table.add_row(
                r.id,
                r.vendor_name,
                r.kind,
                _via(r.channel, emails.get(r.id)),
                r.status(day),
                r.sent_on or "",
                str(r.deadline or ""),
            )
        out.print(table)

    emit(as_json, [r.to_json(day) | {"email_status": emails.get(r.id)} for r in items], text)


def _via(channel: str, email: str | None) -> str:
    """The channel, and for an e-mail that has not left yet, where it stands (a queued request is sent)."""
    if email is None or email == "sent":
        return channel
    return f"{channel} ({EMAIL_NOT_LEFT.get(email, email)})"


@rights.command("show")
def rights_show(
    ctx: typer.Context,
    request_id: RequestArg,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write the letter as a PDF here.")] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a request: its letter, state, deadline and history."""
    day = _today(today)
    with unlocked(ctx) as uv:
        svc = RightsService(uv)
        rec = svc.get(request_id)
        letter = svc.letter(request_id, today=day)
        delivery = Outbox(uv).get(rec.outbox_id).to_json() if rec.outbox_id else None
    if pdf is not None:
        pdf.write_bytes(letter.pdf())

    def text() -> None:
        _request_text(rec, day)
        if delivery:
            out.print(f"e-mail: {delivery['status']} (Message-ID {delivery['message_id']})")
        for e in rec.events:
            out.print(
                f"  {e['at'][:16].replace('T', ' ')}  {e['event']}  {e.get('note') or ''}", markup=False
            )
        out.print()
        _print_letter(letter, rec.channel, rec.contact)

    emit(as_json, rec.to_json(day) | {"letter": letter.to_json(), "delivery": delivery}, text)


def _simple(ctx: typer.Context, action: str, request_id: str, note: str, as_json: bool) -> None:
    with unlocked(ctx) as uv:
        rec = getattr(RightsService(uv), action)(request_id, note)
    day = today_local()
    emit(as_json, rec.to_json(day), lambda: _request_text(rec, day))


@rights.command("ack")
def rights_ack(
    ctx: typer.Context,
    request_id: RequestArg,
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """The vendor acknowledged the request."""
    _simple(ctx, "acknowledge", request_id, note, as_json)


@rights.command("extend")
def rights_extend(
    ctx: typer.Context,
    request_id: RequestArg,
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """The vendor invoked the two-month extension (Art. 12(3)): the deadline moves."""
    _simple(ctx, "extend", request_id, note, as_json)


@rights.command("close")
def rights_close(
    ctx: typer.Context,
    request_id: RequestArg,
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Close a request (satisfied, or given up)."""
    _simple(ctx, "close", request_id, note, as_json)


@rights.command("discard")
def rights_discard(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="The draft's id, as `vrm rights list` shows it.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete a draft request that was never sent."""
    with unlocked(ctx) as uv:
        RightsService(uv).discard(request_id)
    emit(as_json, {"discarded": request_id}, f"Discarded draft {request_id}.")


@rights.command("answer")
def rights_answer(
    ctx: typer.Context,
    request_id: RequestArg,
    files: Annotated[
        list[Path], typer.Argument(help="The vendor's answer and data: ZIP, CSV, JSON, PDF, e-mail.")
    ],
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Record the vendor's answer; its files (and each file in a ZIP) become documents in the vault."""
    loaded = [(f.name, f.read_bytes()) for f in files]
    with unlocked(ctx) as uv:
        result = RightsService(uv).answer(request_id, loaded, note=note)

    def text() -> None:
        _request_text(result.request, today_local())
        for o in result.outcomes:
            out.print(f"  {o.status:<9} {o.path}" + (f" ({o.reason})" if o.reason else ""), markup=False)

    emit(as_json, result.to_json(), text)


@rights.command("escalate")
def rights_escalate(
    ctx: typer.Context,
    request_id: RequestArg,
    authority: Annotated[str | None, typer.Option(help="Authority slug (default: your country's).")] = None,
    via: Annotated[str | None, typer.Option("--via", help="email, post or webform.")] = None,
    pdf: Annotated[
        Path | None, typer.Option("--pdf", help="Write the complaint and history as a PDF here.")
    ] = None,
    yes: YesOpt = False,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Complain to the supervisory authority, with the request's history attached (preview without --yes)."""
    day = _today(today)
    with unlocked(ctx) as uv:
        svc = RightsService(uv)
        preview = svc.escalate(request_id, authority=authority, channel=via, today=day, send=False)
        if pdf is not None:
            pdf.write_bytes(preview.history_pdf)
        if not as_json:
            auth = preview.authority
            _print_letter(preview.letter, preview.channel, {"email": auth.email, "webform": auth.webform,
                                                             "address": auth.address})  # fmt: skip
        report = None
        result = preview
        if _confirmed(yes, f"Send this complaint to {preview.authority.name}?"):
            result = svc.escalate(request_id, authority=authority, channel=via, today=day)
            if result.channel == "email":
                report = _deliver(uv, show_progress=False)
        elif not as_json:
            err.print("preview only: nothing sent. Add --yes to send the complaint.")
    data = result.to_json() | {"delivery": report.to_json() if report else None}
    emit(as_json, data, lambda: _request_text(result.request, day))


# -- vrm move / vrm moves ---------------------------------------------------------------------------------


def move_cmd(
    ctx: typer.Context,
    field: Annotated[
        str, typer.Argument(help=f"One of {', '.join(MOVABLE)}, or a labelled one such as address.home.")
    ],
    value: Annotated[
        str | None, typer.Argument(help="The new value (for an address, use the options).")
    ] = None,
    street: StreetOpt = None,
    extra: ExtraOpt = None,
    postal_code: PostalCodeOpt = None,
    city: CityOpt = None,
    region: RegionOpt = None,
    country: CountryOpt = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Do not notify this vendor id.")
    ] = None,
    contact: Annotated[
        list[str] | None,
        typer.Option("--contact", help="VENDOR_ID=EMAIL for a vendor with no known contact."),
    ] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="Write every notice in en, fr or de.")] = None,
    letters: Annotated[
        Path | None, typer.Option("--letters", help="Write the letters to post into this folder.")
    ] = None,
    yes: YesOpt = False,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a profile field once and notify every vendor that holds the old value.

    Shows the vendors and changes nothing without --yes.
    """
    parts = {"street": street, "extra": extra, "postal_code": postal_code, "city": city, "region": region,
             "country": country}  # fmt: skip
    usage = f"give the new value: vrm move {field} VALUE"
    raw = address_or_value(field, value, parts, no_value=usage, stray_parts=usage)
    day = _today(today)
    contacts = _pairs(contact or [], "--contact")
    with unlocked(ctx) as uv:
        svc = MoveService(uv)
        plan = svc.plan(field, raw, contacts=contacts, language=lang, today=day)
        if not as_json:
            _print_plan(plan, set(exclude or []))
        if not _confirmed(yes, "Change the field and notify these vendors?"):
            if as_json:
                emit(True, plan.to_json() | {"sent": False})
            else:
                err.print("preview only: nothing changed or sent. Add --yes to make the move.")
            return
        move = svc.start(field, raw, exclude=exclude or [], contacts=contacts, language=lang, today=day)
        report = (
            _deliver(uv, show_progress=not as_json)
            if any(n.channel == "email" for n in move.notices)
            else None
        )
        move = svc.get(move.id, with_errors=True)
        written = _write_letters(svc, move, letters) if letters is not None else []
    data = move.to_json() | {
        "delivery": report.to_json() if report else None,
        "letters": [str(p) for p in written],
    }

    def text() -> None:
        _print_move(move)
        if report is not None:
            _report_text(report)
        if written:
            out.print(f"{len(written)} letter(s) to post written to {letters}")

    emit(as_json, data, text)


def _print_plan(plan: MovePlan, excluded: set[str]) -> None:
    from openvrm.profile.fields import display

    out.print(Text.assemble((plan.field, "bold"), f": {display(plan.old)} -> {display(plan.new)}"))
    if not plan.candidates:
        out.print("No vendor is known to hold the old value.")
        return
    table = Table("vendor id", "vendor", "why", "channel", "to", "")
    for c in plan.candidates:
        note = "skipped" if c.vendor_id in excluded else (c.missing or "")
        table.add_row(c.vendor_id, c.vendor_name, ", ".join(c.reasons)[:60], c.channel, c.to or "", note)
    out.print(table)


def _print_move(move: MoveRecord) -> None:
    out.print(f"move {move.id}: {move.field} changed on {move.on}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(move.summary().items()))
    out.print(f"summary: {summary or 'no vendors'}")
    table = Table("vendor id", "vendor", "channel", "status", "note")
    for n in move.notices:
        table.add_row(n.vendor_id, n.vendor_name, n.channel, n.status, n.last_error or n.missing or "")
    out.print(table)


def _write_letters(svc: MoveService, move: MoveRecord, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for n in move.notices:
        if n.channel == "post" and n.status == "to-post":
            path = folder / f"move-{move.id[:12]}-{n.vendor_id[:12]}.pdf"
            path.write_bytes(svc.letter(move.id, n.vendor_id).pdf())
            written.append(path)
    return written


@moves.command("list")
def moves_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List moves with a per-status summary."""
    with unlocked(ctx) as uv:
        items = MoveService(uv).list()

    def text() -> None:
        if not items:
            out.print("No moves yet. Make one with `vrm move FIELD VALUE`.")
        for m in items:
            out.print(
                f"{m.id}  {m.on}  {m.field}  " + ", ".join(f"{k} {v}" for k, v in sorted(m.summary().items()))
            )

    emit(as_json, [m.to_json() for m in items], text)


@moves.command("show")
def moves_show(
    ctx: typer.Context,
    move_id: MoveArg,
    letters: Annotated[
        Path | None, typer.Option("--letters", help="Write the letters to post into this folder.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-vendor status of a move (pending, sent, acknowledged, failed, ...), with errors."""
    with unlocked(ctx) as uv:
        svc = MoveService(uv)
        move = svc.get(move_id, with_errors=True)
        written = _write_letters(svc, move, letters) if letters is not None else []
    emit(as_json, move.to_json() | {"letters": [str(p) for p in written]}, lambda: _print_move(move))


@moves.command("ack")
def moves_ack(
    ctx: typer.Context,
    move_id: MoveArg,
    vendor_id: MoveVendorArg,
    as_json: JsonOpt = False,
) -> None:
    """The vendor confirmed the change."""
    with unlocked(ctx) as uv:
        move = MoveService(uv).acknowledge(move_id, vendor_id)
    emit(as_json, move.to_json(), lambda: _print_move(move))


@moves.command("posted")
def moves_posted(
    ctx: typer.Context,
    move_id: MoveArg,
    vendor_id: MoveVendorArg,
    as_json: JsonOpt = False,
) -> None:
    """You posted the letter to this vendor."""
    with unlocked(ctx) as uv:
        move = MoveService(uv).posted(move_id, vendor_id)
    emit(as_json, move.to_json(), lambda: _print_move(move))


@moves.command("retry")
def moves_retry(
    ctx: typer.Context,
    move_id: MoveArg,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue the failed notices of a move again and send them (with --yes)."""
    with unlocked(ctx) as uv:
        svc = MoveService(uv)
        failed = [n for n in svc.get(move_id).notices if n.status == "failed"]
        if not _confirmed(yes, f"Send {len(failed)} failed notice(s) again?"):
            emit(
                as_json,
                {"failed": len(failed), "sent": False},
                f"{len(failed)} failed; add --yes to send again",
            )
            return
        svc.retry_failed(move_id)
        report = _deliver(uv, show_progress=not as_json)
        move = svc.get(move_id, with_errors=True)

    def text() -> None:
        _print_move(move)
        _report_text(report)

    emit(as_json, move.to_json() | {"delivery": report.to_json()}, text)


# -- vrm outbox -------------------------------------------------------------------------------------------


@outbox.command("list")
def outbox_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only messages in this state.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List outgoing messages with status, attempts and last error."""
    with unlocked(ctx) as uv:
        items = Outbox(uv).list(status=status)

    def text() -> None:
        if not items:
            out.print("The outbox is empty.")
            return
        table = id_table("status", "tries", "to", "subject", "error")
        for m in items:
            table.add_row(m.id, m.status, f"{m.attempts}/{m.max_attempts}", ", ".join(m.to), m.subject[:50],
                          (m.last_error or "")[:60])  # fmt: skip
        out.print(table)

    emit(as_json, [m.to_json() for m in items], text)


@outbox.command("send")
def outbox_send(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliver the messages that are due (each was confirmed when it was queued)."""
    with unlocked(ctx) as uv:
        report = _deliver(uv, show_progress=not as_json, limit=limit)
    emit(as_json, report.to_json(), lambda: _report_text(report))


@outbox.command("retry")
def outbox_retry(ctx: typer.Context, message_id: MessageArg, as_json: JsonOpt = False) -> None:
    """Queue a failed or unconfirmed message again (it may then arrive twice: your choice)."""
    with unlocked(ctx) as uv:
        m = Outbox(uv).retry(message_id)
    emit(as_json, m.to_json(), f"{m.id} queued again; `vrm outbox send` delivers it")


@outbox.command("confirm")
def outbox_confirm(ctx: typer.Context, message_id: MessageArg, as_json: JsonOpt = False) -> None:
    """An unconfirmed message did arrive: mark it sent."""
    with unlocked(ctx) as uv:
        m = Outbox(uv).confirm(message_id)
    emit(as_json, m.to_json(), f"{m.id} marked sent")


@outbox.command("cancel")
def outbox_cancel(ctx: typer.Context, message_id: MessageArg, as_json: JsonOpt = False) -> None:
    """Do not send a queued, failed or unconfirmed message."""
    with unlocked(ctx) as uv:
        m = Outbox(uv).cancel(message_id)
    emit(as_json, m.to_json(), f"{m.id} cancelled")
