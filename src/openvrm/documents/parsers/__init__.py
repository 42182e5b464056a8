"""Document parsers: bytes in, a typed :class:`ParsedDocument` out.

A pure package: no database, no vault, no network. :func:`parse` picks a parser through the registry
(:mod:`openvrm.documents.parsers.registry`, which also states the contract every parser keeps) and never
raises for bad input; an unreadable file is a result with ``status="unparsed"`` and a reason.

Built-in parsers: Factur-X / ZUGFeRD PDF, CII XML, UBL XML, other PDF, e-mail, image, plain text.
"""

from openvrm.documents.parsers.model import (
    MAX_ATTACHMENTS,
    MAX_INPUT_BYTES,
    MAX_LINE_ITEMS,
    MAX_TEXT_CHARS,
    Attachment,
    DocumentType,
    Format,
    LineItem,
    ParsedDocument,
    Status,
)
from openvrm.documents.parsers.registry import (
    ENTRY_POINT_GROUP,
    Parser,
    ParserRegistry,
    default_registry,
    new_registry,
    parse,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_ATTACHMENTS",
    "MAX_INPUT_BYTES",
    "MAX_LINE_ITEMS",
    "MAX_TEXT_CHARS",
    "Attachment",
    "DocumentType",
    "Format",
    "LineItem",
    "ParsedDocument",
    "Parser",
    "ParserRegistry",
    "Status",
    "default_registry",
    "new_registry",
    "parse",
]
