from __future__ import annotations

import pytest

from openvrm.errors import InvalidValue, NotFound
from openvrm.profile.fields import display, validate
from openvrm.profile.service import ProfileService
from openvrm.vault.core import UnlockedVault


@pytest.mark.parametrize(
    ("key", "raw", "stored"),
    [
        ("email", "  Me@Example.ORG ", "Me@example.org"),
        ("email.work", "me@work.example", "me@work.example"),
        ("phone", "+33 6 12 34 56 78", "+33612345678"),
        ("iban", "de89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("birth-date", "1988-04-12", "1988-04-12"),
        ("name", "Zoë  Durand", "Zoë  Durand"),
        ("loyalty.fnac", "FN-1", "FN-1"),
        ("free.shoe-size", "42", "42"),
        (
            "address",
            {"street": "1 rue X", "postal_code": "75002", "city": "Paris", "country": "fr"},
            {"street": "1 rue X", "postal_code": "75002", "city": "Paris", "country": "FR"},
        ),
    ],
)
def test_valid_values_are_normalised(key: str, raw: object, stored: object) -> None:
    assert validate(key, raw)[1] == stored


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("email", "not-an-email", "e-mail"),
        ("phone", "12", "phone"),
        ("phone", "0612345678", "international form"),
        ("iban", "DE89370400440532013001", "IBAN"),
        ("birth-date", "12/04/1988", "YYYY-MM-DD"),
        ("birth-date", "2999-01-01", "plausible"),
        ("name", "", "empty"),
        ("name", "bad\x00name", "control"),
        ("loyalty", "x", "needs a label"),
        ("shoe", "42", "unknown field type"),
        ("email.Bad Label", "a@b.org", "label"),
        ("email.", "a@b.org", "label"),  # an empty label was taken for no label: it set the e-mail
        ("address", {"street": "1 rue X"}, "needs city, country"),
        ("address", {"street": "1", "city": "P", "country": "France"}, "two-letter"),
        ("address", {"street": "1", "city": "P", "country": "FR", "planet": "Mars"}, "unknown address parts"),
        ("address", "1 rue X, Paris", "by its parts"),
    ],
)
def test_invalid_values_say_what_is_wrong(key: str, raw: object, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        validate(key, raw)


def test_history_keeps_every_change(unlocked: UnlockedVault) -> None:
    p = ProfileService(unlocked)
    p.set("email", "old@example.org")
    p.set("email", "new@example.org")
    p.set("email", "new@example.org")  # no change, nothing recorded
    p.set("phone", "+49 30 1234567")
    p.unset("phone")
    assert p.current() == {"email": "new@example.org"}
    assert [(c.action, c.value) for c in p.history("email")] == [
        ("set", "old@example.org"),
        ("set", "new@example.org"),
    ]
    assert [c.action for c in p.history("phone")] == ["set", "unset"]
    assert len(p.history()) == 4
    with pytest.raises(NotFound):
        p.get("phone")
    with pytest.raises(NotFound):
        p.unset("phone")


def test_rejected_value_changes_nothing(unlocked: UnlockedVault) -> None:
    p = ProfileService(unlocked)
    p.set("email", "ok@example.org")
    with pytest.raises(InvalidValue):
        p.set("email", "broken")
    assert p.current() == {"email": "ok@example.org"}
    assert len(p.history()) == 1


def test_display_of_an_address() -> None:
    assert display({"street": "1 rue X", "postal_code": "75002", "city": "Paris", "country": "FR"}) == (
        "1 rue X, 75002 Paris, FR"
    )


def test_an_empty_label_does_not_change_the_unlabelled_field(unlocked: UnlockedVault) -> None:
    p = ProfileService(unlocked)
    p.set("email", "ok@example.org")
    with pytest.raises(InvalidValue, match="label"):
        p.set("email.", "other@example.org")
    with pytest.raises(InvalidValue, match="label"):
        p.unset("email.")
    assert p.current() == {"email": "ok@example.org"}
