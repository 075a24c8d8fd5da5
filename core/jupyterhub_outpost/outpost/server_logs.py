"""The most recent log lines of each server, for the ``logs`` of poll and stop answers.

A logging handler on the Outpost's logger keeps, per (hub, server), the last
``max_lines`` lines logged while that server was being worked on (the request context of
``logcontext`` names it): the Outpost's own lines about it and its spawner's (spawners log
through the Outpost's logger). Secrets are masked before a line is kept: the app puts the redaction
filter on this handler as on every other one. Each line is cut at ``max_chars``.
Nothing is stored in the database; a hub asks for the lines with ``?collect_logs=true``
(as the stock OutpostSpawner does with ``collect_logs``), so an ordinary poll costs
nothing.
"""

import logging

from . import logcontext


class ServerLogs(logging.Handler):
    keeps_access_lines = False  # metrics.py: the access log's lines are not the server's

    def __init__(self, max_lines: int = 100, max_chars: int = 1000):
        super().__init__(level=logging.DEBUG)
        self.max_lines = max_lines
        self.max_chars = max_chars
        # a list, not a deque(maxlen): a deque starts with a block of 64 entries, and most
        # servers have a few lines
        self._lines: dict[tuple[str, str], list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if self.max_lines <= 0 or getattr(record, "outpost_access_log", False):
            return
        hub, server = logcontext.current("hub"), logcontext.current("server")
        if not hub or not server:
            return
        try:
            message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        prefix = logcontext.prefix()  # the request context names the server already
        if prefix and message.startswith(prefix):
            message = message[len(prefix) :]
        text = f"{record.levelname} {message}"
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 3] + "..."
        lines = self._lines.get((hub, server))
        if lines is None:
            lines = self._lines[(hub, server)] = []
        lines.append(text)
        if len(lines) > self.max_lines:
            del lines[0]

    def lines(self, hub: str, server: str) -> list[str]:
        """The kept lines of one server, oldest first."""
        return list(self._lines.get((hub, server), ()))

    def forget(self, hub: str, server: str) -> None:
        self._lines.pop((hub, server), None)
