"""A mail world for tests: a vault with a vendor and an alias, a DNS zone, DKIM keys, a running gateway on
loopback in front of a real SMTP sink (aiosmtpd) that plays the person's own mail provider."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import formatdate, make_msgid
from typing import Any

import dkim

from openvrm.mail.auth import ZoneResolver, new_dkim_key
from openvrm.mail.gateway import Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import Alias, Downstream
from openvrm.mail.service import MailService
from openvrm.server.smtp_gateway import GatewayServer, gateway_in_thread
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.outbox.support import Sink, smtp_sink

REAL = "anna@real.example"
DOMAIN = "mail.example"
VENDOR_IP = "127.0.0.1"  # the tests' client connects from loopback; SPF for shop.example names it


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    private_pem: bytes
    public_b64: str

    def sign(self, raw: bytes) -> bytes:
        return dkim.sign(raw, self.selector.encode(), self.domain.encode(), self.private_pem) + raw


_KEYS: dict[str, DkimKey] = {}


def dkim_key(domain: str, selector: str = "s1") -> DkimKey:
    """An RSA-2048 DKIM key per domain, made once per test run (key generation is slow)."""
    if domain not in _KEYS:
        pem, public_b64 = new_dkim_key()
        _KEYS[domain] = DkimKey(domain, selector, pem, public_b64)
    return _KEYS[domain]


def zone_for(*domains: str) -> ZoneResolver:
    """DKIM keys, SPF (loopback allowed) and a DMARC reject policy for each domain."""
    z = ZoneResolver()
    for d in domains:
        key = dkim_key(d)
        z.add(f"{key.selector}._domainkey.{d}", "TXT", f"v=DKIM1; k=rsa; p={key.public_b64}")
        z.add(d, "TXT", f"v=spf1 ip4:{VENDOR_IP} -all")
        z.add(f"_dmarc.{d}", "TXT", "v=DMARC1; p=reject")
    return z


def message(
    *,
    sender: str,
    to: str,
    subject: str = "Your order",
    body: str = "Hello,\nthanks for your order.\n",
    sign: bool = True,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Shop Billing <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    for filename, ctype, data in attachments or []:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    raw = msg.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    return dkim_key(sender.rpartition("@")[2]).sign(raw) if sign else raw


def send(port: int, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    """Send with smtplib; returns refused recipients (raises SMTPDataError etc. like a real client)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.shop.example", timeout=30) as c:
        return c.sendmail(mail_from, rcpts, raw)


@dataclass
class World:
    uv: UnlockedVault
    mail: MailService
    vendor_id: str
    alias: Alias
    sink: Sink
    sink_port: int
    server: GatewayServer
    port: int
    zone: ZoneResolver


@contextmanager
def mail_world(
    uv: UnlockedVault, *, deliver: str = "forward", sink_up: bool = True, tls_context: Any = None
) -> Iterator[World]:
    vendor = VendorService(uv).add("Shop", domains=["shop.example"])
    VendorService(uv).relate(vendor.id)
    zone = zone_for("shop.example", "other.example", "real.example")
    with smtp_sink() as (sink, sink_port):
        mail = MailService(uv)
        port = sink_port if sink_up else _closed_port()
        mail.setup(
            domains=[DOMAIN],
            forward_to=REAL,
            deliver=deliver,
            downstream=Downstream("127.0.0.1", port, "none"),
        )
        alias = mail.create_alias(vendor.id)
        gateway = Gateway(uv.vault, MailKeys.from_vault(uv), zone, config_ttl=0)
        server = GatewayServer(gateway, port=0, poll_seconds=0.2, tls_context=tls_context)
        with gateway_in_thread(server) as (_host, gw_port):
            yield World(uv, mail, vendor.id, alias, sink, sink_port, server, gw_port, zone)


def _closed_port() -> int:
    from tests.outbox.support import free_port

    return free_port()


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def body_of(msg: Message) -> str:
    """The first text part of a message the sink received, decoded."""
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            data = part.get_payload(decode=True)
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
    return ""
