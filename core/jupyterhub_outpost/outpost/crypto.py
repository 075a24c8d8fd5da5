"""Encryption at rest for what a hub entrusts to the Outpost.

Spawner state, the env a hub sends (it holds the server's API token) and the certs are
stored encrypted with Fernet. ``OUTPOST_CRYPT_KEYS`` holds one or more comma-separated
Fernet keys (``jupyterhub-outpost keygen`` or ``Fernet.generate_key()`` makes one): the
first encrypts, every key decrypts, so a key is rotated by putting the new key first and
keeping the old one until every row has been written again.

When the variable is unset, a key is generated once into ``<data-dir>/crypt_key``
(mode 0600) and a warning is logged: fine for one Outpost with a local data directory,
wrong for several replicas sharing one PostgreSQL database (set the variable there).
"""

import json
import logging
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

ENV_NAME = "OUTPOST_CRYPT_KEYS"
KEY_FILE_NAME = "crypt_key"


class CryptError(Exception):
    """The configured keys cannot decrypt a stored value, or a key is malformed."""


def parse_keys(value: str) -> list[bytes]:
    """Split a comma-separated key list; raise CryptError naming the bad position."""
    keys = []
    for index, part in enumerate(p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            Fernet(part.encode())
        except (ValueError, TypeError):
            raise CryptError(
                f"Key number {index + 1} in {ENV_NAME} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes). Generate one with "
                "'jupyterhub-outpost keygen' or "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
            ) from None
        keys.append(part.encode())
    return keys


def load_or_create_key_file(path: str, log: logging.Logger) -> list[bytes]:
    """Read the key file, or create it once with mode 0600."""
    if os.path.exists(path):
        with open(path, encoding="ascii") as f:
            return parse_keys(f.read())
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.decode() + "\n")
    log.warning(
        "%s is not set: generated an encryption key into %s (mode 0600). Back it up with "
        "the database, and set %s instead when several Outposts share one database.",
        ENV_NAME,
        path,
        ENV_NAME,
    )
    return [key]


class Crypt:
    """Encrypts JSON-serialisable values with the first key; decrypts with any key."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise CryptError(f"No encryption key: set {ENV_NAME}.")
        self._first = Fernet(keys[0])
        self._fernet = MultiFernet([self._first, *(Fernet(k) for k in keys[1:])])

    @classmethod
    def from_environment(cls, data_dir: str, log: logging.Logger, environ=None) -> "Crypt":
        environ = os.environ if environ is None else environ
        value = environ.get(ENV_NAME, "").strip()
        if value:
            return cls(parse_keys(value))
        return cls(load_or_create_key_file(os.path.join(data_dir, KEY_FILE_NAME), log))

    def encrypt(self, value) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode("ascii")

    def is_current(self, token: str | None) -> bool:
        """Was ``token`` encrypted with the first key (or is there nothing to encrypt)?"""
        if not token:
            return True
        try:
            self._first.decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def decrypt(self, token: str | None):
        if not token:
            return None
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken:
            raise CryptError(
                f"A stored value cannot be decrypted with the keys in {ENV_NAME}. "
                "Keep the old key in the list (after the new one) while rotating."
            ) from None
