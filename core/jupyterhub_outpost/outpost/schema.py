r"""Validation of request bodies against the OpenAPI document (``openapi.json``).

The document is the single source of truth: handlers validate with its component
schemas, and tests check the answers against it too.

Patterns in the document are ECMA 262 regular expressions, as JSON Schema says: ``$``
ends the string. Python's ``re`` lets ``$`` match before a final newline too (``"abc\n"``
matches ``^[a-z]+$``), so the validator reads each pattern with ``$`` as ``\Z``
(:func:`full_match_pattern`): a name, key or id with a trailing newline is refused, as
schemathesis and every other JSON Schema tool read the document.
"""

import json
import os
import re
from functools import cache, lru_cache

from jsonschema import Draft202012Validator, validators  # lean_imports.py
from jsonschema.exceptions import ValidationError

from ..strict_json import JSONError
from ..strict_json import loads as strict_loads
from .errors import OutpostError

OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")  # server names and start ids (fullmatch)


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    with open(OPENAPI_PATH, encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=256)
def full_match_pattern(pattern: str) -> re.Pattern:
    r"""``pattern`` (ECMA 262) compiled for Python with every ``$`` outside a character
    class read as ``\Z``: the end of the string, never "before a final newline"."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    return re.compile("".join(out))


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not full_match_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


FullMatchValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def validator(component: str) -> Draft202012Validator:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return FullMatchValidator(schema)


def parse_json_body(body: bytes) -> dict:
    """Decode a JSON object or raise a 400 that says what is wrong."""
    if not body:
        raise OutpostError(400, "The request body is empty; send a JSON object.")
    too_deep = OutpostError(
        400, f"The request body is nested deeper than {MAX_DEPTH} levels; send flatter JSON."
    )
    try:
        value = strict_loads(body)
    except JSONError as e:
        raise OutpostError(400, f"Invalid request body: {e}.") from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(value, dict):
        raise OutpostError(400, "The request body must be a JSON object.")
    depth, text_ok = _inspect(value)
    if depth > MAX_DEPTH:  # deeper values would overflow the stack later on
        raise too_deep
    if not text_ok:  # "\ud800" escapes decode to strings no file, env or pipe can take
        raise OutpostError(
            400, "The request body holds unpaired UTF-16 surrogates (\\ud800-\\udfff): not text."
        )
    return value


MAX_DEPTH = 64


def _inspect(value) -> tuple[int, bool]:
    """Nesting depth of a decoded JSON value, and whether every string in it (keys too) is
    valid Unicode; without recursion."""
    deepest = 0
    text_ok = True
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and text_ok:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                text_ok = False
    return deepest, text_ok


def validate(component: str, value) -> None:
    """Raise a 400 naming the first place where ``value`` breaks the component schema."""
    errors = sorted(
        validator(component).iter_errors(value),
        key=lambda e: (list(e.path)[:1] != ["name"], [str(p) for p in e.path]),
    )
    if not errors:
        return
    messages = [_describe(error) for error in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    raise OutpostError(400, f"Invalid start request: {'; '.join(messages)}{more}.")


def check_env_names(env: dict) -> None:
    """Refuse a JUPYTERHUB_USER or JUPYTERHUB_SERVER_NAME that JupyterHub itself would not
    make: the user name selects home directories and system users here and both name the
    hub's URLs, so ``../x``, ``.``, a newline or a line separator must not pass."""
    for key, may_be_empty in (("JUPYTERHUB_USER", False), ("JUPYTERHUB_SERVER_NAME", True)):
        name = env.get(key)
        if name is None or (may_be_empty and name == ""):
            continue
        if (
            not name
            or "/" in name
            or set(name) == {"."}
            or name != name.strip()
            or not name.isprintable()  # control characters, U+2028, U+2029, ...
        ):
            raise OutpostError(
                400,
                f"Invalid start request: env.{key} {name!r} is not a name JupyterHub makes "
                "(no '/', not only dots, no surrounding space, no control or separator "
                "characters).",
            )


def is_name(value: str) -> bool:
    """A valid server name or start id: 1 to 63 of A-Z a-z 0-9 . _ -, not only dots."""
    return bool(NAME_RE.fullmatch(value)) and set(value) != {"."}


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.path) or "body"
    if error.validator in ("pattern", "not") and list(error.path) == ["name"]:
        return (
            f"Invalid server name {error.instance!r}: use 1 to 63 of the characters "
            "A-Z a-z 0-9 . _ -, not only dots"
        )
    if error.validator == "not" and list(error.path) == ["user_options", "start_id"]:
        return f"user_options.start_id {error.instance!r} must not be only dots"
    if error.validator == "required":
        return f"the field {error.message.split(' is a required')[0]} is required"
    return f"{where}: {error.message}"
