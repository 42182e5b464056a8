"""Three reference vendors for the demo, mountable inside the person's server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount

from openvrm.vendor.app import create_vendor_app
from openvrm.vendor.config import VendorConfig

REFERENCE_VENDORS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("telco", "Example Telco", ("service-delivery-plus-portability", "service-delivery-only"), True),
    ("energy", "Example Energy", ("service-delivery-only", "no-ai-training"), True),
    ("books", "Example Books", ("goods-and-services-only",), False),
)
"""(slug, name, accepted terms in order of preference, answer with an alternative)."""

INTENT_TERMS: dict[str, tuple[str, ...]] = {"telco": ("intent-only",), "energy": ("intent-only",)}
"""Terms a vendor also accepts when it answers intents (with a relay): ``intent-only`` is what an intent
carries by default, and a rule only answers an intent whose terms the vendor accepts."""

REFERENCE_RULES: dict[str, list[dict[str, Any]]] = {
    "telco": [
        {
            "category": "telecom.mobile",
            "country": ["FR"],
            "offer": {
                "price": "12.99",
                "currency": "EUR",
                "per": "month",
                "includes": ["60 GB in France", "calls and texts unlimited"],
                "features": {"data_gb": "60", "esim": "yes"},
                "conditions": "Cancel any month.",
                "contract_months": 0,
                "valid_days": 7,
            },
        },
        {
            "category": "telecom.broadband",
            "country": ["FR"],
            "offer": {
                "price": "29.99",
                "currency": "EUR",
                "per": "month",
                "includes": ["fibre up to 1 Gb/s", "router included"],
                "features": {"speed_mbps": "1000"},
                "conditions": "Cancel any month; the router goes back within 30 days.",
                "contract_months": 0,
                "valid_days": 7,
            },
        },
    ],
    "energy": [
        {
            "category": "energy.electricity",
            "offer": {
                "price": "79.00",
                "currency": "EUR",
                "per": "month",
                "includes": ["100% renewable electricity", "monthly bill, yearly adjustment"],
                "features": {"green": "yes"},
                "conditions": "Price fixed for 12 months.",
                "contract_months": 0,
                "valid_days": 14,
            },
        },
        {
            "category": "energy",
            "offer": {
                "price": "65.00",
                "currency": "EUR",
                "per": "month",
                "includes": ["gas and electricity from one supplier"],
                "conditions": "Price fixed for 12 months.",
                "contract_months": 0,
                "valid_days": 14,
            },
        },
    ],
    "books": [],
}
"""The rules each reference vendor answers intents with (books answers by hand: no rules)."""

REFERENCE_SUBSCRIPTIONS: dict[str, tuple[list[dict[str, Any]], bool]] = {
    "telco": ([{"categories": ["telecom.mobile", "telecom.broadband"], "regions": ["FR"]}], True),
    "energy": ([{"categories": ["energy"]}], True),
    "books": ([{"categories": ["media"]}], False),
}
"""(subscriptions, webhook) per vendor: books has no webhook and reads the relay's feed."""

MOUNT_PREFIX = "/demo-vendors"


def reference_configs(base_url: str, store_dir: Path, *, allow_loopback: bool = True) -> list[VendorConfig]:
    base = base_url.rstrip("/")
    return [
        VendorConfig(
            name=name,
            base_url=f"{base}{MOUNT_PREFIX}/{slug}",
            store_dir=Path(store_dir) / slug,
            accepted_terms=terms,
            alternative=alternative,
            privacy_contact=f"privacy@{slug}.example",
            allow_loopback=allow_loopback,
        )
        for slug, name, terms, alternative in REFERENCE_VENDORS
    ]


def write_reference_rules(config: VendorConfig, slug: str) -> None:
    """Write the vendor's reference rules file unless the vendor already has one (edits are kept)."""
    from openvrm.vendor.rules import rules_document

    if not config.rules_file.exists():
        config.rules_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.rules_file.write_text(rules_document(REFERENCE_RULES.get(slug, [])), encoding="utf-8")


def mount_reference_vendors(
    base_url: str,
    store_dir: Path,
    *,
    allow_loopback: bool = True,
    relay_url: str | None = None,
    register_in_background: bool = True,
) -> list[tuple[str, FastAPI]]:
    """``(mount path, app)`` for each reference vendor, e.g. ``("/demo-vendors/telco", app)``.

    Mount each app at its path in the server reachable at ``base_url`` (``app.mount(path, vendor_app)``);
    each vendor keeps its key, store and rules in ``store_dir/<slug>``.

    With ``relay_url`` each vendor gets ``app.state.relay_registration``
    (:class:`~openvrm.vendor.relay_client.RelayRegistration`): it registers at the relay (telco and energy
    with a webhook to their own ``/vrm/relay-hook``, books pull-only) and subscribes. Mounted apps get no
    lifespan events, so this runs in a daemon thread that retries until the server answers
    (``register_in_background``), and :func:`ensure_relay_registration` does it now, for tests.
    """
    mounted = []
    for config in reference_configs(base_url, store_dir, allow_loopback=allow_loopback):
        slug = config.base_url.rsplit("/", 1)[-1]
        if relay_url is not None:
            config.relay_url = relay_url.rstrip("/")
            extra = [t for t in INTENT_TERMS.get(slug, ()) if t not in config.accepted_terms]
            config.accepted_terms = (*config.accepted_terms, *extra)
        config.save()  # so `vrm vendor ... --store <store_dir>/<slug>` can act as this vendor
        write_reference_rules(config, slug)
        vendor_app = create_vendor_app(config)
        if relay_url is not None:
            from openvrm.vendor.relay_client import RelayRegistration

            subscriptions, webhook = REFERENCE_SUBSCRIPTIONS.get(slug, ([], False))
            registration = RelayRegistration(
                vendor_app.state.kit, relay_url.rstrip("/"), subscriptions, webhook=webhook
            )
            vendor_app.state.relay_registration = registration
            if register_in_background:
                registration.start()
        mounted.append((f"{MOUNT_PREFIX}/{slug}", vendor_app))
    return mounted


def ensure_relay_registration(apps: FastAPI | Sequence[FastAPI]) -> dict[str, bool]:
    """Register every mounted demo vendor at its relay now; ``{vendor name: registered}``.

    ``apps`` is the person's server app (its mounts are searched) or the vendor apps themselves.
    """
    found: list[Any] = []
    candidates = [apps] if isinstance(apps, FastAPI) else list(apps)
    for app in candidates:
        found.append(app)
        found.extend(route.app for route in app.routes if isinstance(route, Mount))
    out: dict[str, bool] = {}
    for app in found:
        registration = getattr(getattr(app, "state", None), "relay_registration", None)
        if registration is not None:
            out[registration.kit.config.name] = registration.ensure()
    return out
