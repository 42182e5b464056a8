"""`vrm conformance`: check a vendor, or a person's agent, against the openvrm protocol 0.1.

Exit code 0 when every check passed (skips allowed), 1 when any failed. See docs/conformance.md.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import JsonOpt, emit, err, out
from openvrm.conformance import Check, Progress, Report, check_vendor
from openvrm.net import UrlPolicy

conformance = typer.Typer(
    help="Check a vendor or a person's agent against the protocol (see docs/conformance.md).",
    no_args_is_help=True,
)

_MARK = {"pass": Text("pass", "green"), "fail": Text("FAIL", "bold red"), "skip": Text("skip", "yellow")}


def register(app: typer.Typer) -> None:
    app.add_typer(conformance, name="conformance")


def _progress(as_json: bool) -> Progress:
    def show(check: Check) -> None:
        if not as_json:
            err.print(Text.assemble("  ", _MARK[check.outcome], " ", check.name))

    return show


def _render(report: Report) -> None:
    table = Table(title=f"{report.kind} conformance: {report.target}")
    table.add_column("check")
    table.add_column("§", justify="right")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        table.add_row(c.name, c.section, _MARK[c.outcome], c.detail)
    out.print(table)
    counts = report.counts()
    verdict = Text("conforms", "green") if report.ok else Text("does not conform", "bold red")
    out.print(
        Text.assemble(
            verdict, f": {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
        )
    )


def _finish(as_json: bool, report: Report) -> None:
    emit(as_json, report.to_json(), lambda: _render(report))
    if not report.ok:
        raise typer.Exit(1)


@conformance.command("vendor")
def vendor_cmd(
    url: Annotated[str, typer.Argument(help="The vendor's site or its /.well-known/vrm URL.")],
    allow_loopback: Annotated[
        bool, typer.Option("--allow-loopback", help="Allow a vendor on this machine (http://127.0.0.1).")
    ] = False,
    agent_url: Annotated[
        str | None,
        typer.Option("--agent-url", help="Base of the agent URLs in the proffers.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Act as a fresh person's agent against a vendor and check every answer."""
    if not as_json:
        err.print(f"checking the vendor at {url}")
    report = check_vendor(
        url,
        policy=UrlPolicy(allow_loopback=allow_loopback),
        agent_url=agent_url,
        progress=_progress(as_json),
    )
    _finish(as_json, report)


@conformance.command("agent")
def agent_cmd(
    host: Annotated[str, typer.Option("--host", help="Address the conformance vendor listens on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="Port (0: a free one).", min=0, max=65535)] = 0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for an agent to connect.", min=1)
    ] = 300,
    as_json: JsonOpt = False,
) -> None:
    """Start a conformance vendor, wait for your agent to connect to it, then check your agent."""
    from openvrm.conformance.live import check_agent

    def ready(url: str) -> None:
        err.print(f"connect your agent to {url}")
        err.print(f"(waiting up to {timeout:g} s; Ctrl-C to stop)")

    report = check_agent(
        host=host,
        port=port,
        timeout=timeout,
        policy=UrlPolicy(allow_loopback=True),
        on_ready=ready,
        progress=_progress(as_json),
    )
    _finish(as_json, report)
