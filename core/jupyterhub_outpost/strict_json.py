"""JSON from another party, decoded strictly: only what RFC 8259 allows, and nothing that
breaks later.

Python's ``json.loads`` also accepts ``NaN``, ``Infinity`` and ``-Infinity``, turns
``1e999`` into ``inf``, and raises a bare ValueError (not a JSONDecodeError) for an integer
of more than 4300 digits (the int-string limit). :func:`loads` refuses all of these with a
:class:`JSONError` whose message says what is wrong, so that every caller can answer 400.
Used by the Outpost, the hub's API handlers and the tunnel daemon for request bodies, and
by the hub for the Outposts' answers.
"""

from __future__ import annotations

import json
import math

MAX_DIGITS = 1000  # longer numbers are refused (Python's own limit is 4300)


class JSONError(ValueError):
    """The text is not strict JSON; ``str(error)`` says why, for the other party."""


def _constant(name: str):
    raise JSONError(f"{name} is not a JSON number; send finite numbers only")


def _float(text: str) -> float:
    if len(text) > MAX_DIGITS:
        raise JSONError(f"a number of {len(text)} characters is too long")
    value = float(text)
    if not math.isfinite(value):
        raise JSONError(f"the number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise JSONError(f"an integer of {len(text)} digits is too long")
    return int(text)


def loads(data: str | bytes):
    """Decode ``data``; raise :class:`JSONError` for anything but strict, finite JSON."""
    try:
        return json.loads(data, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except JSONError:
        raise
    except UnicodeDecodeError as e:
        raise JSONError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise JSONError(f"not valid JSON: {e}") from None
    except ValueError as e:  # a limit of the decoder itself
        raise JSONError(f"not accepted: {e}") from None
