"""`vrm relay`: run an intentcasting relay (docs/relay.md) and look at what it holds.

The relay keeps its key, database and configuration in one folder (``--store``, default ``./vrm-relay`` or
``OPENVRM_RELAY_STORE``); ``--database-url`` puts the tables in PostgreSQL instead of the SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from openvrm.cli.context import JsonOpt, emit, out
from openvrm.relay.config import CONFIG_FILE, DEFAULT_STORE_DIR, RelayConfig, RelayLimits

relay = typer.Typer(
    help="Run an intent relay: people's intents in, vendors' sealed offers back (see docs/relay.md).",
    no_args_is_help=True,
)

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="OPENVRM_RELAY_STORE",
        help="The relay's folder (key, SQLite database, configuration). Env: OPENVRM_RELAY_STORE.",
    ),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="OPENVRM_RELAY_DATABASE_URL",
        help="A postgresql+psycopg:// URL for the relay's tables (default: SQLite in the store). "
        "Env: OPENVRM_RELAY_DATABASE_URL.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(relay, name="relay")


def _say(text: str) -> None:
    out.print(text, markup=False, emoji=False)


def _config(store: Path, database_url: str | None) -> RelayConfig:
    config = RelayConfig.load(store)
    if database_url:
        config.store_url = database_url
    return config


@relay.command("serve")
def serve_cmd(
    name: Annotated[str | None, typer.Option(help="The relay's name (kept in the store).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8790,
    store: StoreOpt = DEFAULT_STORE_DIR,
    database_url: DatabaseOpt = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="The public URL (default http://HOST:PORT).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, max=64, help="Webhook delivery threads.")] = 2,
    allow_loopback: Annotated[
        bool, typer.Option("--allow-loopback", help="Allow webhooks on 127.0.0.1 (tests and demos).")
    ] = False,
) -> None:
    """Serve the relay API with uvicorn and deliver webhooks with worker threads."""
    import uvicorn

    from openvrm.relay.app import create_relay_app

    saved = RelayConfig.load(store) if (store / CONFIG_FILE).exists() else None
    config = RelayConfig(
        name=name or (saved.name if saved else "openvrm relay"),
        base_url=base_url or f"http://{host}:{port}",
        store_dir=store,
        store_url=database_url or (saved.store_url if saved else None),
        key_path=saved.key_path if saved else None,
        allow_loopback=allow_loopback,
        limits=saved.limits if saved else RelayLimits(),
    )
    config.save()
    app = create_relay_app(config, workers=workers)
    _say(f"{config.name} is serving at {config.base_url} (discovery: /.well-known/vrm-relay)")
    _say(f"relay key: {app.state.relay.did}; {workers} delivery worker(s)")
    uvicorn.run(app, host=host, port=port, log_level="info")


@relay.command("stats")
def stats_cmd(
    store: StoreOpt = DEFAULT_STORE_DIR,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Vendors, subscriptions, open intents and deliveries by status."""
    from openvrm.relay.service import Relay

    core = Relay(_config(store, database_url))
    try:
        data: dict[str, Any] = core.stats()
    finally:
        core.close()

    def text() -> None:
        d = data["deliveries"]
        _say(f"vendors: {data['vendors']}")
        _say(f"subscriptions: {data['subscriptions']}")
        _say(f"open intents: {data['open_intents']} (all: {sum(data['intents'].values())})")
        _say(f"offers: {data['offers']}")
        _say(
            "deliveries: "
            + ", ".join(f"{status} {d[status]}" for status in ("pending", "delivered", "failed", "pull-only"))
        )

    emit(as_json, data, text)
