"""The parser registry and the contract every document parser keeps.

A parser turns the bytes of one file into a :class:`ParsedDocument`. The registry asks every parser how
well it recognises the file (``score``), hands the file to the best one (``parse``), and guards the result.
Built-in parsers are registered in code; other packages add parsers through the ``openvrm.parsers``
entry-point group, whose entries name a parser object, a class, or a factory taking no arguments::

    [project.entry-points."openvrm.parsers"]
    odt = "my_package.odt:OdtParser"

The contract
------------

The words MUST, MUST NOT, SHALL and MAY are used as in RFC 2119.

A parser MUST have a ``name`` (a short unique slug), ``formats`` (the ``ParsedDocument.format`` values it
can produce), ``score(data, filename, media_type) -> int`` and ``parse(data, filename) -> ParsedDocument``.

``score``

- MUST return 0 when the parser cannot read the file, and otherwise a number up to 100; the built-ins use
  90 (unambiguous magic bytes), 70-80 (a format's own namespace or embedded file names), 40-75 (a
  plausible container, e.g. a PDF or a header block), 10-20 (a fallback such as plain text).
- MUST be cheap: it looks at magic bytes, a prefix, the file name or the media type, and MUST NOT parse
  the whole file. It MUST NOT raise; an exception counts as 0.
- The file name and media type are hints from the sender and MAY be wrong; content wins over them.

``parse``

- MUST NOT raise for bad input. A file it cannot read SHALL give ``status="unparsed"`` with a ``reason`` a
  person can understand ("the PDF could not be read (...)", "XML with a document type declaration is
  refused"); a file read in part SHALL give ``status="partial"``, everything that was read, and the
  ``reason`` naming what is missing. ``"parsed"`` means the file was read as its format intends.
- MUST keep money as ``Decimal`` (never ``float``), dates as ``date`` and timestamps timezone-aware.
- MUST NOT fetch anything from the network, follow links, resolve external entities, load DTDs or run
  code or scripts from the file.
- MUST NOT write the file, its text or any part of it to disk, to logs or anywhere else outside the
  returned value: the vault is the only place plaintext lives. Logs MAY name the parser and the kind of
  failure, never content.
- MUST bound memory and time: refuse or cut input beyond fixed limits (``MAX_INPUT_BYTES`` is enforced
  before any parser runs; ``text`` is capped at ``MAX_TEXT_CHARS``; line items and attachments are
  capped) and never expand an input without a limit (decompression, entity expansion, nesting).
- MUST be safe to call from several threads at once on different inputs (no shared mutable state).
- MUST NOT reach into the database, the vault or the import service: bytes in, a value out.
- An e-mail parser SHALL return attachments, nested e-mails included, as :class:`Attachment` values and
  SHALL NOT parse them itself; the caller imports each one and limits the nesting depth.

What the registry guarantees on top
-----------------------------------

- Input over ``MAX_INPUT_BYTES`` or empty input is refused without calling any parser.
- The highest score wins. Ties go to a built-in parser before a plug-in, then to the smaller ``name``, so
  the choice never depends on installation order. No score above 0 gives ``format="unknown"``.
- A parser that raises anyway, or returns something that is not a ``ParsedDocument``, gives an
  ``"unparsed"`` result naming the parser; the exception does not propagate.
- Caps on text, line items and attachments are enforced again on the result; ``parser`` is set.
- A plug-in that fails to load, lacks the interface, or reuses a registered name is skipped and reported
  in ``ParserRegistry.load_errors``; it never breaks the built-ins.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from openvrm.documents.parsers._util import looks_like_pdf
from openvrm.documents.parsers.model import (
    FORMATS,
    MAX_ATTACHMENTS,
    MAX_INPUT_BYTES,
    MAX_LINE_ITEMS,
    MAX_TEXT_CHARS,
    Format,
    ParsedDocument,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "openvrm.parsers"


@runtime_checkable
class Parser(Protocol):
    """What a document parser looks like; see the module docstring for the rules it keeps."""

    @property
    def name(self) -> str: ...

    @property
    def formats(self) -> Sequence[str]: ...

    def score(self, data: bytes, filename: str, media_type: str | None) -> int: ...

    def parse(self, data: bytes, filename: str) -> ParsedDocument: ...


@dataclass(frozen=True)
class _Entry:
    parser: Parser
    builtin: bool


def _check_parser(obj: Any) -> str | None:
    """Why ``obj`` is not a usable parser, or ``None`` when it is."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name.strip():
        return "it has no name"
    formats = getattr(obj, "formats", None)
    if isinstance(formats, str) or not isinstance(formats, Iterable):
        return "its formats are not a list"
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not list(formats):
        return f"its formats {list(formats)!r} are not among {list(FORMATS)!r}"
    if not callable(getattr(obj, "score", None)) or not callable(getattr(obj, "parse", None)):
        return "it lacks score() or parse()"
    return None


