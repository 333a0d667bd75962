"""JSON logs with a correlation id on every line of a request.

The correlation id lives in a context variable: the HTTP middleware sets it from
`X-Request-ID` (or generates one), handle calls between services pass it explicitly and
the receiver sets it again, so every line a request causes, in any replica, carries it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
_service: contextvars.ContextVar[str | None] = contextvars.ContextVar("service", default=None)

# Accept what clients and proxies send (Serve's proxy echoes any value verbatim, so we
# must log the same one), but never control characters or kilobytes of it.
_VALID_ID = re.compile(r"^[\x20-\x7e]{1,200}$")

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(candidate: str | None) -> str:
    """The caller's id if it is safe to log and echo, else a fresh one."""
    if candidate and _VALID_ID.match(candidate):
        return candidate
    return new_correlation_id()


def current_correlation_id() -> str | None:
    return _correlation_id.get()


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None) -> Iterator[str]:
    """Bind a correlation id to everything logged inside the block."""
    cid = accept_correlation_id(correlation_id)
    token = _correlation_id.set(cid)
    try:
        yield cid
    finally:
        _correlation_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, correlation_id, extras."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": _service.get() or self.service,
            "correlation_id": _correlation_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", stream=None) -> None:
    """Route the `stratmaster` logger tree to JSON lines on stderr, once per process.

    In a Serve replica stderr is captured into Ray's per-worker log files and streamed
    to the driver, so `make run` shows the lines and `dev.logs` can tail them.
    """
    _service.set(service)
    root = logging.getLogger("stratmaster")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        if getattr(handler, "_stratmaster", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler._stratmaster = True  # type: ignore[attr-defined]
    root.addHandler(handler)
