"""Waiting for observable state with backoff (the kind build and clusters are synchronous)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    what: str,
    timeout: float,
    *,
    start: float = 0.1,
    cap: float = 5.0,
) -> T:
    """Call ``check`` until it returns something true and return that; the pause between
    calls doubles from ``start`` to ``cap``. TimeoutError names ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = start
    while True:
        result = check()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(min(delay, left))
        delay = min(delay * 2, cap)