class ParserRegistry:
    """An ordered set of parsers and the rule for choosing among them."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self.load_errors: list[str] = []

    def register(self, parser: Parser, *, builtin: bool = False) -> None:
        """Add a parser. Raises ``ValueError`` for a malformed parser or a name already taken."""
        problem = _check_parser(parser)
        if problem:
            raise ValueError(f"not a document parser: {problem}")
        with self._lock:
            if any(e.parser.name == parser.name for e in self._entries):
                raise ValueError(f"a parser named {parser.name!r} is already registered")
            self._entries.append(_Entry(parser, builtin))

    @property
    def parsers(self) -> tuple[Parser, ...]:
        return tuple(e.parser for e in self._entries)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register the plug-ins of ``group``; failures are recorded in ``load_errors``."""
        try:
            found = list(entry_points(group=group))
        except Exception as exc:  # a broken distribution's metadata must not break parsing
            self.load_errors.append(f"entry points could not be listed: {type(exc).__name__}")
            return
        for ep in sorted(found, key=lambda e: str(e.name)):
            label = f"{group}:{ep.name}"
            try:
                obj = ep.load()
                if isinstance(obj, type) or (callable(obj) and _check_parser(obj) is not None):
                    obj = obj()
                self.register(obj)
            except Exception as exc:
                self.load_errors.append(f"{label} skipped: {type(exc).__name__}: {exc}")
                log.warning("document parser plug-in %s skipped: %s", label, type(exc).__name__)

    def scores(self, data: bytes, filename: str, media_type: str | None) -> list[tuple[int, Parser]]:
        """Every parser with a positive score, best first, in the registry's tie-breaking order."""
        ranked: list[tuple[int, bool, str, Parser]] = []
        for entry in self._entries:
            try:
                score = int(entry.parser.score(data, filename, media_type))
            except Exception as exc:
                log.warning("parser %s failed to score a file: %s", entry.parser.name, type(exc).__name__)
                score = 0
            if score > 0:
                ranked.append((score, entry.builtin, entry.parser.name, entry.parser))
        ranked.sort(key=lambda r: (-r[0], not r[1], r[2]))
        return [(score, parser) for score, _, _, parser in ranked]

    def choose(self, data: bytes, filename: str = "", media_type: str | None = None) -> Parser | None:
        ranked = self.scores(data, filename, media_type)
        return ranked[0][1] if ranked else None

    def parse(self, data: bytes, *, filename: str, media_type: str | None = None) -> ParsedDocument:
        """Parse one file with the best parser. Never raises for bad input."""
        filename = str(filename or "")
        if not data:
            return ParsedDocument(format="unknown", status="unparsed", reason="the file is empty")
        if len(data) > MAX_INPUT_BYTES:
            return ParsedDocument(
                format=sniff_format(data),
                status="unparsed",
                reason=f"the file is larger than the {MAX_INPUT_BYTES // (1024 * 1024)} MiB limit",
            )
        parser = self.choose(data, filename, media_type)
        if parser is None:
            return ParsedDocument(
                format="unknown",
                status="unparsed",
                reason="no parser recognises this kind of file"
                + (f" (declared as {media_type})" if media_type else ""),
            )
        fallback = _first_format(parser.formats)
        try:
            result: object = parser.parse(data, filename)
        except Exception as exc:
            log.warning("parser %s raised %s", parser.name, type(exc).__name__)
            return ParsedDocument(
                format=fallback,
                status="unparsed",
                reason=f"the {parser.name} parser failed on this file ({type(exc).__name__})",
                parser=parser.name,
            )
        if not isinstance(result, ParsedDocument):
            return ParsedDocument(
                format=fallback,
                status="unparsed",
                reason=f"the {parser.name} parser returned no result",
                parser=parser.name,
            )
        return _enforce_caps(result, parser.name)


def _enforce_caps(result: ParsedDocument, name: str) -> ParsedDocument:
    changes: dict[str, Any] = {"parser": name}
    if len(result.text) > MAX_TEXT_CHARS:
        changes["text"] = result.text[:MAX_TEXT_CHARS]
    if len(result.line_items) > MAX_LINE_ITEMS:
        changes["line_items"] = result.line_items[:MAX_LINE_ITEMS]
    if len(result.attachments) > MAX_ATTACHMENTS:
        changes["attachments"] = result.attachments[:MAX_ATTACHMENTS]
    return replace(result, **changes)


def sniff_format(data: bytes) -> Format:
    """What a file is, as far as it can be told without a parser: ``pdf`` or ``unknown``."""
    return "pdf" if looks_like_pdf(data) else "unknown"


def _first_format(formats: Sequence[str]) -> Format:
    for f in formats:
        if f in FORMATS:
            return f
    return "unknown"


def builtin_parsers() -> list[Parser]:
    from openvrm.documents.parsers.basic import ImageParser, TextParser
    from openvrm.documents.parsers.cii import CiiParser
    from openvrm.documents.parsers.eml import EmailParser
    from openvrm.documents.parsers.pdf import FacturxParser, PdfParser
    from openvrm.documents.parsers.ubl import UblParser

    return [
        FacturxParser(),
        PdfParser(),
        CiiParser(),
        UblParser(),
        EmailParser(),
        ImageParser(),
        TextParser(),
    ]


def new_registry(*, plugins: bool = True) -> ParserRegistry:
    """A registry with the built-in parsers and, unless ``plugins=False``, the installed plug-ins."""
    registry = ParserRegistry()
    for parser in builtin_parsers():
        registry.register(parser, builtin=True)
    if plugins:
        registry.load_entry_points()
    return registry


_default: ParserRegistry | None = None
_default_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()


# A forked parser process (folder imports) must not inherit a lock some other thread held at the fork.
os.register_at_fork(after_in_child=_new_lock_after_fork)


def default_registry() -> ParserRegistry:
    """The process-wide registry, built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = new_registry()
        return _default


def parse(data: bytes, *, filename: str, media_type: str | None = None) -> ParsedDocument:
    """Parse one file with the default registry. Never raises for bad input; see the module docstring."""
    return default_registry().parse(data, filename=filename, media_type=media_type)


__all__ = [
    "ENTRY_POINT_GROUP",
    "Parser",
    "ParserRegistry",
    "builtin_parsers",
    "default_registry",
    "new_registry",
    "parse",
    "sniff_format",
]
