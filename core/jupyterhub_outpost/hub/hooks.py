"""Resolving operator hooks: every hook option may be a value, a function or a coroutine."""

from __future__ import annotations

import inspect
from typing import Any


async def resolve_hook(value: Any, *args: Any) -> Any:
    """Return ``value`` itself, or ``value(*args)`` (awaited when it is awaitable).

    This is the one place where the OutpostSpawner's hook options (``request_url``,
    ``request_headers``, ``custom_env``, ``custom_misc``, ``ssh_node``, ...) are
    evaluated, so every hook accepts the same three forms.
    """
    if callable(value):
        value = value(*args)
    if inspect.isawaitable(value):
        value = await value
    return value
