"""The openvrm conformance suite: check a vendor or a person's agent against protocol 0.1.

* :func:`check_vendor` acts as a fresh person's agent against any vendor;
* :class:`AgentChecks` acts as the vendor of a relationship an agent started;
* :func:`check_agent` and :class:`ConformanceVendor` (in :mod:`openvrm.conformance.live`) run a vendor on
  this machine for an agent to connect to.

Each run gives a :class:`Report` of :class:`Check` results (pass, fail or skip). See docs/conformance.md.
"""

from __future__ import annotations

from openvrm.conformance.agent import AGENT_CHECKS, AgentChecks, AgentRelationship
from openvrm.conformance.report import Check, Outcome, Progress, Report
from openvrm.conformance.vendor import VENDOR_CHECKS, check_vendor

__all__ = [
    "AGENT_CHECKS",
    "VENDOR_CHECKS",
    "AgentChecks",
    "AgentRelationship",
    "Check",
    "Outcome",
    "Progress",
    "Report",
    "check_agent",
    "check_vendor",
]


def __getattr__(name: str) -> object:
    # The live server imports uvicorn and the vendor kit's web app; load it only when asked for.
    if name == "check_agent":
        from openvrm.conformance.live import check_agent

        return check_agent
    raise AttributeError(name)
