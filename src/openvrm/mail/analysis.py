"""What a received message is: its structure, its kind, the bills it carries, and whether it leaked.

Parsing is Python's own e-mail parser (lenient by design): a malformed message yields defects, which are
recorded, never an exception. Only structure that is abuse (nesting too deep, too many parts) is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from openvrm.mail.auth import AuthResults, org_domain

MAX_DEPTH = 12
MAX_PARTS = 500
MAX_BILL_BYTES = 10 * 1024 * 1024
BILL_TYPES = {"application/pdf": ".pdf", "application/xml": ".xml", "text/xml": ".xml"}
_TRANSACTIONAL = re.compile(
    r"\b(receipt|invoice|bill|statement|order|payment|paid|refund|password|verification|verify|"
    r"security|sign[- ]?in|login|account|delivery|shipped|shipping|dispatch|booking|reservation|"
    r"ticket|subscription|renewal|contract|facture|commande|reçu|paiement|rechnung|bestellung|"
    r"quittung|zahlung|vertrag|factura|pedido|recibo)\b",
    re.IGNORECASE,
)


class Refused(Exception):  # noqa: N818 - an SMTP answer, not a crash
    """The message is refused; ``code`` and ``text`` are the SMTP reply."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)  # noqa: S101 - policy.default always gives EmailMessage
    return msg


def check_structure(msg: Message) -> None:
    """Refuse mail bombs: MIME nested deeper than :data:`MAX_DEPTH` or more than :data:`MAX_PARTS` parts."""
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise Refused(554, f"5.6.0 MIME structure nested deeper than {MAX_DEPTH} levels")
        if count > MAX_PARTS:
            raise Refused(554, f"5.6.0 more than {MAX_PARTS} MIME parts")
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))
        elif part.get_content_type() == "message/rfc822" and isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))


