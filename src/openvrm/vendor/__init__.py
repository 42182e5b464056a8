"""The vendor kit: what a company runs to meet people's VRM agents (the nut for the bolt).

* :class:`VendorConfig`: name, public URL, store, key, accepted terms;
* :class:`VendorKit`: the core (answer proffers, countersign agreements, keep the ledger, push receipts,
  notices and data requests, fetch granted data), free of any web framework;
* :func:`create_vendor_app`: the ASGI application (discovery, relationship, ledger, r-button);
* :func:`mount_reference_vendors`: three demo vendors to mount inside the person's server.

See docs/vendors.md.
"""

from __future__ import annotations

from openvrm.vendor.config import VendorConfig, load_or_create_key
from openvrm.vendor.errors import (
    AgentError,
    AgentRefused,
    AgentUnreachable,
    NotAParty,
    PayloadTooLarge,
    UnknownRelationship,
)
from openvrm.vendor.kit import PushResult, RelationshipInfo, VendorKit

__all__ = [
    "AgentError",
    "AgentRefused",
    "AgentUnreachable",
    "NotAParty",
    "PayloadTooLarge",
    "PushResult",
    "RelationshipInfo",
    "UnknownRelationship",
    "VendorConfig",
    "VendorKit",
    "create_vendor_app",
    "load_or_create_key",
    "mount_reference_vendors",
]


def __getattr__(name: str) -> object:
    # The web parts import FastAPI; load them only when asked for, so the core stays framework-free.
    if name == "create_vendor_app":
        from openvrm.vendor.app import create_vendor_app

        return create_vendor_app
    if name == "mount_reference_vendors":
        from openvrm.vendor.demo import mount_reference_vendors

        return mount_reference_vendors
    raise AttributeError(name)
