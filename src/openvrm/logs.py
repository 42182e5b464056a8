"""Structured logs: one JSON object per line on stderr, through the standard :mod:`logging` module.

Every entry has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``event`` (a short, fixed name such as
``http.request``), plus the fields the caller passes. The rule for callers is strict: **fields name
operations, never people**. Log methods, route templates, statuses, durations, ids and counts; never
request bodies, query strings, cookies, passphrases, tokens, file names or any value a person typed.

Exceptions are reduced to their type and the place they were raised (file, line, function): their
messages and tracebacks can quote personal data (a validator saying which e-mail address is invalid),
so they are never written.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import IO, Any

LOGGER = "openvrm"
_RESERVED = ("time", "level", "logger", "event")
_SCALARS = (str, int, float, bool, type(None))


def get_logger(name: str = LOGGER) -> logging.Logger:
    """A logger under the ``openvrm`` hierarchy (``name`` may be a sub-name such as ``openvrm.server``)."""
    return logging.getLogger(name)


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields``; only scalar field values are kept (no objects that may hide data)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"openvrm_fields": fields})


def exception_site(exc: BaseException) -> dict[str, Any]:
    """Where an exception was raised, without its message: type, file name, line and function."""
    site: dict[str, Any] = {"error_type": type(exc).__name__}
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        site["error_file"] = last.filename.rsplit("/", 1)[-1]
        site["error_line"] = last.lineno
        site["error_function"] = last.name
    return site


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; drops exception messages and tracebacks on purpose."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.msg if isinstance(record.msg, str) and not record.args else record.getMessage(),
        }
        fields = getattr(record, "openvrm_fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _RESERVED and isinstance(value, _SCALARS):
                    entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            for key, value in exception_site(record.exc_info[1]).items():
                entry.setdefault(key, value)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


_HANDLER_FLAG = "_openvrm_json_handler"


def configure(
    level: int | str = logging.INFO,
    *,
    stream: IO[str] | None = None,
    loggers: tuple[str, ...] = (LOGGER, "uvicorn"),
) -> logging.Handler:
    """Send the named loggers to ``stream`` (stderr by default) as JSON lines; safe to call twice.

    Earlier handlers installed by this function are replaced, other handlers are left alone, and the
    loggers stop propagating so no other formatter prints the same record in another shape.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_FLAG, True)
    for name in loggers:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, _HANDLER_FLAG, False):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return handler
