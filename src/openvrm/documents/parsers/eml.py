"""E-mail messages (``.eml``, ``message/rfc822``), read with the standard library's modern e-mail policy.

Mail from the outside is often malformed: undeclared 8-bit headers, unknown charsets, a missing closing
boundary, broken base64. The parser keeps whatever can be read and reports damage as ``"partial"``.

Attachments (including a forwarded e-mail, as a ``message/rfc822`` attachment with its bytes) are returned
undecoded by any other parser: the import service imports each in turn and limits the nesting depth.
Inline images referenced by ``Content-ID`` (logos, tracking pixels) are left out.
"""

from __future__ import annotations

import mimetypes
import re
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

from openvrm.documents.parsers._util import (
    cap_text,
    clean_text,
    domain_of_email,
    extension,
    fix_surrogates,
    safe_filename,
    squeeze_whitespace,
)
from openvrm.documents.parsers._xml import html_to_text
from openvrm.documents.parsers.model import (
    MAX_ATTACHMENTS,
    MAX_TEXT_CHARS,
    Attachment,
    Format,
    ParsedDocument,
)

MAX_MIME_DEPTH = 30  # nesting of multiparts inside one message; deeper parts are ignored
_KNOWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "received",
        "mime-version",
        "return-path",
        "delivered-to",
        "reply-to",
        "content-type",
        "x-mailer",
        "dkim-signature",
        "sender",
    }
)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_STRUCTURE_DEFECTS = frozenset(
    {
        "StartBoundaryNotFoundDefect",
        "CloseBoundaryNotFoundDefect",
        "MultipartInvariantViolationDefect",
        "MissingHeaderBodySeparatorDefect",
        "NoBoundaryInMultipartDefect",
        "InvalidBase64PaddingDefect",
        "InvalidBase64CharactersDefect",
        "InvalidBase64LengthDefect",
    }
)


def looks_like_email(data: bytes) -> bool:
    """True when the file starts with an RFC 5322 header block naming at least two usual headers."""
    head = data[:8192].replace(b"\r\n", b"\n")
    lines = head.split(b"\n")
    if lines and lines[0].startswith(b"From "):  # mbox separator line
        lines = lines[1:]
    names: set[str] = set()
    for line in lines[:60]:
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_LINE.match(line):
            return False
        names.add(line.split(b":", 1)[0].decode("ascii", "replace").lower())
    return len(names & _KNOWN_HEADERS) >= 2


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name:
            raw = fix_surrogates(str(value))
            try:
                return str(make_header(decode_header(raw)))
            except Exception:
                return raw
    return None


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
        text = None if value is None else str(value)
    except Exception:  # policy.default parses headers lazily and can trip on broken ones
        text = _raw_header(msg, name)
    if text and "\ufffd" in text:
        # Undeclared 8-bit bytes became U+FFFD; the raw header still has them (as surrogate escapes).
        raw = _raw_header(msg, name)
        if raw and "\ufffd" not in raw:
            text = raw
    return clean_text(fix_surrogates(text), 1000) if text else None


def _date(msg: Message) -> datetime | None:
    when: datetime | None = None
    try:
        value = msg.get("date")
        when = getattr(value, "datetime", None)
    except Exception:
        when = None
    if when is None:
        raw = _raw_header(msg, "date")
        if raw:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                when = None
    if when is not None and when.tzinfo is None:
        # RFC 5322 "-0000": the time is UTC and the sender's zone is unknown.
        when = when.replace(tzinfo=UTC)
    return when


def _from_address(msg: Message, from_text: str | None) -> str | None:
    try:
        value: Any = msg.get("from")
        addresses = getattr(value, "addresses", ()) if value is not None else ()
        if addresses and addresses[0].addr_spec and "@" in addresses[0].addr_spec:
            return fix_surrogates(str(addresses[0].addr_spec)).lower()
    except Exception:  # noqa: S110 - fall back to a plain pattern below
        pass
    m = _ADDRESS.search(from_text or "")
    return m[0].lower() if m else None


def _payload_bytes(part: Message) -> bytes | None:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return None
    return payload if isinstance(payload, bytes) else None


def _part_text(part: Message) -> str:
    payload = _payload_bytes(part) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except Exception:  # unknown or non-text codec named as charset
        return payload.decode("utf-8", "replace")


