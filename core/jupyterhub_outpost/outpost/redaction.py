"""Secrets out of log lines, whoever logs them.

The Outpost's own code never logs a secret, but the spawners it runs are third-party code:
BatchSpawner logs a server's whole environment (its API token) at DEBUG. Every spawner the
Outpost builds registers the secret values of its hub environment here (variables named
like ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*_KEY``); the filter, on the Outpost's
logger and its handlers, replaces each of them in a record's message and traceback with
``[secret]``. A spawner's secrets are forgotten when the spawner object is garbage
collected, so the set stays as large as the servers this process holds.
"""

import itertools
import logging
import re
import weakref

MASK = "[secret]"
MIN_LENGTH = 8  # shorter values would mask ordinary words; no real token is this short
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(^|_)KEY\Z", re.I)


def secret_values(env: dict) -> set[str]:
    """The values of ``env`` whose variable names say they are secrets."""
    return {
        value
        for key, value in env.items()
        if isinstance(value, str) and len(value) >= MIN_LENGTH and SECRET_NAME.search(key)
    }


class SecretRedactor(logging.Filter):
    """A logging filter that masks every registered secret (once per record)."""

    def __init__(self):
        super().__init__()
        self._secrets: dict[int, frozenset[str]] = {}
        self._keys = itertools.count()
        self._index: dict[str, tuple[str, ...]] | None = None

    def track(self, owner, values) -> None:
        """Mask ``values`` in log lines for as long as ``owner`` (a spawner) lives."""
        values = frozenset(v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH)
        if not values:
            return
        key = next(self._keys)
        self._secrets[key] = values
        self._index = None
        weakref.finalize(owner, self._forget, key)

    def _forget(self, key: int) -> None:
        self._secrets.pop(key, None)
        self._index = None

    def _prefix_index(self) -> dict[str, tuple[str, ...]]:
        """First MIN_LENGTH characters -> the secrets starting with them, longest first
        (a secret that contains another is masked whole). A regex alternation of every
        secret costs ~0.5 ms a line at 1000 servers; this index ~10 us."""
        index = self._index
        if index is None:
            grouped: dict[str, set[str]] = {}
            for values in tuple(self._secrets.values()):
                for value in values:
                    grouped.setdefault(value[:MIN_LENGTH], set()).add(value)
            index = self._index = {
                prefix: tuple(sorted(group, key=len, reverse=True))
                for prefix, group in grouped.items()
            }
        return index

    def redact(self, text: str) -> str:
        index = self._prefix_index()
        if not index:
            return text
        parts, done, i, end = [], 0, 0, len(text) - MIN_LENGTH
        while i <= end:
            for secret in index.get(text[i : i + MIN_LENGTH], ()):
                if text.startswith(secret, i):
                    parts += (text[done:i], MASK)
                    i = done = i + len(secret)
                    break
            else:
                i += 1
        return "".join(parts) + text[done:] if parts else text

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_outpost_redacted_by", None) is self or not self._secrets:
            return True
        record._outpost_redacted_by = self
        message = record.getMessage()
        masked = self.redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True
