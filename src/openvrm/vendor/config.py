"""The vendor kit's configuration and its signing key file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvrm.errors import InvalidValue
from openvrm.net import UrlPolicy, check_url
from openvrm.protocol.identity import ED25519_KEY_BYTES, KeyPair
from openvrm.protocol.terms import Term, term

DEFAULT_STORE_DIR = Path("vrm-vendor")
CONFIG_FILE = "vendor.json"
KEY_FILE = "vendor.key"
DB_FILE = "vendor.sqlite3"
RULES_FILE = "rules.json"


@dataclass
class VendorConfig:
    """What one vendor kit instance is: its name, public URL, store, key and the terms it accepts.

    ``store_url`` and ``key_path`` default to files in ``store_dir``. ``accepted_terms`` are roster term
    ids in the vendor's order of preference (the newest roster version of each is used).
    """

    name: str
    base_url: str
    store_dir: Path = DEFAULT_STORE_DIR
    store_url: str | None = None
    key_path: Path | None = None
    accepted_terms: Sequence[str] = ("service-delivery-only",)
    alternative: bool = True
    privacy_contact: str | None = None
    allow_loopback: bool = False
    replay_window_seconds: int = 300
    max_body_bytes: int = 1024 * 1024
    relay_url: str | None = None
    rules_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.name.strip()
        if not self.name:
            raise InvalidValue("a vendor needs a name")
        self.base_url = self.base_url.rstrip("/")
        check_url(self.base_url, UrlPolicy(allow_loopback=True, allow_private=True))
        self.store_dir = Path(self.store_dir)
        if self.store_url is None:
            self.store_url = f"sqlite:///{(self.store_dir / DB_FILE).absolute()}"
        if self.key_path is None:
            self.key_path = self.store_dir / KEY_FILE
        self.accepted_terms = tuple(self.accepted_terms)
        if not self.accepted_terms:
            raise InvalidValue("a vendor accepts at least one roster term")
        self.terms()  # refuse unknown ids now, not on the first proffer
        if not 30 <= self.replay_window_seconds <= 600:
            raise InvalidValue("the replay window is 30 to 600 seconds")
        if self.relay_url is not None:
            self.relay_url = self.relay_url.rstrip("/")
            check_url(self.relay_url, UrlPolicy(allow_loopback=True, allow_private=True))
        if self.rules_path is None:
            self.rules_path = self.store_dir / RULES_FILE
        self.rules_path = Path(self.rules_path)

    def terms(self) -> list[Term]:
        """The accepted roster terms, most preferred first."""
        found = []
        for term_id in self.accepted_terms:
            try:
                found.append(term(term_id))
            except Exception as exc:  # NotFound / InvalidValue from the roster
                raise InvalidValue(f"{term_id!r} is not a roster term: {exc}") from None
        return found

    @property
    def url_policy(self) -> UrlPolicy:
        """The SSRF policy for every URL an agent gives us."""
        return UrlPolicy(allow_loopback=self.allow_loopback)

    @property
    def store(self) -> str:
        assert self.store_url is not None  # noqa: S101 - set in __post_init__
        return self.store_url

    @property
    def rules_file(self) -> Path:
        """The rules that answer relayed intents (``store_dir/rules.json`` unless set; see rules.py)."""
        assert self.rules_path is not None  # noqa: S101 - set in __post_init__
        return self.rules_path

    @property
    def key_file(self) -> Path:
        assert self.key_path is not None  # noqa: S101 - set in __post_init__
        return self.key_path

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": self.base_url,
            "store_url": self.store_url,
            "key_path": str(Path(self.key_file).absolute()),
            "accepted_terms": list(self.accepted_terms),
            "alternative": self.alternative,
            "privacy_contact": self.privacy_contact,
            "allow_loopback": self.allow_loopback,
            "replay_window_seconds": self.replay_window_seconds,
            "relay_url": self.relay_url,
            "rules_path": str(Path(self.rules_file).absolute()),
        }

    def save(self) -> Path:
        """Write the configuration to ``store_dir/vendor.json`` (so later commands find it)."""
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.store_dir / CONFIG_FILE
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # the store URL may hold a password
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, store_dir: Path) -> VendorConfig:
        path = Path(store_dir) / CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidValue(
                f"no vendor configuration at {path}: run `vrm vendor serve --store {store_dir}` first"
            ) from None
        except (OSError, ValueError) as exc:
            raise InvalidValue(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidValue(f"{path} is not a vendor configuration")
        return cls(
            name=str(data.get("name", "")),
            base_url=str(data.get("base_url", "")),
            store_dir=Path(store_dir),
            store_url=data.get("store_url"),
            key_path=Path(data["key_path"]) if data.get("key_path") else None,
            accepted_terms=tuple(data.get("accepted_terms") or ("service-delivery-only",)),
            alternative=bool(data.get("alternative", True)),
            privacy_contact=data.get("privacy_contact"),
            allow_loopback=bool(data.get("allow_loopback", False)),
            replay_window_seconds=int(data.get("replay_window_seconds", 300)),
            relay_url=data.get("relay_url"),
            rules_path=Path(data["rules_path"]) if data.get("rules_path") else None,
        )


def load_or_create_key(path: Path) -> KeyPair:
    """The vendor's Ed25519 key from ``path`` (the 32-byte seed, mode 0600), created if missing."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = KeyPair.generate()
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes)
        return key
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        seed = f.read(ED25519_KEY_BYTES + 1)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidValue(f"the vendor key file {path} is readable by others: run chmod 600 {path}")
    if len(seed) != ED25519_KEY_BYTES:
        raise InvalidValue(f"the vendor key file {path} does not hold a 32-byte Ed25519 seed")
    return KeyPair.from_private_bytes(seed)
