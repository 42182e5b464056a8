"""The result of a conformance run: one :class:`Check` per rule, gathered in a :class:`Report`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["pass", "fail", "skip"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "skip")


@dataclass(frozen=True)
class Check:
    """One rule checked against the peer: its name, the spec section, the outcome and what was seen."""

    name: str
    section: str
    outcome: Outcome
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "section": self.section, "outcome": self.outcome, "detail": self.detail}


Progress = Callable[[Check], None]
"""Called with each check as soon as it is decided (the CLI prints progress with it)."""


@dataclass
class Report:
    """All checks of one run against one peer (``kind`` is ``vendor`` or ``agent``)."""

    kind: str
    target: str
    checks: list[Check] = field(default_factory=list)
    progress: Progress | None = field(default=None, repr=False, compare=False)

    def add(self, name: str, section: str, outcome: Outcome, detail: str = "") -> Check:
        check = Check(name, section, outcome, detail[:500])
        self.checks.append(check)
        if self.progress is not None:
            self.progress(check)
        return check

    def passed(self, name: str, section: str, detail: str = "") -> Check:
        return self.add(name, section, "pass", detail)

    def failed(self, name: str, section: str, detail: str) -> Check:
        return self.add(name, section, "fail", detail)

    def skipped(self, name: str, section: str, detail: str) -> Check:
        return self.add(name, section, "skip", detail)

    def get(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def counts(self) -> dict[str, int]:
        return {o: sum(1 for c in self.checks if c.outcome == o) for o in OUTCOMES}

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_json() for c in self.checks],
        }
