"""Three reference vendors for the demo, mountable inside the person's server."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from openvrm.vendor.app import create_vendor_app
from openvrm.vendor.config import VendorConfig

REFERENCE_VENDORS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("telco", "Example Telco", ("service-delivery-plus-portability", "service-delivery-only"), True),
    ("energy", "Example Energy", ("service-delivery-only", "no-ai-training"), True),
    ("books", "Example Books", ("goods-and-services-only",), False),
)
"""(slug, name, accepted terms in order of preference, answer with an alternative)."""

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


def mount_reference_vendors(
    base_url: str, store_dir: Path, *, allow_loopback: bool = True
) -> list[tuple[str, FastAPI]]:
    """``(mount path, app)`` for each reference vendor, e.g. ``("/demo-vendors/telco", app)``.

    Mount each app at its path in the server reachable at ``base_url`` (``app.mount(path, vendor_app)``);
    each vendor keeps its key and store in ``store_dir/<slug>``.
    """
    mounted = []
    for config in reference_configs(base_url, store_dir, allow_loopback=allow_loopback):
        config.save()  # so `vrm vendor ... --store <store_dir>/<slug>` can act as this vendor
        slug = config.base_url.rsplit("/", 1)[-1]
        mounted.append((f"{MOUNT_PREFIX}/{slug}", create_vendor_app(config)))
    return mounted
