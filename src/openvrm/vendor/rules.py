"""A vendor's rules for answering relayed intents with offers, without a person in the loop.

The rules file is a small JSON document (or TOML, when its name ends in ``.toml``)::

    {"rules": [
      {"category": "telecom.mobile", "country": ["FR"], "max_price_at_least": "10", "keywords_any": [],
       "offer": {"price": "12.99", "currency": "EUR", "per": "month", "includes": ["60 GB"],
                 "features": {"data_gb": "60", "esim": "yes"}, "conditions": "Cancel any month.",
                 "contract_months": 0, "valid_days": 7}}
    ]}

Rules are tried in order and the first that matches answers (see :meth:`Rules.match`):

* its ``category`` (a taxonomy id; ``energy`` or ``energy.*`` covers every ``energy.`` category) covers
  the intent's category;
* ``country`` is empty or holds the intent's country (``FR``) or country-region (``FR-ARA``);
* ``keywords_any`` is empty or one of its words occurs in the intent's text (case and accents ignored);
* ``max_price_at_least``: the intent's price ceiling, when it has one, is at least this amount;
* the intent allows at least one of the terms the vendor accepts (the offer accepts those);
* the intent's ``contract_months_max`` is not below the offer's ``contract_months``;
* the intent's ceiling, in the offer's currency and period, is not below the offer's price, unless the
  rule says ``"even_over_budget": true``.

Errors name the line (for a syntax error) or the field (``rules[1].offer.currency``) at fault.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openvrm.errors import InvalidValue
from openvrm.intents.taxonomy import categories, covers
from openvrm.protocol import messages as m
from openvrm.protocol.intents import MAX_OFFER_DAYS

if TYPE_CHECKING:
    from openvrm.vendor.kit import VendorKit
    from openvrm.vendor.relay_client import RelayClient

_AMOUNT = re.compile(r"^(0|[1-9]\d{0,8})(\.\d{1,2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
PERIODS = ("month", "year", "once")
_RULE_KEYS = {"category", "country", "max_price_at_least", "keywords_any", "even_over_budget", "offer"}
_OFFER_KEYS = {
    "price",
    "currency",
    "per",
    "includes",
    "features",
    "conditions",
    "contract_months",
    "valid_days",
}


class RulesError(InvalidValue):
    """A rules file that cannot be used; the message names the line or the field."""

    title = "Invalid rules file"
    code = "invalid-rules"


@dataclass(frozen=True)
class OfferTemplate:
    price: str
    currency: str
    per: str
    includes: tuple[str, ...] = ()
    features: tuple[tuple[str, str], ...] = ()
    conditions: str = ""
    contract_months: int | None = None
    valid_days: int = 7

    def to_json(self) -> dict[str, Any]:
        return {
            "price": self.price,
            "currency": self.currency,
            "per": self.per,
            "includes": list(self.includes),
            "features": dict(self.features),
            "conditions": self.conditions,
            "contract_months": self.contract_months,
            "valid_days": self.valid_days,
        }


@dataclass(frozen=True)
class Rule:
    index: int
    category: str
    offer: OfferTemplate
    country: tuple[str, ...] = ()
    max_price_at_least: Decimal | None = None
    keywords_any: tuple[str, ...] = ()
    even_over_budget: bool = False


@dataclass(frozen=True)
class Match:
    """The outcome of matching one intent: the rule that answers (or ``None``) and why."""

    rule: Rule | None
    reason: str
    terms: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, intent: Mapping[str, Any], accepted_terms: Sequence[Mapping[str, Any]]) -> Match:
        """The first rule that answers ``intent``; ``accepted_terms`` are the vendor's term refs."""
        if not self.rules:
            return Match(None, "no rules: this vendor answers intents by hand")
        reasons: list[str] = []
        for rule in self.rules:
            why, terms = _refusal(rule, intent, accepted_terms)
            if why is None:
                return Match(rule, f"rule {rule.index} matches", terms)
            reasons.append(f"rule {rule.index}: {why}")
        return Match(None, "; ".join(reasons))


# -- parsing --------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _fail(where: str, message: str, source: str) -> RulesError:
    return RulesError(f"{source}: {where}: {message}")


