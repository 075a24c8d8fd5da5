"""The original Outpost's flavor document: flavor sets per hub (``hubs:``) and per user
(``users:``), read as it is (YAML file or dict).

::

    flavors:                      # every flavor: max, maxPerUser, weight, display_name, ...
      small: {max: 10, maxPerUser: 2, runtime: {hours: 4}}
      gpu: {max: 2}
    hubs:                         # which flavors a hub has; the matching set of highest weight
      partner:
        jupyterhub_name: [hub-a, hub-b]     # a list: exact names; a string: regex, glob or exact
        weight: 10
        flavors: [small]                    # absent: every flavor
        flavorsOverride: {small: {max: 4}}  # per-hub values of some flavor fields
    users:                        # which flavors a user has; the matching set of highest weight
      students:
        hubs: [hub-a]                       # optional: only for these hubs
        authentication: {groups: "student*"}  # any key's value matching (regex/glob/exact; a list: in it)
        negate_authentication: false        # true: the users that do NOT match
        forbidden: false                    # true: no flavor at all
        weight: 5
        flavors: [small]
        flavorsOverride: {small: {maxPerUser: 1}}

A user set chooses among all flavors (with the hub set's overrides applied), as in the
original. ``authentication`` is what the hub sends for the user (the stock client:
``{"name", "groups", "access_token"}``), after the admin's ``update_user_authentication``.
"""

import copy
import fnmatch
import re

DOCUMENT_KEYS = {"flavors", "hubs", "users"}


def is_document(value) -> bool:
    """True for the original's document (``{"flavors": {...}, "hubs": ..., "users": ...}``),
    False for a plain ``{flavor name: flavor}`` dict."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("flavors"), dict)
        and set(value) <= DOCUMENT_KEYS
        and all(isinstance(flavor, dict) for flavor in value["flavors"].values())
    )


def matches(pattern: str, value) -> bool:
    """The original's matching: regex full match, else glob, else equality."""
    value = str(value)
    try:
        if re.fullmatch(pattern, value):
            return True
    except re.error:
        pass
    return fnmatch.fnmatchcase(value, pattern) or value == pattern


def _pick(candidates: list[tuple[str, int]]) -> str | None:
    """The matching set of highest weight (the last of equal weights, as the original)."""
    best = None
    for key, weight in candidates:
        if best is None or weight >= best[1]:
            best = (key, weight)
    return best[0] if best else None


def _hub_matches(names, hub: str) -> bool:
    if isinstance(names, list):
        return hub in names
    if isinstance(names, str):
        return matches(names, hub)
    return False


def _select(flavors: dict, rule: dict) -> dict:
    """``flavors`` limited to the rule's ``flavors`` list, with its ``flavorsOverride``."""
    chosen = {
        name: copy.deepcopy(flavor)
        for name, flavor in flavors.items()
        if "flavors" not in rule or name in (rule.get("flavors") or [])
    }
    for name, override in (rule.get("flavorsOverride") or {}).items():
        if name in chosen and isinstance(override, dict):
            chosen[name].update(override)
    return chosen


def _hub_rule(document: dict, hub: str) -> dict:
    sets = document.get("hubs") or {}
    key = _pick(
        [
            (key, int(rule.get("weight", 0)))
            for key, rule in sets.items()
            if isinstance(rule, dict) and _hub_matches(rule.get("jupyterhub_name", []), hub)
        ]
    )
    return sets[key] if key is not None else {}


def hub_flavors(document: dict, hub: str) -> dict:
    """The flavors ``hub`` has (its hub set of highest weight; every flavor without one)."""
    return _select(document.get("flavors") or {}, _hub_rule(document, hub))


def _user_matches(rule: dict, authentication: dict) -> bool:
    matched = False
    for key, pattern in (rule.get("authentication") or {}).items():
        values = authentication.get(key)
        if values is None:
            continue
        values = values if isinstance(values, list) else [values]
        if isinstance(pattern, str):
            matched = matched or any(matches(pattern, v) for v in values)
        elif isinstance(pattern, list):
            matched = matched or any(v in pattern for v in values)
    return matched != bool(rule.get("negate_authentication", False))


def user_flavors(document: dict, hub: str, authentication: dict | None) -> tuple[dict, bool]:
    """``(flavors, forbidden)`` for one user of ``hub``: the hub's flavors when no user set
    matches (or nothing is known of the user), else its user set's."""
    users = document.get("users") or {}
    if not authentication or not users:
        return hub_flavors(document, hub), False
    key = _pick(
        [
            (key, int(rule.get("weight", 0)))
            for key, rule in users.items()
            if isinstance(rule, dict)
            and ("hubs" not in rule or hub in (rule.get("hubs") or []))
            and _user_matches(rule, authentication)
        ]
    )
    if key is None:
        return hub_flavors(document, hub), False
    rule = users[key]
    if rule.get("forbidden", False):
        return {}, True
    base = _select(document.get("flavors") or {}, {})
    for name, override in (_hub_rule(document, hub).get("flavorsOverride") or {}).items():
        if name in base and isinstance(override, dict):
            base[name].update(override)
    return _select(base, rule), False
