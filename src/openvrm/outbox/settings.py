"""The person's own SMTP server, sealed in the vault like every other record.

openvrm sends e-mail as the person, through the server they already use (their provider's submission
port, with their login), never through a relay of its own. The settings live in ``sealed_settings`` under
the id ``smtp``; the password never leaves the sealed payload.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from email_validator import EmailNotValidError, validate_email

from openvrm.errors import InvalidValue, NotFound
from openvrm.profile.fields import _text
from openvrm.records import insert, payload_of, update
from openvrm.storage.models import SealedSetting
from openvrm.vault.core import UnlockedVault

TlsMode = Literal["starttls", "tls", "none"]
TLS_MODES: tuple[TlsMode, ...] = ("starttls", "tls", "none")
SMTP_SETTING = "smtp"


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    tls: TlsMode
    from_addr: str
    username: str | None = None
    password: str | None = None
    from_name: str | None = None
    # Only for a local test server with a self-signed certificate; never set by default.
    validate_certs: bool = True

    @property
    def from_domain(self) -> str:
        return self.from_addr.rsplit("@", 1)[1]

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not reveal:
            d["password"] = "***" if self.password else None
        return d


def clean_mail_settings(
    *,
    host: str,
    port: int | None = None,
    tls: str = "starttls",
    from_addr: str,
    username: str | None = None,
    password: str | None = None,
    from_name: str | None = None,
    validate_certs: bool = True,
) -> MailSettings:
    """Check every part; the message names what is wrong."""
    host = _text(host, "the SMTP host", max_len=253)
    if any(c.isspace() for c in host) or "/" in host:
        raise InvalidValue(f"the SMTP host is a name or an IP address, not {host!r}")
    if tls not in TLS_MODES:
        raise InvalidValue(f"the TLS mode is one of {', '.join(TLS_MODES)}, not {tls!r}")
    if port is None:
        port = {"starttls": 587, "tls": 465, "none": 25}[tls]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidValue(f"the SMTP port is a number from 1 to 65535, not {port!r}")
    try:
        sender = str(validate_email(from_addr, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise InvalidValue(f"the From address is not a valid e-mail address: {exc}") from None
    if password is not None and not username:
        raise InvalidValue("a password needs a username")
    return MailSettings(
        host=host,
        port=port,
        tls=tls,
        from_addr=sender,
        username=_text(username, "the SMTP username", max_len=254) if username else None,
        password=password or None,
        from_name=_text(from_name, "the sender name", max_len=200) if from_name else None,
        validate_certs=validate_certs,
    )


def save_mail_settings(vault: UnlockedVault, settings: MailSettings) -> MailSettings:
    payload = settings.to_json(reveal=True)
    with vault.db.write() as s:
        row = s.get(SealedSetting, SMTP_SETTING)
        if row is None:
            insert(vault, s, SealedSetting, payload, record_id=SMTP_SETTING)
        else:
            update(vault, row, payload)
    return settings


def load_mail_settings(vault: UnlockedVault) -> MailSettings:
    """The saved settings, or :class:`NotFound` saying how to add them."""
    with vault.db.read() as s:
        row = s.get(SealedSetting, SMTP_SETTING)
    if row is None:
        raise NotFound("no mail server is set up: run `vrm mail setup` with your provider's SMTP details")
    return MailSettings(**payload_of(vault, row))


def has_mail_settings(vault: UnlockedVault) -> bool:
    with vault.db.read() as s:
        return s.get(SealedSetting, SMTP_SETTING) is not None
