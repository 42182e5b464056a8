"""Hardened XML reading for e-invoices.

Invoices come from strangers, so an XML file is treated as hostile until read:

- any document type declaration (``<!DOCTYPE``) or entity declaration is refused outright; no e-invoice
  syntax (CII, UBL) needs one, and refusing them closes XXE, billion-laughs and DTD-fetching at once;
- the parser itself is configured not to resolve entities, load DTDs, use the network or accept huge
  trees, so even a declaration that slipped past the first check would not be acted on.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# lxml ships no type information (and lxml-stubs is not installed); its objects are typed as Any here.
from lxml import etree  # type: ignore[import-untyped]

from openvrm.documents.parsers._util import looks_like_xml, sniff_head

DOCTYPE_REFUSED = "XML with a document type declaration is refused"

_DECLARATION_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_DECLARATION_LINE_RE = re.compile(rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")
_ENCODING_DECL_RE = re.compile(rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*encoding\s*=\s*[\"']([^\"']*)[\"']")


class XmlRefused(Exception):
    """The XML cannot or must not be read; ``str()`` is a reason a person can understand."""


@dataclass(frozen=True)
class XmlDocument:
    root: Any  # lxml.etree._Element
    warnings: tuple[str, ...] = ()


def hardened_parser(encoding: str | None = None) -> Any:
    # A new parser per document: cheap, and lxml parsers are not meant to be shared across threads.
    return etree.XMLParser(
        encoding=encoding,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_pis=True,
        collect_ids=False,
    )


def has_declaration(data: bytes) -> bool:
    if _DECLARATION_RE.search(data):
        return True
    # The byte scan misses UTF-16/32 documents; look again at the decoded prologue for those.
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        for codec in ("utf-16", "utf-32"):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                continue
            return re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE) is not None
    return False


def parse_xml(data: bytes) -> XmlDocument:
    """Parse ``data`` safely or raise :class:`XmlRefused` with a reason.

    A document whose XML declaration names an encoding libxml2 does not know (``UTF-8-W/O-BOM`` is seen in
    the wild) but whose bytes are valid UTF-8 is read as UTF-8, with a warning.
    """
    if not data.strip():
        raise XmlRefused("the XML file is empty")
    if has_declaration(data):
        raise XmlRefused(DOCTYPE_REFUSED)
    warnings: list[str] = []
    try:
        root = etree.fromstring(data, parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        recovered = _read_with_bad_declaration(data)
        if recovered is None:
            raise XmlRefused(f"the XML is not well-formed: {_short(exc)}") from None
        root, name = recovered
        warnings.append(f"the XML declares an unknown encoding {name!r}; it was read as UTF-8")
    except (ValueError, etree.ParserError) as exc:
        raise XmlRefused(f"the XML could not be read: {_short(exc)}") from None
    if root is None:
        raise XmlRefused("the XML has no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # second line of defence
        raise XmlRefused(DOCTYPE_REFUSED)
    return XmlDocument(root=root, warnings=tuple(warnings))


def _read_with_bad_declaration(data: bytes) -> tuple[Any, str] | None:
    """Re-read a UTF-8 document whose XML declaration names an encoding nobody knows."""
    declared = _ENCODING_DECL_RE.match(data)
    if declared is None:
        return None
    name = declared[2].decode("ascii", "replace")
    try:
        codecs.lookup(name)
        return None  # a real encoding: the syntax error is elsewhere
    except LookupError:
        pass
    body = _DECLARATION_LINE_RE.sub(b"", data, count=1)
    try:
        body.decode("utf-8")
        return etree.fromstring(body, parser=hardened_parser(encoding="utf-8")), name
    except (UnicodeDecodeError, etree.XMLSyntaxError, ValueError):
        return None


def root_namespace(data: bytes) -> str | None:
    """Cheap sniff used for scoring: the namespace URI of the first element, read without parsing."""
    head = re.sub(rb"<!--.*?-->", b"", sniff_head(data), flags=re.DOTALL)
    m = re.search(rb"<(?![?!])([\w.-]+:)?([\w.-]+)[^>]*>", head)
    if not m:
        return None
    prefix = (m[1] or b"").rstrip(b":")
    attr = b"xmlns:" + prefix if prefix else b"xmlns"
    ns = re.search(re.escape(attr) + rb"\s*=\s*[\"']([^\"']*)[\"']", m[0])
    return ns[1].decode("utf-8", "replace") if ns else None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


_compiled = threading.local()


def xpath(node: Any, path: str, namespaces: Mapping[str, str]) -> list[Any]:
    """``node.xpath(path)``, with the expression compiled once per thread instead of on every call.

    An invoice reader asks the same few dozen paths of every file; compiling them each time was most of
    its cost. Compiled expressions are kept per thread because lxml does not promise they may be shared.
    """
    cache: dict[tuple[str, tuple[tuple[str, str], ...]], Any] | None = getattr(_compiled, "cache", None)
    if cache is None:
        cache = _compiled.cache = {}
    key = (path, tuple(namespaces.items()))
    compiled = cache.get(key)
    if compiled is None:
        if len(cache) > 1024:
            cache.clear()
        compiled = cache[key] = etree.XPath(path, namespaces=dict(namespaces))
    result = compiled(node)
    return result if isinstance(result, list) else [result]


def all_text(root: Any, limit: int) -> str:
    """The text content of every element, one line per non-empty text node, for search."""
    parts: list[str] = []
    size = 0
    for node in root.iter():
        if not isinstance(node.tag, str):  # comments, processing instructions
            continue
        text = (node.text or "").strip()
        if text:
            parts.append(" ".join(text.split()))
            size += len(parts[-1]) + 1
            if size > limit:
                break
    return "\n".join(parts)[:limit]


def html_to_text(data: bytes | str, limit: int) -> str:
    """Visible text of an HTML document (scripts, styles and the head dropped), or ``""``."""
    from lxml import html as lxml_html

    parser = lxml_html.HTMLParser(
        no_network=True, remove_comments=True, remove_pis=True, huge_tree=False, default_doctype=False
    )
    try:
        doc = lxml_html.document_fromstring(data, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return ""
    if doc is None:
        return ""
    for bad in doc.xpath("//script | //style | //head | //template"):
        bad.drop_tree()
    for br in doc.xpath("//br | //p | //div | //tr | //li | //h1 | //h2 | //h3 | //table"):
        br.tail = "\n" + (br.tail or "")
    text = doc.text_content() or ""
    return str(text)[: limit * 2]


def namespace_score(data: bytes, namespaces: tuple[str, ...]) -> int:
    """How sure an XML parser can be that ``data`` is its format, from the namespaces it owns.

    80 when the root element is in one of ``namespaces``, 60 when one of them merely appears near the
    start (a wrapper element, a BOM-less oddity), 0 otherwise or when the bytes are not XML at all.
    """
    if not looks_like_xml(data):
        return 0
    if root_namespace(data) in namespaces:
        return 80
    head = sniff_head(data)
    return 60 if any(ns.encode() in head for ns in namespaces) else 0
