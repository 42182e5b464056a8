"""The registry: choice by score, tie-breaking, plug-ins through entry points, and the public surface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import openvrm.documents.parsers as parsers_pkg
from openvrm.documents.parsers import ParsedDocument, ParserRegistry, new_registry, parse, registry

from .support import DATA

BUILTINS = ["facturx", "pdf", "cii", "ubl", "email", "image", "text"]
DOCS = Path(__file__).resolve().parents[3] / "docs" / "parsers.md"


class FakeParser:
    def __init__(self, name: str, score: int = 50, result: Any = None, fail: str | None = None) -> None:
        self.name = name
        self.formats = ("text",)
        self._score = score
        self._result = result
        self._fail = fail

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        if self._fail == "score":
            raise RuntimeError("boom")
        return self._score

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        if self._fail == "parse":
            raise RuntimeError("secret file content must not show")
        if self._result is not None:
            return self._result  # type: ignore[no-any-return]
        return ParsedDocument(format="text", status="parsed", text=f"by {self.name}")


class FakeEntryPoint:
    def __init__(self, name: str, obj: Any) -> None:
        self.name = name
        self.value = f"fake:{name}"
        self.group = registry.ENTRY_POINT_GROUP
        self._obj = obj

    def load(self) -> Any:
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_builtins_are_registered_in_order() -> None:
    assert [p.name for p in new_registry(plugins=False).parsers] == BUILTINS


def test_public_surface() -> None:
    assert sorted(parsers_pkg.__all__) == sorted(
        [
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
    )
    for name in parsers_pkg.__all__:
        assert hasattr(parsers_pkg, name)


def test_highest_score_wins_and_ties_are_deterministic() -> None:
    reg = ParserRegistry()
    for parser in (FakeParser("zeta", 50), FakeParser("alpha", 50), FakeParser("low", 10)):
        reg.register(parser)
    assert reg.parse(b"x", filename="x").text == "by alpha"
    reg2 = ParserRegistry()
    reg2.register(FakeParser("plugin-a", 50))
    reg2.register(FakeParser("zz-builtin", 50), builtin=True)
    assert reg2.parse(b"x", filename="x").text == "by zz-builtin"  # built-ins win ties
    reg2.register(FakeParser("plugin-b", 51))
    result = reg2.parse(b"x", filename="x")
    assert (result.text, result.parser) == ("by plugin-b", "plugin-b")


def test_a_parser_that_raises_gives_an_unparsed_result() -> None:
    reg = ParserRegistry()
    reg.register(FakeParser("bad", 50, fail="parse"))
    result = reg.parse(b"x", filename="x")
    assert (result.status, result.format, result.parser) == ("unparsed", "text", "bad")
    assert result.reason == "the bad parser failed on this file (RuntimeError)"


def test_a_score_that_raises_counts_as_zero() -> None:
    reg = ParserRegistry()
    reg.register(FakeParser("bad", fail="score"))
    reg.register(FakeParser("good", 5))
    assert reg.parse(b"x", filename="x").parser == "good"


def test_a_parser_returning_junk_is_contained() -> None:
    reg = ParserRegistry()
    reg.register(FakeParser("junk", result={"not": "a result"}))
    result = reg.parse(b"x", filename="x")
    assert result.status == "unparsed"
    assert result.reason == "the junk parser returned no result"


def test_caps_are_enforced_on_results() -> None:
    reg = ParserRegistry()
    reg.register(
        FakeParser("long", result=ParsedDocument(format="text", status="parsed", text="x" * 300_000))
    )
    assert len(reg.parse(b"x", filename="x").text) == parsers_pkg.MAX_TEXT_CHARS


def test_duplicate_and_malformed_parsers_are_refused() -> None:
    reg = new_registry(plugins=False)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(FakeParser("pdf"))
    with pytest.raises(ValueError, match="not a document parser"):
        reg.register(object())  # type: ignore[arg-type]


def test_plugins_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class OdtParser(FakeParser):
        def __init__(self) -> None:
            super().__init__("odt", 95)

        def score(self, data: bytes, filename: str, media_type: str | None) -> int:
            return 95 if filename.endswith(".odt") else 0

    bad_formats = FakeParser("weird")
    bad_formats.formats = ("spreadsheet",)  # type: ignore[assignment]
    points = [
        FakeEntryPoint("odt", OdtParser),  # a class: instantiated
        FakeEntryPoint("broken", ImportError("no module named nowhere")),
        FakeEntryPoint("clash", FakeParser("pdf")),
        FakeEntryPoint("weird", bad_formats),
        FakeEntryPoint("factory", lambda: FakeParser("from-factory", 0)),
    ]
    monkeypatch.setattr(
        registry, "entry_points", lambda group: points if group == registry.ENTRY_POINT_GROUP else []
    )

    reg = new_registry()

    assert [p.name for p in reg.parsers] == [*BUILTINS, "from-factory", "odt"]
    assert len(reg.load_errors) == 3
    assert any("broken" in e and "ImportError" in e for e in reg.load_errors)
    assert any("clash" in e and "already registered" in e for e in reg.load_errors)
    assert any("weird" in e and "formats" in e for e in reg.load_errors)
    assert reg.parse(b"anything", filename="a.odt").parser == "odt"
    # The built-ins still work.
    assert reg.parse((DATA / "ubl-invoice.xml").read_bytes(), filename="u.xml").format == "ubl"


def test_unknown_input() -> None:
    result = parse(b"\x00\x01\x02\x03" * 10, filename="blob", media_type="application/x-thing")
    assert (result.format, result.status) == ("unknown", "unparsed")
    assert result.reason == "no parser recognises this kind of file (declared as application/x-thing)"


def test_result_invariants() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        ParsedDocument(format="pdf", status="partial")
    with pytest.raises(ValueError, match="unknown format"):
        ParsedDocument(format="docx", status="parsed")  # type: ignore[arg-type]


def test_registry_docstring_and_docs_state_the_contract() -> None:
    contract = registry.__doc__ or ""
    docs = DOCS.read_text(encoding="utf-8")
    for text in (contract, docs):
        for phrase in ("MUST NOT raise", "network", "disk", "MAX_INPUT_BYTES", "openvrm.parsers"):
            assert phrase in text, phrase
    for name in BUILTINS:
        assert f"`{name}`" in docs, f"docs/parsers.md does not describe the {name} parser"