def header(msg: Message, name: str, limit: int = 998) -> str:
    """A header as text whatever its bytes (undecodable bytes become U+FFFD), on one line.

    A value the standard library cannot decode (a hostile encoded word, say) is given as it arrived,
    encoded words and all, rather than dropped.
    """
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception:  # noqa: BLE001 - the parser's header classes raise on hostile values
        text = next((str(v) for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    return " ".join(text.split())[:limit]


def from_address(msg: Message) -> str:
    _name, addr = parseaddr(header(msg, "From"))
    return addr.lower()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().strip(".")


def classify(msg: Message, bills: list[Bill]) -> str:
    """``transactional``, ``promotion`` or ``other``."""
    subject = header(msg, "Subject")
    if bills or _TRANSACTIONAL.search(subject):
        return "transactional"
    bulk = header(msg, "Precedence").lower() in ("bulk", "list", "junk")
    if header(msg, "List-Unsubscribe") or header(msg, "List-Id") or bulk or header(msg, "Feedback-ID"):
        return "promotion"
    if header(msg, "Auto-Submitted").lower().startswith("auto-"):
        return "transactional"
    return "other"


@dataclass(frozen=True)
class Bill:
    filename: str
    media_type: str
    data: bytes


def bills_in(msg: EmailMessage) -> list[Bill]:
    """Invoice-like attachments: PDF (Factur-X or plain) and XML (UBL, CII)."""
    found: list[Bill] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = part.get_filename() or ""
        lname = name.lower()
        if ctype == "application/octet-stream" and lname.endswith((".pdf", ".xml")):
            ctype = "application/pdf" if lname.endswith(".pdf") else "application/xml"
        if ctype not in BILL_TYPES:
            continue
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001, S112 - a broken transfer encoding: skip that part
            continue
        if not isinstance(data, bytes) or not data or len(data) > MAX_BILL_BYTES:
            continue
        safe = re.sub(r"[^\w.\- ]", "_", name)[:120] or f"attachment{BILL_TYPES[ctype]}"
        found.append(Bill(safe, ctype, data))
        if len(found) >= 10:
            break
    return found


@dataclass(frozen=True)
class LeakVerdict:
    """Whether a message to vendor A's alias came from A. ``reached`` is who wrote instead."""

    leaked: bool
    reason: str
    reached: str | None = None
    learned: str | None = None  # a domain learned for a vendor with none on record
    # The vendor proved it wrote (a DKIM signature of its domain, or SPF for it with its From): only
    # then are bills in the message filed as the vendor's without question.
    authenticated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "leaked": self.leaked,
            "reason": self.reason,
            "reached": self.reached,
            "learned": self.learned,
            "authenticated": self.authenticated,
        }


def judge_sender(
    vendor_domains: list[str] | tuple[str, ...], from_addr: str, auth: AuthResults, mail_from: str
) -> LeakVerdict:
    """Decide by the From domain and the DKIM identity (organisational domains, so mail.shop.com is shop.com).

    - a passing DKIM signature of the vendor's organisation, or SPF passing for it with a From of it: A;
    - a From of the vendor's organisation that fails authentication: flagged (someone posing as A);
    - a From of the vendor, unsigned and not failing: A (much small-vendor mail is unsigned);
    - anyone else: flagged, naming the sender's organisation;
    - a vendor with no domain on record learns the first sender's domain when DKIM or SPF proves that
      very domain (trust on first use).
    """
    if not mail_from and not from_addr:
        return LeakVerdict(False, "a bounce (no sender)")
    from_org = org_domain(domain_of(from_addr)) if from_addr else ""
    dkim_orgs = {org_domain(d) for d in auth.dkim_pass_domains}
    known = {org_domain(d) for d in vendor_domains}
    spf_org = org_domain(auth.spf_domain or "") if auth.spf == "pass" else ""
    if not known:
        if from_org and (from_org in dkim_orgs or spf_org == from_org):
            return LeakVerdict(
                False, "first authenticated sender, learned", learned=from_org, authenticated=True
            )
        return LeakVerdict(False, "the vendor has no domain on record")
    if dkim_orgs & known:
        return LeakVerdict(False, "DKIM signature of the vendor", authenticated=True)
    if from_org in known:
        if spf_org in known:
            return LeakVerdict(False, "SPF passes for the vendor", authenticated=True)
        failing = (
            auth.dmarc == "fail"
            or auth.spf in ("fail", "softfail")
            or any(s.result == "fail" for s in auth.dkim)
        )
        if failing:
            return LeakVerdict(True, "claims to be the vendor but fails authentication", reached=from_org)
        return LeakVerdict(False, "From is the vendor (unsigned)")
    reached = from_org or (sorted(dkim_orgs)[0] if dkim_orgs else domain_of(mail_from))
    return LeakVerdict(True, "written by someone other than the vendor", reached=reached or "unknown")


@dataclass
class Summary:
    """The parts of a message the person sees in lists, kept sealed with it."""

    subject: str
    from_addr: str
    from_name: str
    to: list[str]
    date: str | None
    message_id: str
    kind: str
    defects: list[str] = field(default_factory=list)
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "from": self.from_addr,
            "from_name": self.from_name,
            "to": self.to,
            "date": self.date,
            "message_id": self.message_id,
            "kind": self.kind,
            "defects": self.defects,
            "size": self.size,
        }


def summarise(msg: Message, raw_size: int, kind: str) -> Summary:
    name, addr = parseaddr(header(msg, "From"))
    date_text = header(msg, "Date")
    date = None
    if date_text:
        try:
            parsed = parsedate_to_datetime(date_text)
            date = parsed.isoformat() if parsed.tzinfo else None
        except (TypeError, ValueError, IndexError):
            date = None
    defects = sorted({type(d).__name__ for part in msg.walk() for d in getattr(part, "defects", [])})
    return Summary(
        subject=header(msg, "Subject", 300),
        from_addr=addr.lower(),
        from_name=name[:200],
        to=[a.lower() for _n, a in getaddresses([header(msg, "To")])][:20],
        date=date,
        message_id=header(msg, "Message-ID", 300),
        kind=kind,
        defects=defects[:20],
        size=raw_size,
    )


def text_body(msg: EmailMessage, limit: int = 200_000) -> str:
    """The plain-text body (or the HTML one stripped of tags), for the message page."""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:  # noqa: BLE001
        part = None
    if part is None:
        return ""
    try:
        text = str(part.get_content())
    except Exception:  # noqa: BLE001 - unknown charset or broken encoding
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if part.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    return text[:limit]
