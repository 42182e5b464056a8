"""The published manifest schema and the one the importer uses are the same file, and it is valid."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from openvrm.errors import ArchiveError
from openvrm.exchange import manifest_schema
from openvrm.exchange.format import check_entry_name, parse_time, sha_of_entry

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_published_schema_is_the_packaged_schema() -> None:
    packaged = resources.files("openvrm.exchange").joinpath("export.schema.json").read_bytes()
    assert (DOCS / "export.schema.json").read_bytes() == packaged


def test_schema_is_valid_draft_2020_12() -> None:
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_docs_describe_the_format() -> None:
    text = (DOCS / "export-format.md").read_text()
    for word in ("manifest.json", "format_version", "files/", "age -d", "export.schema.json"):
        assert word in text
    assert "restore" in (DOCS / "backup.md").read_text().lower()


@pytest.mark.parametrize(
    "name", ["../x", "/abs", "a/../b", "files//x", "C:/x", "files\\x", "x\x00", "", "./manifest.json"]
)
def test_unsafe_names(name: str) -> None:
    with pytest.raises(ArchiveError, match="unsafe name"):
        check_entry_name(name)


def test_names_of_the_format() -> None:
    check_entry_name("manifest.json")
    check_entry_name("files/")
    check_entry_name("files/" + "a" * 64)
    assert sha_of_entry("files/" + "a" * 64) == "a" * 64
    assert sha_of_entry("files/" + "A" * 64) is None
    with pytest.raises(ArchiveError, match="not part of the format"):
        check_entry_name("files/" + "a" * 63)


def test_timestamps_need_a_time_zone() -> None:
    assert parse_time("2026-01-02T03:04:05.000001+02:00", "x").hour == 1
    with pytest.raises(ArchiveError, match="no time zone"):
        parse_time("2026-01-02T03:04:05", "here")
