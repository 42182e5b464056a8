"""The rules file: parsing with clear errors, and which intent a rule answers."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_intent
from openvrm.protocol.terms import term
from openvrm.vendor.rules import RulesError, load_rules, parse_rules, rules_document

TELCO_RULE: dict[str, Any] = {
    "category": "telecom.mobile",
    "country": ["FR"],
    "max_price_at_least": "10",
    "keywords_any": [],
    "offer": {
        "price": "12.99",
        "currency": "EUR",
        "per": "month",
        "includes": ["60 GB"],
        "features": {"data_gb": "60", "esim": "yes"},
        "conditions": "Cancel any month.",
        "contract_months": 0,
        "valid_days": 7,
    },
}
ACCEPTED = [m.term_ref(term("intent-only")), m.term_ref(term("service-delivery-only"))]


def intent(
    category: str = "telecom.mobile",
    *,
    text: str = "A mobile plan with 50 GB, no lock-in",
    price: str | None = "15",
    currency: str = "EUR",
    per: str = "month",
    country: str | None = "FR",
    months_max: int | None = None,
    terms: tuple[str, ...] = ("intent-only",),
) -> dict[str, Any]:
    constraints: dict[str, Any] = {}
    if price is not None:
        constraints["price_max"] = {"amount": price, "currency": currency, "per": per}
    if months_max is not None:
        constraints["contract_months_max"] = months_max
    return make_intent(
        KeyPair.generate(),
        category=category,
        text=text,
        constraints=constraints,
        where={"country": country} if country else None,
        terms=[term(t) for t in terms],
        expires_at=m.now_utc() + timedelta(days=7),
    )


def rules_of(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)}, indent=2)


def test_the_documented_example_parses_and_matches() -> None:
    rules = parse_rules(rules_of(TELCO_RULE))
    assert len(rules) == 1
    rule = rules.rules[0]
    assert rule.offer.features == (("data_gb", "60"), ("esim", "yes"))
    found = rules.match(intent(), ACCEPTED)
    assert found.rule is rule
    assert found.terms == (m.term_ref(term("intent-only")),)


def test_syntax_errors_name_the_line() -> None:
    text = '{"rules": [\n  {"category": "telecom.mobile",\n   "offer": }\n]}'
    with pytest.raises(RulesError, match=r"rules.json: line 3, column 13"):
        parse_rules(text, source="rules.json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["offer"].__setitem__("currency", "euro"), r"rules\[0\]\.offer\.currency"),
        (lambda r: r["offer"].__setitem__("price", 12.99), r"rules\[0\]\.offer\.price"),
        (lambda r: r["offer"].__setitem__("per", "week"), r"rules\[0\]\.offer\.per"),
        (lambda r: r["offer"].pop("price"), r"rules\[0\]\.offer\.price: missing"),
        (lambda r: r["offer"].__setitem__("valid_days", 400), r"rules\[0\]\.offer\.valid_days"),
        (lambda r: r["offer"].__setitem__("contract_months", -1), r"rules\[0\]\.offer\.contract_months"),
        (lambda r: r["offer"].__setitem__("colour", "red"), r"rules\[0\]\.offer\.colour: unknown field"),
        (lambda r: r.__setitem__("category", "telecom.pigeons"), r"rules\[0\]\.category: .*not a category"),
        (lambda r: r.__setitem__("country", ["France"]), r"rules\[0\]\.country"),
        (lambda r: r.__setitem__("max_price_at_least", "ten"), r"rules\[0\]\.max_price_at_least"),
        (lambda r: r.__setitem__("even_over_budget", "yes"), r"rules\[0\]\.even_over_budget"),
        (lambda r: r.__setitem__("keyword", ["5g"]), r"rules\[0\]\.keyword: unknown field"),
        (lambda r: r.pop("offer"), r"rules\[0\]\.offer: missing"),
    ],
)
def test_field_errors_name_the_field(change: Any, field: str) -> None:
    rule = copy.deepcopy(TELCO_RULE)
    change(rule)
    with pytest.raises(RulesError, match=field):
        parse_rules(rules_of(rule))


def test_the_document_shape_is_checked() -> None:
    with pytest.raises(RulesError, match='"rules" list'):
        parse_rules("[]")
    with pytest.raises(RulesError, match="unknown field"):
        parse_rules('{"rules": [], "extra": 1}')
    with pytest.raises(RulesError, match=r"rules\[1\]: a rule is an object"):
        parse_rules(rules_of(TELCO_RULE, "telecom"))  # type: ignore[arg-type]


def test_toml_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\ncategory = "energy.*"\n[rules.offer]\nprice = "79.00"\ncurrency = "EUR"\nper = "month"\n'
    )
    rules = load_rules(path)
    assert rules.rules[0].category == "energy"
    assert rules.match(intent("energy.gas", price=None), ACCEPTED).rule is not None
    path.write_text('[[rules]]\ncategory = "energy"\nprice = \n')
    with pytest.raises(RulesError, match="line 3"):
        load_rules(path)
    assert len(load_rules(tmp_path / "absent.json")) == 0


def test_match_reasons() -> None:
    rules = parse_rules(rules_of(TELCO_RULE))
    cases = {
        "does not cover": intent("telecom.broadband"),
        "not in FR": intent(country="DE"),
        "below 10": intent(price="8"),
        "over the intent's budget": intent(price="12"),
        "none of the terms": intent(terms=("service-delivery-plus-portability",)),
    }
    for reason, item in cases.items():
        found = rules.match(item, ACCEPTED)
        assert found.rule is None and reason in found.reason, (reason, found.reason)
    # Another currency or period cannot be compared: the ceiling does not stop the offer.
    assert rules.match(intent(price="12", per="year"), ACCEPTED).rule is not None
    # No ceiling at all: answered.
    assert rules.match(intent(price=None), ACCEPTED).rule is not None
    assert parse_rules(rules_of(TELCO_RULE)).match(intent(), []).rule is None


def test_even_over_budget_keywords_contract_and_first_match() -> None:
    over = dict(TELCO_RULE, even_over_budget=True)
    assert parse_rules(rules_of(over)).match(intent(price="12"), ACCEPTED).rule is not None
    keyed = dict(TELCO_RULE, keywords_any=["eSIM", "5G"])
    rules = parse_rules(rules_of(keyed))
    assert rules.match(intent(text="Un forfait 5g"), ACCEPTED).rule is not None
    assert "keywords" in rules.match(intent(text="a plan"), ACCEPTED).reason
    locked = copy.deepcopy(TELCO_RULE)
    locked["offer"]["contract_months"] = 12
    assert "12" not in parse_rules(rules_of(locked)).match(intent(months_max=12), ACCEPTED).reason
    assert "at most 0" in parse_rules(rules_of(locked)).match(intent(months_max=0), ACCEPTED).reason
    cheap = copy.deepcopy(TELCO_RULE)
    cheap["offer"]["price"] = "9.99"
    first, second = parse_rules(rules_of(TELCO_RULE, cheap)).rules
    found = parse_rules(rules_of(TELCO_RULE, cheap)).match(intent(price="11"), ACCEPTED)
    assert found.rule == second and found.rule != first
    assert parse_rules(rules_of(TELCO_RULE, cheap)).match(intent(), ACCEPTED).rule == first
    assert "no rules" in parse_rules('{"rules": []}').match(intent(), ACCEPTED).reason


def test_rules_document_round_trips() -> None:
    text = rules_document([TELCO_RULE])
    assert parse_rules(text).rules[0].offer.price == "12.99"
    with pytest.raises(RulesError):
        rules_document([{"category": "nope"}])
