"""The relay's configuration: its name, public URL, store, signing key and limits."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openvrm.errors import InvalidValue
from openvrm.net import UrlPolicy, check_url
from openvrm.protocol.identity import KeyPair
from openvrm.vendor.config import load_or_create_key

DEFAULT_STORE_DIR = Path("vrm-relay")
CONFIG_FILE = "relay.json"
KEY_FILE = "relay.key"
DB_FILE = "relay.sqlite3"
MAX_OFFER_BYTES = 256 * 1024
MAX_BODY_BYTES = 300 * 1024


@dataclass
class RelayLimits:
    """Per-caller limits; the rate limits are in-process token buckets (see docs/relay.md)."""

    intents_per_hour_per_client: int = 60
    offers_per_minute_per_vendor: int = 120
    feed_polls_per_minute_per_vendor: int = 120
    max_subscriptions_per_vendor: int = 100
    webhook_max_attempts: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise InvalidValue(f"the relay limit {name} must be a positive integer")


@dataclass
class RelayConfig:
    """One relay: ``store_url`` defaults to a SQLite file in ``store_dir`` and ``key_path`` to ``relay.key``.

    ``allow_loopback`` lets vendors register webhooks on 127.0.0.1 (tests and demos only).
    ``from_request_url`` makes the relay take its public URL from each request (scheme, Host, mount
    point) instead of ``base_url``: used when it is mounted inside the person's server.
    """

    name: str
    base_url: str
    store_dir: Path = DEFAULT_STORE_DIR
    store_url: str | None = None
    key_path: Path | None = None
    allow_loopback: bool = False
    limits: RelayLimits = field(default_factory=RelayLimits)
    replay_window_seconds: int = 300
    max_body_bytes: int = MAX_BODY_BYTES
    from_request_url: bool = False

    def __post_init__(self) -> None:
        self.name = self.name.strip()
        if not self.name:
            raise InvalidValue("a relay needs a name")
        self.base_url = self.base_url.rstrip("/")
        check_url(self.base_url, UrlPolicy(allow_loopback=True, allow_private=True))
        self.store_dir = Path(self.store_dir)
        if self.store_url is None:
            self.store_url = f"sqlite:///{(self.store_dir / DB_FILE).absolute()}"
        if not (self.store_url.startswith("sqlite") or self.store_url.startswith("postgresql")):
            raise InvalidValue("the relay store is a sqlite or postgresql URL")
        if self.key_path is None:
            self.key_path = self.store_dir / KEY_FILE
        if not 30 <= self.replay_window_seconds <= 600:
            raise InvalidValue("the replay window is 30 to 600 seconds")

    @property
    def url_policy(self) -> UrlPolicy:
        """The SSRF policy for every webhook and discovery URL a vendor gives."""
        return UrlPolicy(allow_loopback=self.allow_loopback)

    @property
    def store(self) -> str:
        assert self.store_url is not None  # noqa: S101 - set in __post_init__
        return self.store_url

    @property
    def key_file(self) -> Path:
        assert self.key_path is not None  # noqa: S101 - set in __post_init__
        return self.key_path

    def load_key(self) -> KeyPair:
        """The relay's Ed25519 key (a 32-byte seed in a 0600 file), created on first use."""
        return load_or_create_key(self.key_file)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": self.base_url,
            "store_url": self.store_url,
            "key_path": str(Path(self.key_file).absolute()),
            "allow_loopback": self.allow_loopback,
            "limits": asdict(self.limits),
        }

    def save(self) -> Path:
        """Write ``store_dir/relay.json`` (mode 0600: the store URL may hold a password)."""
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.store_dir / CONFIG_FILE
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, store_dir: Path) -> RelayConfig:
        path = Path(store_dir) / CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidValue(
                f"no relay configuration at {path}: run `vrm relay serve --store {store_dir}` first"
            ) from None
        except (OSError, ValueError) as exc:
            raise InvalidValue(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidValue(f"{path} is not a relay configuration")
        raw_limits = data.get("limits")
        limits: dict[str, Any] = raw_limits if isinstance(raw_limits, dict) else {}
        known = set(RelayLimits.__dataclass_fields__)
        return cls(
            name=str(data.get("name", "")),
            base_url=str(data.get("base_url", "")),
            store_dir=Path(store_dir),
            store_url=data.get("store_url"),
            key_path=Path(data["key_path"]) if data.get("key_path") else None,
            allow_loopback=bool(data.get("allow_loopback", False)),
            limits=RelayLimits(**{k: int(v) for k, v in limits.items() if k in known}),
        )
