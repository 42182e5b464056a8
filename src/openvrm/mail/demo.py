"""The demo's mailbox: a gateway on a reserved domain, aliases for three vendors, and a few messages.

The messages go through the real gateway (:meth:`Gateway.accept`: DKIM, SPF and DMARC against a fixed DNS
zone, classification, leak detection, the sealed inbox) and are then filed as on login, so the Mail page
shows a signed receipt with its Factur-X bill imported, a muted promotion, and a leak.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import dkim

from openvrm.mail.auth import ZoneResolver, new_dkim_key
from openvrm.mail.gateway import Envelope, Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.service import MailService
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

DEMO_MAIL_DOMAIN = "mail.demo.invalid"
SENDER_IP = "192.0.2.25"  # TEST-NET-1: the demo's vendors' mail servers
BROKER = "offers.databroker.example"


def _message(
    sender: str, name: str, to: str, subject: str, body: str, headers: dict[str, str] | None = None
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg


def populate_demo_mail(
    uv: UnlockedVault, *, forward_to: str, today: date
) -> tuple[dict[str, int], ZoneResolver]:
    """Set up the demo's gateway and feed it three messages; returns counts and the DNS zone it used."""
    from openvrm.demo import facturx_invoice

    mail = MailService(uv)
    mail.setup(domains=[DEMO_MAIL_DOMAIN], forward_to=forward_to, deliver="vault")
    vendors = {v.name: v for v in VendorService(uv).list()}
    aliases = {name: mail.create_alias(vendors[name].id) for name in ("Netflix", "Amazon EU", "Free Mobile")}
    mail.set_rules(vendor_id=vendors["Amazon EU"].id, mode="mute_promotions")
    zone = ZoneResolver()
    keys: dict[str, bytes] = {}
    for domain in ("netflix.com", "amazon.fr", "databroker.example"):
        pem, pub = new_dkim_key()
        keys[domain] = pem
        zone.add(f"demo._domainkey.{domain}", "TXT", f"v=DKIM1; k=rsa; p={pub}")
        zone.add(domain, "TXT", f"v=spf1 ip4:{SENDER_IP} -all")
        zone.add(f"_dmarc.{domain}", "TXT", "v=DMARC1; p=quarantine")
    zone.add(BROKER, "TXT", f"v=spf1 ip4:{SENDER_IP} -all")

    issued = today - timedelta(days=3)
    receipt = _message(
        "info@account.netflix.com",
        "Netflix",
        aliases["Netflix"].address,
        "Your Netflix invoice",
        "Hi Camille,\n\nthanks for staying with us. Your invoice for this month is attached.\n\n— Netflix",
    )
    pdf = facturx_invoice(
        "Netflix", "NL", f"NFX-{issued:%Y%m}-MAIL", issued, Decimal("15.99"), "Camille Martin"
    )
    receipt.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"netflix-{issued:%Y-%m}.pdf")
    promo = _message(
        "deals@amazon.fr",
        "Amazon.fr",
        aliases["Amazon EU"].address,
        "Black Friday: up to 40% off",
        "Deals picked for you. Unsubscribe at any time.",
        {"List-Unsubscribe": "<mailto:unsubscribe@amazon.fr>"},
    )
    leak = _message(
        f"hello@{BROKER}",
        "Exclusive Offers",
        aliases["Free Mobile"].address,
        "You have been selected!",
        "Congratulations, you have been selected for an exclusive offer.",
    )
    gateway = Gateway(uv.vault, MailKeys.from_vault(uv), zone)
    sent = [
        (receipt, "netflix.com", "bounces@netflix.com"),
        (promo, "amazon.fr", "bounces@amazon.fr"),
        (leak, "databroker.example", f"bounce@{BROKER}"),
    ]
    for msg, signing_domain, mail_from in sent:
        raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        raw = dkim.sign(raw, b"demo", signing_domain.encode(), keys[signing_domain]) + raw
        env = Envelope(peer_ip=SENDER_IP, helo=f"mx.{signing_domain}", mail_from=mail_from)
        env.recipients.append(gateway.recipient(env, str(msg["To"])))
        gateway.accept(env, raw)
    filed = mail.file_inbox()
    bills = sum(1 for m in mail.messages() for b in m.bills if b.get("status") == "imported")
    return {"aliases": len(aliases), "mail": filed, "mail_bills": bills}, zone
