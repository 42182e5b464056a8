"""`vrm profile`: personal data fields with their history."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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
    out,
    unlocked,
)
from openvrm.profile.fields import FIELD_TYPES, display
from openvrm.profile.service import ProfileService

profile = typer.Typer(
    help="Your personal data: names, e-mails, phones, addresses, birth date, IBAN, numbers. "
    "Every change is kept.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(profile, name="profile")


@profile.command("set")
def set_field(
    ctx: typer.Context,
    field: Annotated[
        str, typer.Argument(help="Field name: TYPE or TYPE.LABEL, e.g. email.work (see `vrm profile types`).")
    ],
    value: Annotated[str | None, typer.Argument(help="The value (for an address, use the options).")] = None,
    street: StreetOpt = None,
    extra: ExtraOpt = None,
    postal_code: PostalCodeOpt = None,
    city: CityOpt = None,
    region: RegionOpt = None,
    country: CountryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a profile field. The old value stays in the history.

    Examples: `vrm profile set email me@example.org`, `vrm profile set phone "+33 6 12 34 56 78"`,
    `vrm profile set address.home --street "1 rue de la Paix" --postal-code 75002 --city Paris --country FR`.
    """
    parts = {"street": street, "extra": extra, "postal_code": postal_code, "city": city, "region": region,
             "country": country}  # fmt: skip
    raw = address_or_value(
        field,
        value,
        parts,
        no_value=f"a value is needed: vrm profile set {field} VALUE",
        stray_parts="address options are only for address fields",
    )
    with unlocked(ctx) as uv:
        change = ProfileService(uv).set(field, raw)
    emit(as_json, change.to_json(), f"{change.field} = {display(change.value or '')}")


@profile.command("get")
def get_field(
    ctx: typer.Context,
    field: Annotated[str | None, typer.Argument(help="One field; all fields when omitted.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the current value of one field, or the whole profile."""
    with unlocked(ctx) as uv:
        svc = ProfileService(uv)
        if field is not None:
            value = svc.get(field)
            emit(as_json, {"field": field, "value": value}, display(value))
            return
        fields = svc.current()

    def text() -> None:
        if not fields:
            out.print("The profile is empty. Add a field with `vrm profile set`.")
            return
        table = Table("field", "value")
        for k, v in fields.items():
            table.add_row(k, display(v))
        out.print(table)

    emit(as_json, fields, text)


@profile.command("unset")
def unset_field(
    ctx: typer.Context,
    field: Annotated[
        str, typer.Argument(help="The field to remove, e.g. email.work (see `vrm profile get`).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Remove a field from the current profile (its history is kept)."""
    with unlocked(ctx) as uv:
        change = ProfileService(uv).unset(field)
    emit(as_json, change.to_json(), f"{change.field} removed")


@profile.command("history")
def history(
    ctx: typer.Context,
    field: Annotated[str | None, typer.Argument(help="One field; every change when omitted.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every change to the profile (or to one field), oldest first."""
    with unlocked(ctx) as uv:
        changes = ProfileService(uv).history(field)

    def text() -> None:
        table = Table("when", "field", "change", "value")
        for c in changes:
            table.add_row(f"{c.at:%Y-%m-%d %H:%M:%S}", c.field, c.action, display(c.value) if c.value else "")
        out.print(table)

    emit(as_json, [c.to_json() for c in changes], text)


@profile.command("types")
def types(as_json: JsonOpt = False) -> None:
    """List the field types and what each holds."""
    data = [
        {"type": t.name, "description": t.description, "needs_label": t.needs_label}
        for t in FIELD_TYPES.values()
    ]

    def text() -> None:
        table = Table("type", "holds", "label")
        for t in FIELD_TYPES.values():
            table.add_row(t.name, t.description, "required" if t.needs_label else "optional")
        out.print(table)

    emit(as_json, data, text)
