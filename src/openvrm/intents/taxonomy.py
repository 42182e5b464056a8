"""The documented taxonomy of intent categories (``taxonomy.json`` beside this module).

Ids are dotted (``telecom.mobile``); a parent id covers its children, so a vendor subscribed to
``telecom`` receives ``telecom.mobile`` intents. Each category has a label and aliases, the words people and
contracts use for it, which :func:`category_for` uses to place a contract's free-text category.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from openvrm.errors import InvalidValue

_ID = re.compile(r"^[a-z]+(-[a-z]+)*(\.[a-z]+(-[a-z]+)*)*$")


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    label: str
    aliases: tuple[str, ...]

    @property
    def parent(self) -> str | None:
        return self.id.rsplit(".", 1)[0] if "." in self.id else None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


@functools.cache
def categories() -> dict[str, Category]:
    raw = json.loads(resources.files("openvrm.intents").joinpath("taxonomy.json").read_text("utf-8"))
    out: dict[str, Category] = {}
    for item in raw["categories"]:
        cid = str(item["id"])
        if not _ID.match(cid) or cid in out:
            raise InvalidValue(f"taxonomy: bad or repeated id {cid!r}")
        parent = cid.rsplit(".", 1)[0] if "." in cid else None
        if parent is not None and parent not in out:
            raise InvalidValue(f"taxonomy: {cid} comes before its parent {parent}")
        out[cid] = Category(cid, str(item["label"]), tuple(str(a) for a in item.get("aliases", [])))
    return out


def category(cid: str) -> Category:
    found = categories().get(cid)
    if found is None:
        raise InvalidValue(f"{cid!r} is not a category of the taxonomy (see `vrm intents categories`)")
    return found


def ancestors(cid: str) -> list[str]:
    """``telecom.mobile`` -> ``["telecom.mobile", "telecom"]``: the ids a subscription may name to match."""
    parts = cid.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def covers(subscribed: str, cid: str) -> bool:
    """Whether a subscription to ``subscribed`` receives intents of category ``cid``."""
    return cid == subscribed or cid.startswith(subscribed + ".")


def category_for(text: str | None) -> str | None:
    """The taxonomy id a free-text category (a contract's, say) means, or ``None`` when unsure."""
    if not text:
        return None
    folded = _fold(text)
    if folded in categories():
        return folded
    best: str | None = None
    for c in categories().values():
        names = [_fold(c.label), *(_fold(a) for a in c.aliases)]
        if folded in names and (best is None or len(c.id) > len(best)):
            best = c.id
    return best