class _Walk:
    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        self.dropped = 0
        self.defects: set[str] = set()
        self.notes: list[str] = []

    def add(self, attachment: Attachment) -> None:
        if len(self.attachments) >= MAX_ATTACHMENTS:
            self.dropped += 1
        else:
            self.attachments.append(attachment)

    def visit(self, part: Message, depth: int, root: bool = False) -> None:
        self.defects.update(type(d).__name__ for d in getattr(part, "defects", ()))
        if depth > MAX_MIME_DEPTH:
            self.notes.append(f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels were ignored")
            return
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and not root:
            self._nested_message(part)
            return
        if part.is_multipart():
            payload = part.get_payload()
            for child in payload if isinstance(payload, list) else ():
                if isinstance(child, Message):
                    self.visit(child, depth + 1)
            return
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            (self.plain if ctype == "text/plain" else self.html).append(_part_text(part))
            return
        if disposition != "attachment" and ctype.startswith("image/") and part.get("content-id"):
            return  # an inline picture of the HTML body
        data = _payload_bytes(part)
        if data is None:
            return
        number = len(self.attachments) + self.dropped + 1
        guessed = mimetypes.guess_extension(ctype) or ".bin"
        self.add(Attachment(safe_filename(filename, f"attachment-{number}{guessed}"), ctype, data))

    def _nested_message(self, part: Message) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            return
        try:
            data = inner.as_bytes(policy=policy.default.clone(linesep="\r\n"))
        except Exception:
            self.notes.append("a forwarded message could not be re-assembled and was left out")
            return
        number = len(self.attachments) + self.dropped + 1
        subject = _header(inner, "subject")
        fallback = f"{subject[:80]}.eml" if subject else f"message-{number}.eml"
        name = safe_filename(_filename(part), safe_filename(fallback, f"message-{number}.eml"))
        if extension(name) != ".eml":
            name += ".eml"
        self.add(Attachment(name, "message/rfc822", data))


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return fix_surrogates(name) if name else None


def read_email(data: bytes) -> ParsedDocument:
    try:
        msg = BytesParser(policy=policy.default).parsebytes(data)
    except Exception as exc:  # the parser is lenient; this is a last resort
        return ParsedDocument(
            format="email", status="unparsed", reason=f"the e-mail could not be read ({type(exc).__name__})"
        )
    subject = _header(msg, "subject")
    sender = _header(msg, "from")
    when = _date(msg)
    address = _from_address(msg, sender)

    walk = _Walk()
    try:
        walk.visit(msg, 0, root=True)
    except RecursionError:
        walk.notes.append("the MIME structure is nested too deeply; some parts were left out")
    body = (
        "\n\n".join(walk.plain)
        if walk.plain
        else "\n\n".join(html_to_text(h, MAX_TEXT_CHARS) for h in walk.html)
    )
    text = cap_text(squeeze_whitespace("\n\n".join(p for p in (subject, body[: MAX_TEXT_CHARS * 2]) if p)))
    notes = list(walk.notes)
    if walk.dropped:
        notes.append(f"only the first {MAX_ATTACHMENTS} attachments were kept; {walk.dropped} were left out")

    fields: dict[str, Any] = {
        "format": "email",
        "document_type": "email",
        "email_subject": subject,
        "email_from": sender,
        "email_date": when,
        "seller_email": address,
        "seller_domain": domain_of_email(address),
        "text": text,
        "attachments": tuple(walk.attachments),
        "warnings": tuple(notes),
    }
    if not (subject or sender or when or body.strip() or walk.attachments):
        return ParsedDocument(
            status="unparsed", reason="no e-mail headers, body or attachments were found", **fields
        )
    damaged = sorted(walk.defects & _STRUCTURE_DEFECTS)
    if damaged:
        return ParsedDocument(
            status="partial",
            reason=f"the MIME structure is damaged ({', '.join(damaged)}); what could be read was kept",
            **fields,
        )
    return ParsedDocument(status="parsed", **fields)


class EmailParser:
    """RFC 5322 / MIME messages."""

    name = "email"
    formats: tuple[Format, ...] = ("email",)

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        if not data.strip():
            return 0
        declared = extension(filename) == ".eml" or (media_type or "").lower().startswith("message/rfc822")
        if looks_like_email(data):
            return 75 if declared else 40
        return 30 if declared else 0

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        return read_email(data)


__all__ = ["EmailParser", "looks_like_email", "read_email"]
