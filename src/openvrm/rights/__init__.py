"""GDPR requests to vendors: letters, delivery through the outbox, deadlines, answers, complaints."""

from openvrm.rights import deadlines as _deadlines  # noqa: F401 - registers the upcoming source
from openvrm.rights.letters import LANGUAGES, REQUEST_TYPES, Letter
from openvrm.rights.service import STATES, AnswerResult, Escalation, RightsRequestRecord, RightsService

__all__ = [
    "LANGUAGES",
    "REQUEST_TYPES",
    "STATES",
    "AnswerResult",
    "Escalation",
    "Letter",
    "RightsRequestRecord",
    "RightsService",
]
