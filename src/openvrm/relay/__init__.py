"""An intentcasting relay (docs/protocol.md section 12, docs/relay.md).

People's agents publish pseudonymous **intents**; vendors subscribe with filters, receive matching intents
by signed webhook and through a pull feed, and answer with **sealed offers** the relay cannot read; the
intent's author closes it with a signed **decision**, which every vendor that received it is told.

* :class:`RelayConfig` / :class:`RelayLimits`: what a relay is (:mod:`openvrm.relay.config`);
* :class:`Relay`: the core, without a web framework (:mod:`openvrm.relay.service`);
* :class:`DeliveryWorker`: webhook delivery with backoff (:mod:`openvrm.relay.worker`);
* :func:`create_relay_app`: the FastAPI app (:mod:`openvrm.relay.app`).
"""

from __future__ import annotations

from openvrm.relay.app import create_relay_app
from openvrm.relay.config import RelayConfig, RelayLimits
from openvrm.relay.matching import IntentFacts
from openvrm.relay.service import Relay
from openvrm.relay.worker import DeliveryWorker, RunResult, WorkerPool

__all__ = [
    "DeliveryWorker",
    "IntentFacts",
    "Relay",
    "RelayConfig",
    "RelayLimits",
    "RunResult",
    "WorkerPool",
    "create_relay_app",
]
