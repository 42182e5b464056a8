"""What the ledger pages show, gathered from the core: page contexts and the spending chart's geometry.

Presentation only: filtering a list for display, laying out bars. No FastAPI here, so both
:mod:`openvrm.server.pages` (the dashboard and the vendor list) and :mod:`openvrm.server.ledger_pages`
can use it. The chart is plain SVG drawn on the server; its numbers are also given as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta

from openvrm.directory import directory
from openvrm.directory.catalog import SearchHit
from openvrm.ledger import spending
from openvrm.ledger.upcoming import KINDS as EVENT_KINDS
from openvrm.ledger.upcoming import upcoming
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import RelationshipRecord, VendorService

CHART_MONTHS = 12
CHART_CURRENCIES = 3  # at most this many charts, the currencies with the most spent first
_W, _H, _TOP, _BOTTOM, _LEFT, _RIGHT = 640, 240, 24, 28, 8, 8


@dataclass(frozen=True)
class Bar:
    month: str  # YYYY-MM
    label: str  # "Mar"
    total: Decimal
    x: float
    y: float
    width: float
    height: float
    label_x: float


@dataclass(frozen=True)
class Chart:
    currency: str
    bars: list[Bar]
    highest: Bar
    sum: Decimal
    width: int = _W
    height: int = _H
    baseline: float = _H - _BOTTOM

    @property
    def first(self) -> str:
        return self.bars[0].month

    @property
    def last(self) -> str:
        return self.bars[-1].month


def _months(today: date, count: int) -> list[date]:
    first = today.replace(day=1) - relativedelta(months=count - 1)
    return [first + relativedelta(months=i) for i in range(count)]


def spending_charts(uv: UnlockedVault, today: date, months: int = CHART_MONTHS) -> list[Chart]:
    """One bar chart per currency of the money spent in each of the last ``months`` months."""
    days = _months(today, months)
    since, until = days[0], (days[-1] + relativedelta(months=1)) - relativedelta(days=1)
    rows = spending.totals(spending.entries(uv), by="month", since=since, until=until)
    per_currency: dict[str, dict[str, Decimal]] = {}
    for r in rows:
        per_currency.setdefault(r.currency, {})[r.key] = r.total
    ranked = sorted(per_currency.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    charts = []
    slot = (_W - _LEFT - _RIGHT) / len(days)
    usable = _H - _TOP - _BOTTOM
    for currency, totals in ranked[:CHART_CURRENCIES]:
        top = max([v for v in totals.values() if v > 0], default=Decimal(0))
        bars = []
        for i, d in enumerate(days):
            key = d.strftime("%Y-%m")
            total = totals.get(key, Decimal(0))
            height = float(max(total, Decimal(0)) / top) * usable if top else 0.0
            x = _LEFT + i * slot + slot * 0.15
            bars.append(
                Bar(
                    key,
                    d.strftime("%b"),
                    total,
                    round(x, 1),
                    round(_H - _BOTTOM - height, 1),
                    round(slot * 0.7, 1),
                    round(height, 1),
                    round(x + slot * 0.35, 1),
                )
            )
        highest = max(bars, key=lambda b: b.total)
        charts.append(Chart(currency, bars, highest, sum(totals.values(), Decimal(0))))
    return charts


def dashboard_context(uv: UnlockedVault, today: date) -> dict[str, Any]:
    """The dashboard's ledger part: the spending chart and the next few events."""
    return {
        "charts": spending_charts(uv, today),
        "next_events": upcoming(uv, today=today, days=30)[:5],
        "event_kinds": EVENT_KINDS,
    }


def _in_folder(rel: RelationshipRecord, folder: str) -> bool:
    return rel.folder is not None and (rel.folder == folder or rel.folder.startswith(folder + "/"))


def vendor_list_context(
    uv: UnlockedVault, *, tag: str | None, folder: str | None, query: str | None, country: str | None
) -> dict[str, Any]:
    """The vendor list narrowed to a tag or folder (of a relationship), and directory hits for ``query``."""
    service = VendorService(uv)
    all_vendors = service.list()
    vendors = all_vendors
    rels = service.relationships()
    by_vendor: dict[str, list[RelationshipRecord]] = {}
    for r in rels:
        by_vendor.setdefault(r.vendor_id, []).append(r)
    tag = tag.strip().lower() if tag else None
    folder = folder.strip().strip("/") if folder else None
    if tag:
        vendors = [v for v in vendors if any(tag in r.tags for r in by_vendor.get(v.id, []))]
    if folder:
        vendors = [v for v in vendors if any(_in_folder(r, folder) for r in by_vendor.get(v.id, []))]
    hits: list[SearchHit] = []
    query = (query or "").strip()[:200]
    country = (country or "").strip().upper()[:2] or None
    if query:
        hits = directory().search(query, country=country, limit=10)
    return {
        "vendors": vendors,
        "rel_counts": {vid: len(rs) for vid, rs in by_vendor.items()},
        "vendor_tags": {vid: sorted({t for r in rs for t in r.tags}) for vid, rs in by_vendor.items()},
        "all_tags": sorted({t for r in rels for t in r.tags}),
        "all_folders": sorted({r.folder for r in rels if r.folder}),
        "filter_tag": tag,
        "filter_folder": folder,
        "directory_query": query,
        "directory_country": country,
        "directory_hits": hits,
        "added": {v.directory_slug: v.id for v in all_vendors if v.directory_slug},
    }
