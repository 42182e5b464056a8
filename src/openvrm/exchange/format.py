"""The export archive format: names, limits, the manifest schema and the helpers both sides share.

An archive is a ZIP holding ``manifest.json`` (every record, in plaintext) and ``files/<sha256 hex>``
(each document's file once). With a passphrase the whole ZIP is wrapped in a standard age file. The
format is described for people in ``docs/export-format.md``; ``export.schema.json`` beside this module is
the machine form, identical to ``docs/export.schema.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from openvrm.errors import ArchiveError
from openvrm.vault.core import MAX_FILE_BYTES

FORMAT = "openvrm-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES_DIR = "files/"
AGE_HEADER = b"age-encryption.org/v1"
AGE_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"

# The kinds of records an archive holds, in the order they are written (parents before children):
# a contract needs its vendor and relationship, a document its contract, a payment its document, a
# rights request its vendor and the documents of its answer, a move the vendors it notified, a protocol
# connection its vendor, its ledger events and grants their connection, an intent the connection its
# accepted offer made, an intent's offers their intent, a mail alias its vendor, a reverse alias its alias,
# a filed message its vendor and alias. Settings refer to nothing; the inbox comes last. The outbox and
# the mail gateway's spool are never exported (they are delivery state).
KINDS = (
    "profile_changes",
    "vendors",
    "relationships",
    "contracts",
    "documents",
    "payments",
    "shares",
    "rights_requests",
    "moves",
    "connections",
    "connection_events",
    "grants",
    "intents",
    "intent_offers",
    "mail_gateway",
    "mail_aliases",
    "mail_reverse_aliases",
    "mail_messages",
    "settings",
    "inbox",
)
# Kinds added to format version 1 after its first release: an archive written before them lacks them
# (both the list and its count), which reads as none.
OPTIONAL_KINDS = (
    "connections",
    "connection_events",
    "grants",
    "intents",
    "intent_offers",
    "mail_gateway",
    "mail_aliases",
    "mail_reverse_aliases",
    "mail_messages",
)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances so a front end can draw a bar."""

_FILE_NAME = re.compile(r"^files/([0-9a-f]{64})$")


class PassphraseNeeded(ArchiveError):
    """The archive is encrypted and no passphrase was given."""

    title = "Archive passphrase needed"
    status = 401
    code = "archive-passphrase-needed"


class WrongArchivePassphrase(ArchiveError):
    """The passphrase does not open the encrypted archive."""

    title = "Wrong archive passphrase"
    status = 401
    code = "wrong-archive-passphrase"


@dataclass(frozen=True)
class ImportLimits:
    """Bounds an archive must stay within, checked against the bytes actually read (not the headers).

    The defaults suit a personal vault: each file is capped like any file added to a vault, the whole
    archive at 4 GiB uncompressed and 100,000 entries.
    """

    max_entry_bytes: int = MAX_FILE_BYTES
    max_manifest_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 4 * 1024 * 1024 * 1024
    max_entries: int = 100_000


DEFAULT_LIMITS = ImportLimits()


def file_entry(sha256_hex: str) -> str:
    return f"{FILES_DIR}{sha256_hex}"


def sha_of_entry(name: str) -> str | None:
    """The sha256 a ``files/<sha256>`` entry name carries, or None for any other name."""
    m = _FILE_NAME.match(name)
    return m.group(1) if m else None


def check_entry_name(name: str) -> None:
    """Refuse names that could escape a folder or are not part of the format."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"the archive holds an entry with an unsafe name: {name[:120]!r}")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ArchiveError(f"the archive holds an entry with an unsafe name: {name[:120]!r}")
    if name not in (MANIFEST, FILES_DIR) and sha_of_entry(name) is None:
        raise ArchiveError(f"the archive holds an entry that is not part of the format: {name[:120]!r}")


# -- timestamps ---------------------------------------------------------------------------------------


def format_time(value: datetime) -> str:
    """A UTC timestamp with microseconds always written, so every value has the same shape."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ArchiveError(f"{where}: not a timestamp: {value[:60]!r}") from None
    if parsed.tzinfo is None:
        raise ArchiveError(f"{where}: the timestamp {value[:60]!r} has no time zone")
    return parsed.astimezone(UTC)


# -- the manifest schema ------------------------------------------------------------------------------


@cache
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``manifest.json``, shipped as package data."""
    text = resources.files("openvrm.exchange").joinpath("export.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    schema = manifest_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_manifest(manifest: Any) -> None:
    """Raise :class:`ArchiveError` naming the first place where ``manifest`` breaks the schema."""
    if isinstance(manifest, dict):
        if manifest.get("format") != FORMAT:
            raise ArchiveError("this is not an openvrm export (manifest.json has the wrong format name)")
        version = manifest.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ArchiveError(
                f"this archive uses export format version {version}; this openvrm reads version "
                f"{FORMAT_VERSION}: upgrade openvrm to import it"
            )
    error = best_match(_validator().iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ArchiveError(
            f"manifest.json does not match the export schema at {where}: {error.message[:300]}"
        )


# An intent's sealed payload (openvrm.intents.service.IntentService), by the stage that adds each key: what
# the draft says (with the intent's own private key), what publishing adds, what accepting adds. The export
# writes every key (null where the payload lacks it); the import puts back the keys of the stages reached.
INTENT_DRAFT_KEYS = (
    "intent_id",
    "kind",
    "category",
    "text",
    "constraints",
    "where",
    "when",
    "terms",
    "expires_in_days",
    "seed",
    "author",
    "muted",
)
INTENT_PUBLISHED_KEYS = ("published", "relay_url", "matched", "exclude", "cursor")
INTENT_ACCEPTED_KEYS = ("accepted_offer", "connection_id", "connect_error")
INTENT_KEYS = INTENT_DRAFT_KEYS + INTENT_PUBLISHED_KEYS + INTENT_ACCEPTED_KEYS

# A mail alias's sealed payload (openvrm.mail.routing.Alias.payload), and a filed message's
# (openvrm.mail.service.MailService: file_inbox, send, clear_leak) apart from its "blob", which the archive
# carries as a files/ entry. The export writes every key (its default where the payload lacks it).
MAIL_ALIAS_KEYS = (
    "address",
    "vendor_name",
    "vendor_domains",
    "learned_domains",
    "blocked",
    "mode",
    "deliver",
    "style",
    "note",
    "relationship_id",
)
MAIL_MESSAGE_DEFAULTS: dict[str, Any] = {
    "direction": "in",
    "alias": None,
    "summary": {},
    "auth": {},
    "leak": {},
    "envelope": {},
    "forwarded": False,
    "reply_to": None,
    "to": None,
    "bills": [],
    "cleared": False,
}
MAIL_MESSAGE_KEYS = tuple(MAIL_MESSAGE_DEFAULTS)
