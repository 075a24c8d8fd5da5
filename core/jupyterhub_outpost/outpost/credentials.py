"""Hub credentials: who may call this Outpost, checked in constant time.

``hub_credentials`` is a dict ``{hub name: secret}`` or the path of a YAML or JSON file
holding it (a mounted Kubernetes Secret). A file is read again when it changes, so a
rotated secret applies without a restart. Secrets are never logged.
"""

import base64
import functools
import hashlib
import hmac
import os
import re

import yaml


class CredentialsError(ValueError):
    """The credentials option or file is malformed."""


# a hub name is an HTTP Basic and SSH user name, a path segment (certificates) and a
# database column of 63 characters
HUB_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")


def check_hub_name(hub) -> None:
    if not (isinstance(hub, str) and HUB_NAME_RE.fullmatch(hub) and set(hub) != {"."}):
        raise CredentialsError(
            f"hub_credentials: the hub name {hub!r} is not 1 to 63 of A-Z a-z 0-9 . _ - "
            "(not only dots)."
        )


def _read_mapping(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = yaml.safe_load(f)  # JSON is YAML
    except OSError as e:
        raise CredentialsError(f"Cannot read {what} file {path}: {e.strerror}.") from None
    except yaml.YAMLError:
        raise CredentialsError(f"{what} file {path} is neither valid YAML nor JSON.") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CredentialsError(f"{what} file {path} must hold a mapping.")
    return value


class FileBackedMapping:
    """A dict option, or a YAML/JSON file re-read when its mtime changes."""

    def __init__(self, source, what: str):
        self.source = source
        self.what = what
        self._cache: dict | None = None
        self._mtime = None

    def get(self) -> dict:
        if isinstance(self.source, dict):
            return self.source
        if not self.source:
            return {}
        mtime = os.stat(self.source).st_mtime_ns
        if self._cache is None or mtime != self._mtime:
            self._cache = _read_mapping(self.source, self.what)
            self._mtime = mtime
        return self._cache


class HubCredentials:
    """``check_basic`` remembers the headers it verified (as SHA-256 digests, in memory
    only, at most ``MAX_REMEMBERED``) while the credentials stay the same: a hub's next
    request costs a digest and a dict lookup instead of a decode and two digests. A header
    it does not remember is checked in full, so wrong credentials take the constant-time
    path every time; any change of the credentials (the file re-read, the dict changed)
    forgets every remembered header."""

    MAX_REMEMBERED = 256

    def __init__(self, source):
        self._mapping = FileBackedMapping(source, "hub_credentials")
        self._verified: dict[bytes, str] = {}  # sha256(header) -> hub
        self._verified_with: dict = {}  # the credentials they were verified with

    def hubs(self) -> dict[str, str]:
        mapping = self._mapping.get()
        for hub, secret in mapping.items():
            check_hub_name(hub)
            if not isinstance(secret, str) or not secret:
                raise CredentialsError(
                    "hub_credentials must map hub names to non-empty secret strings."
                )
        return mapping

    def check_basic(self, header: str | None) -> str | None:
        """The hub name when ``header`` is valid HTTP Basic for a known hub, else None."""
        if not header or not header.startswith("Basic "):
            return None
        mapping = self._mapping.get()
        if mapping != self._verified_with:  # changed (or the first request): check it
            self.hubs()
            self._verified, self._verified_with = {}, dict(mapping)
        key = hashlib.sha256(header.encode()).digest()
        hub = self._verified.get(key)
        if hub is None:
            hub = self._check_basic(header, mapping)
            if hub is not None and len(self._verified) < self.MAX_REMEMBERED:
                self._verified[key] = hub
        return hub

    def _check_basic(self, header: str, mapping: dict) -> str | None:
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        hub, sep, secret = decoded.partition(":")
        if not sep:
            return None
        expected = mapping.get(hub)
        ok = secrets_match(secret, expected)
        return hub if ok and expected is not None else None


_UNKNOWN = hashlib.sha256(os.urandom(32)).digest()


@functools.lru_cache(maxsize=1024)
def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secrets_match(given: str, expected: str | None) -> bool:
    """Constant-time check of ``given`` against ``expected`` (None: an unknown hub).

    Both sides are compared as SHA-256 digests: the work depends only on the length of
    what the client sent, never on the stored secret, its length, where a wrong password
    differs, or whether the hub exists (an unknown hub compares against a random digest).
    """
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(),
        _digest(expected) if expected is not None else _UNKNOWN,
    )
