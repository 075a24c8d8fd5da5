"""Request context in log lines: ``[req=<id> hub=<hub> server=<name>]`` before the message
(and ``worker=<i>`` under ``serve --workers N``).

Handlers set the context at the start of a request; asyncio copies it into every task
started from there (background starts, event relays, flavor updates), so their lines carry
the same request id. Only names and ids are logged, never a secret.
"""

import logging
from contextvars import ContextVar

_context: ContextVar[dict | None] = ContextVar("outpost_request_context", default=None)


def set_context(**values) -> dict:
    """Start a request's context (request_id, hub, server); returns the dict to update."""
    context = {k: v for k, v in values.items() if v}
    _context.set(context)
    return context


worker = ""  # this worker's index under `serve --workers N` (workers.py), else ""


def prefix() -> str:
    context = _context.get()
    if not context:
        return ""
    parts = [
        f"{key}={context[name]}"
        for key, name in (("req", "request_id"), ("hub", "hub"), ("server", "server"))
        if context.get(name)
    ]
    if worker and parts:
        parts.append(f"worker={worker}")
    return f"[{' '.join(parts)}] " if parts else ""


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _escape(value):
    """A string argument with its control characters escaped: a value a hub sent (a flavor
    name, a user name) cannot start a forged log line."""
    return value.translate(_CONTROL) if isinstance(value, str) else value


class ContextFilter(logging.Filter):
    """Adds the request context to records passing a handler (once per record) and escapes
    control characters in the message's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_outpost_context", False):
            record._outpost_context = True
            if isinstance(record.args, tuple):
                record.args = tuple(_escape(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: _escape(v) for k, v in record.args.items()}
            text = prefix()
            if text:
                record.msg = text + str(record.msg)
        return True


def current(name: str) -> str | None:
    """One value (``hub``, ``server``, ``request_id``) of the current request's context."""
    context = _context.get()
    return context.get(name) if context else None
