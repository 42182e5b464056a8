"""Documents a page at a time, the most recently added first (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from openvrm.documents.service import DocumentService
from openvrm.errors import InvalidValue
from openvrm.vault.core import UnlockedVault


def test_newest_pages_through_every_document_once(unlocked: UnlockedVault) -> None:
    docs = DocumentService(unlocked)
    added = [
        docs.add(f"note {i}".encode(), filename=f"n{i}.txt", title=f"Note {i}").document for i in range(7)
    ]
    assert docs.newest(limit=3) == (docs.newest(limit=3, offset=0)[0], 7)
    pages = [docs.newest(limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [total for _, total in pages] == [7, 7, 7, 7]
    assert [[d.title for d in page] for page, _ in pages] == [
        ["Note 6", "Note 5", "Note 4"],
        ["Note 3", "Note 2", "Note 1"],
        ["Note 0"],
        [],
    ]
    # each page's records are the full, opened records the single-document read gives
    assert pages[2][0] == [docs.get(added[0].id)]
    for bad in ({"limit": 0}, {"limit": 3, "offset": -1}):
        with pytest.raises(InvalidValue):
            docs.newest(**bad)


def test_newest_of_an_empty_vault(unlocked: UnlockedVault) -> None:
    assert DocumentService(unlocked).newest(limit=50) == ([], 0)
