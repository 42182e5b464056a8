"""Images (kept as they are: no OCR) and plain text or HTML files."""

from __future__ import annotations

import codecs

from openvrm.documents.parsers._util import cap_text, extension, squeeze_whitespace
from openvrm.documents.parsers._xml import html_to_text
from openvrm.documents.parsers.model import MAX_TEXT_CHARS, Format, ParsedDocument

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_TEXT_EXTENSIONS = frozenset(
    {".txt", ".text", ".csv", ".tsv", ".md", ".log", ".html", ".htm", ".json", ".ics"}
)


def image_kind(data: bytes) -> str | None:
    for magic, kind in _IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


class ImageParser:
    """PNG, JPEG, GIF, WebP and TIFF, recognised by their magic bytes."""

    name = "image"
    formats: tuple[Format, ...] = ("image",)

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        return 90 if image_kind(data) else 0

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        kind = image_kind(data)
        if kind is None:
            return ParsedDocument(format="image", status="unparsed", reason="not a known image format")
        return ParsedDocument(format="image", status="parsed", document_type="other")


def decode_text(data: bytes, sample: int | None = None) -> str | None:
    """``data`` as text if it plausibly is text (BOM, UTF-8, or mostly printable Windows-1252)."""
    chunk = data if sample is None else data[:sample]
    if chunk.startswith(codecs.BOM_UTF8):
        return chunk[3:].decode("utf-8", "replace")
    if chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return chunk.decode("utf-16", "replace")
    if b"\x00" in chunk[:65_536]:
        return None
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sample may end in the middle of a multi-byte character; that is still UTF-8.
        if sample is not None and exc.start >= len(chunk) - 3:
            return chunk[: exc.start].decode("utf-8")
    text = chunk.decode("cp1252", "replace")
    probe = text[:65_536]
    printable = sum(1 for ch in probe if ch.isprintable() or ch in "\r\n\t\f")
    return text if probe and printable / len(probe) >= 0.97 else None


def _is_html(data: bytes, filename: str, media_type: str | None) -> bool:
    if extension(filename) in (".html", ".htm") or (media_type or "").lower().startswith("text/html"):
        return True
    head = data[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


class TextParser:
    """Plain text (UTF-8, UTF-16 with a BOM, or Windows-1252) and HTML, kept as text for search."""

    name = "text"
    formats: tuple[Format, ...] = ("text",)

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        if not data.strip() or decode_text(data, sample=65_536) is None:
            return 0
        if extension(filename) in _TEXT_EXTENSIONS or (media_type or "").lower().startswith("text/"):
            return 20
        return 10

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        if _is_html(data, filename, None):
            text = html_to_text(data, MAX_TEXT_CHARS)
        else:
            decoded = decode_text(data)
            if decoded is None:
                return ParsedDocument(
                    format="text", status="unparsed", reason="the file is not readable text"
                )
            text = decoded
        text = cap_text(squeeze_whitespace(text[: MAX_TEXT_CHARS * 2]))
        if not text:
            return ParsedDocument(format="text", status="unparsed", reason="the file holds no text")
        return ParsedDocument(format="text", status="parsed", document_type="other", text=text)


__all__ = ["ImageParser", "TextParser", "decode_text", "image_kind"]