def _amount(value: Any, where: str, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(where, f'an amount is a decimal string like "12.99", not {value!r}', source)
    text = str(value).strip()
    if not _AMOUNT.match(text):
        raise _fail(where, f'an amount is a decimal string like "12.99", not {value!r}', source)
    return text


def _strings(value: Any, where: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(where, "a list of non-empty strings", source)
    return tuple(v.strip() for v in value)


def _offer(raw: Any, where: str, source: str) -> OfferTemplate:
    if not isinstance(raw, dict):
        raise _fail(where, "the offer is an object with price, currency and per", source)
    unknown = sorted(set(raw) - _OFFER_KEYS)
    if unknown:
        raise _fail(
            f"{where}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(_OFFER_KEYS))})", source
        )
    for required in ("price", "currency", "per"):
        if required not in raw:
            raise _fail(f"{where}.{required}", "missing", source)
    price = _amount(raw["price"], f"{where}.price", source)
    currency = raw["currency"]
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _fail(f"{where}.currency", f'an ISO 4217 code like "EUR", not {currency!r}', source)
    if raw["per"] not in PERIODS:
        raise _fail(f"{where}.per", f"one of {', '.join(PERIODS)}, not {raw['per']!r}", source)
    includes = _strings(raw.get("includes"), f"{where}.includes", source)
    if len(includes) > 30 or any(len(i) > 200 for i in includes):
        raise _fail(f"{where}.includes", "at most 30 items of at most 200 characters", source)
    features_raw = raw.get("features") or {}
    if not isinstance(features_raw, dict):
        raise _fail(f"{where}.features", 'an object of names and values, like {"esim": "yes"}', source)
    features: list[tuple[str, str]] = []
    for name, value in features_raw.items():
        if not isinstance(value, str | int) or isinstance(value, bool) or not 0 < len(name) <= 80:
            raise _fail(f"{where}.features.{name}", "a feature value is a string", source)
        features.append((name, str(value)))
    conditions = raw.get("conditions", "")
    if not isinstance(conditions, str) or len(conditions) > 2000:
        raise _fail(f"{where}.conditions", "a text of at most 2000 characters", source)
    months = raw.get("contract_months")
    if months is not None and (type(months) is not int or not 0 <= months <= 120):
        raise _fail(f"{where}.contract_months", "a whole number of months, 0 to 120", source)
    days = raw.get("valid_days", 7)
    if type(days) is not int or not 1 <= days <= MAX_OFFER_DAYS:
        raise _fail(f"{where}.valid_days", f"a whole number of days, 1 to {MAX_OFFER_DAYS}", source)
    return OfferTemplate(price, currency, raw["per"], includes, tuple(features), conditions, months, days)


def _rule(raw: Any, index: int, source: str) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, "a rule is an object", source)
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise _fail(
            f"{where}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(_RULE_KEYS))})", source
        )
    cat = raw.get("category")
    if not isinstance(cat, str) or not cat.strip():
        raise _fail(f"{where}.category", "missing: a taxonomy id like telecom.mobile", source)
    cat = cat.strip().removesuffix(".*")
    if cat not in categories():
        raise _fail(f"{where}.category", f"{cat!r} is not a category of the taxonomy", source)
    countries = tuple(c.upper() for c in _strings(raw.get("country"), f"{where}.country", source))
    for c in countries:
        if not _COUNTRY.match(c):
            raise _fail(f"{where}.country", f"a country code like FR or FR-ARA, not {c!r}", source)
    floor = raw.get("max_price_at_least")
    at_least = Decimal(_amount(floor, f"{where}.max_price_at_least", source)) if floor is not None else None
    over = raw.get("even_over_budget", False)
    if not isinstance(over, bool):
        raise _fail(f"{where}.even_over_budget", "true or false", source)
    if "offer" not in raw:
        raise _fail(f"{where}.offer", "missing: what to offer", source)
    return Rule(
        index=index,
        category=cat,
        offer=_offer(raw["offer"], f"{where}.offer", source),
        country=countries,
        max_price_at_least=at_least,
        keywords_any=tuple(
            _fold(k) for k in _strings(raw.get("keywords_any"), f"{where}.keywords_any", source)
        ),
        even_over_budget=over,
    )


def parse_rules(text: str, *, source: str = "rules", toml: bool = False) -> Rules:
    """Parse and validate a rules document; :class:`RulesError` names the line or field at fault."""
    try:
        doc: Any = tomllib.loads(text) if toml else json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError(f"{source}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise _fail("rules", 'the document is an object with a "rules" list', source)
    extra = sorted(set(doc) - {"rules"})
    if extra:
        raise _fail(extra[0], 'unknown field (the document holds only "rules")', source)
    return Rules(tuple(_rule(raw, i, source) for i, raw in enumerate(doc["rules"])))


def load_rules(path: Path) -> Rules:
    """The rules in ``path``; no rules (answer nothing) when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Rules()
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot be read: {exc}") from None
    return parse_rules(text, source=str(path), toml=path.suffix == ".toml")


def rules_document(rules: Sequence[Mapping[str, Any]]) -> str:
    """A rules file's JSON text (validated), for the demo and for tests."""
    text = json.dumps({"rules": list(rules)}, indent=2) + "\n"
    parse_rules(text)
    return text


# -- matching -------------------------------------------------------------------------------------------


def _refusal(
    rule: Rule, intent: Mapping[str, Any], accepted: Sequence[Mapping[str, Any]]
) -> tuple[str | None, tuple[dict[str, Any], ...]]:
    if not covers(rule.category, str(intent.get("category", ""))):
        return f"category {rule.category} does not cover {intent.get('category')}", ()
    where = intent.get("where") or {}
    if rule.country:
        country = str(where.get("country", "")).upper()
        region = str(where.get("region", "")).upper()
        places = {country, region, f"{country}-{region}" if region and "-" not in region else region}
        if not places & set(rule.country):
            return f"the intent is not in {', '.join(rule.country)}", ()
    if rule.keywords_any:
        text = _fold(str(intent.get("text", "")))
        if not any(k in text for k in rule.keywords_any):
            return "none of the keywords occurs in the intent's text", ()
    terms = tuple(dict(t) for t in intent.get("terms", []) if any(dict(t) == dict(a) for a in accepted))
    if not terms:
        return "the intent allows none of the terms this vendor accepts", ()
    constraints = intent.get("constraints") or {}
    months_max = constraints.get("contract_months_max")
    months = rule.offer.contract_months or 0
    if isinstance(months_max, int) and months > months_max:
        return f"the intent allows at most {months_max} contract months", ()
    ceiling = constraints.get("price_max")
    if isinstance(ceiling, Mapping):
        try:
            amount = Decimal(str(ceiling.get("amount")))
        except InvalidOperation:
            return "the intent's price ceiling is not an amount", ()
        if rule.max_price_at_least is not None and amount < rule.max_price_at_least:
            return f"the intent's ceiling {amount} is below {rule.max_price_at_least}", ()
        same = ceiling.get("currency") == rule.offer.currency and ceiling.get("per") == rule.offer.per
        if same and amount < Decimal(rule.offer.price) and not rule.even_over_budget:
            return f"the offer ({rule.offer.price}) is over the intent's budget ({amount})", ()
    return None, terms


# -- answering ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleOutcome:
    """What :func:`apply_rules` did: the offer sent (or ``None``) and why."""

    offer: dict[str, Any] | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"offer_id": self.offer["offer_id"] if self.offer else None, "reason": self.reason}


def apply_rules(
    kit: VendorKit, relay_client: RelayClient, intent: Mapping[str, Any], rules: Rules | None = None
) -> RuleOutcome:
    """Answer ``intent`` with the first matching rule's offer, sent through ``relay_client``.

    Nothing is sent for an intent we already answered, one that is closed, or one no rule matches.
    """
    rules = rules if rules is not None else load_rules(kit.config.rules_file)
    state = relay_client.intent_state(str(intent.get("intent_id")))
    if state is not None and state != "open":
        return RuleOutcome(None, f"the intent is {state} already")
    accepted = [m.term_ref(t) for t in kit.config.terms()]
    found = rules.match(intent, accepted)
    if found.rule is None:
        return RuleOutcome(None, found.reason)
    tpl = found.rule.offer
    expires = m.parse_time(str(intent["expires_at"]))
    valid_until = min(m.now_utc() + timedelta(days=tpl.valid_days), expires)
    offer = relay_client.send_offer(
        intent,
        price={"amount": tpl.price, "currency": tpl.currency, "per": tpl.per},
        includes=tpl.includes,
        features=[{"name": n, "value": v} for n, v in tpl.features],
        conditions=tpl.conditions,
        contract_months=tpl.contract_months,
        valid_until=valid_until,
        terms=found.terms,
        rule=found.rule.index,
    )
    return RuleOutcome(offer, found.reason)
