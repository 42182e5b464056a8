"""The compiled schema validator (jsonschema-rs) judges records as the reference (python-jsonschema) does.

``messages.validate`` accepts a record only when the compiled validator does; these tests hold the two to the
same verdict on every documented example and on many broken variants of each, so the faster check cannot be
a weaker one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openvrm.protocol import messages as m
from tests.protocol.spec_examples import EXAMPLE

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    1.5,
    -1,
    "",
    "x",
    "did:key:z6Mk",
    "sha256:" + "0" * 64,
    "sha256:" + "0" * 64 + "\n",
    "sha256:" + "٠" * 64,  # Arabic-Indic digits: not [0-9]
    "2026-01-02T03:04:05Z",
    "2026-01-02T03:04:05Z\n",
    "2026-13-45T99:99:99Z",
    "2026-01-02",
    "2026-02-30",
    "not-an-email",
    "a@b",
    "https://example.org/x",
    "not a uri",
    [],
    [1],
    {},
    {"kid": "x", "jws": "a..b"},
]


def _examples() -> list[tuple[str, dict[str, Any]]]:
    found = [(mt.group(2), json.loads(mt.group(3))) for mt in EXAMPLE.finditer(DOC.read_text("utf-8"))]
    return [(name, record) for name, record in found if name in m.SCHEMA_NAMES and isinstance(record, dict)]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _variants(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield record
    yield {**record, "unexpected": 1}
    for path in list(_paths(record)):
        parent_path, last = path[:-1], path[-1]
        for value in ODD_VALUES:
            changed = copy.deepcopy(record)
            parent = changed
            for step in parent_path:
                parent = parent[step]
            parent[last] = value
            yield changed
        if isinstance(last, str):
            dropped = copy.deepcopy(record)
            parent = dropped
            for step in parent_path:
                parent = parent[step]
            del parent[last]
            yield dropped


def test_the_documentation_has_examples_of_every_schema_in_use() -> None:
    names = {name for name, _ in _examples()}
    assert {"proffer", "answer", "agreement", "ledger-event", "acknowledgement"} <= names


def _ends_in_newline(node: Any) -> bool:
    if isinstance(node, str):
        return node.endswith("\n")
    if isinstance(node, dict):
        return any(_ends_in_newline(v) for v in node.values())
    if isinstance(node, list):
        return any(_ends_in_newline(v) for v in node)
    return False


@pytest.mark.parametrize(("name", "record"), _examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_compiled_and_reference_validators_agree(name: str, record: dict[str, Any]) -> None:
    """Same verdict, except that the compiled one is stricter in one place, on purpose.

    Python's ``re`` lets ``$`` match before a final newline, so python-jsonschema takes
    ``"sha256:<hex>\\n"`` for a hash; jsonschema-rs's ``$`` is the end of the string and refuses it.
    The compiled validator never accepts what the reference refuses.
    """
    fast, reference = m._fast_validator(name), m._validator(name)
    checked = 0
    for variant in _variants(record):
        got, expected = fast.is_valid(variant), reference.is_valid(variant)
        if got != expected:
            assert expected and not got and _ends_in_newline(variant), json.dumps(variant)[:500]
            with pytest.raises(m.ProtocolViolation, match="invalid"):
                m.validate(name, variant)
        checked += 1
    assert reference.is_valid(record) and fast.is_valid(record) and checked > 50


def test_a_refused_record_names_the_place_and_a_valid_one_passes() -> None:
    name, record = next((n, r) for n, r in _examples() if n == "ledger-event")
    m.validate(name, record)
    with pytest.raises(m.ProtocolViolation, match="at created_at"):
        m.validate(name, {**record, "created_at": 5})
    with pytest.raises(m.ProtocolViolation, match="JSON object"):
        m.validate(name, [record])


def test_a_value_the_compiled_validator_cannot_read_goes_to_the_reference() -> None:
    name, record = next((n, r) for n, r in _examples() if n == "ledger-event")
    odd = copy.deepcopy(record)
    odd["payload"] = {"amount": object()}  # not JSON: python-jsonschema still accepts an object payload
    m.validate(name, odd)
    with pytest.raises(m.ProtocolViolation):
        m.validate(name, {**odd, "type": "ack"})
