"""Validation of request bodies against the OpenAPI document (``openapi.json``).

The document is the single source of truth: handlers validate with its component
schemas, and tests check the answers against it too.
"""

import json
import os
from functools import cache, lru_cache

from jsonschema import Draft202012Validator

from .errors import OutpostError

OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,63}$"


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    with open(OPENAPI_PATH, encoding="utf-8") as f:
        return json.load(f)


@cache
def validator(component: str) -> Draft202012Validator:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return Draft202012Validator(schema)


def parse_json_body(body: bytes) -> dict:
    """Decode a JSON object or raise a 400 that says what is wrong."""
    if not body:
        raise OutpostError(400, "The request body is empty; send a JSON object.")
    too_deep = OutpostError(
        400, f"The request body is nested deeper than {MAX_DEPTH} levels; send flatter JSON."
    )
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutpostError(400, f"The request body is not valid JSON: {e}.") from None
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


def check_user_name(env: dict) -> None:
    """Refuse a JUPYTERHUB_USER that JupyterHub itself refuses (``Authenticator.validate_username``):
    the name selects home directories and system users here, so ``../x`` must not pass."""
    name = env.get("JUPYTERHUB_USER")
    if name is None:
        return
    if (
        not name
        or "/" in name
        or set(name) == {"."}
        or name != name.strip()
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    ):
        raise OutpostError(
            400,
            f"Invalid start request: env.JUPYTERHUB_USER {name!r} is not a user name "
            "JupyterHub accepts (no '/', not only dots, no surrounding space, no control "
            "characters).",
        )


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.path) or "body"
    if error.validator == "pattern" and list(error.path) == ["name"]:
        return (
            f"Invalid server name {error.instance!r}: use 1 to 63 of the characters "
            "A-Z a-z 0-9 . _ -"
        )
    if error.validator == "required":
        return f"the field {error.message.split(' is a required')[0]} is required"
    return f"{where}: {error.message}"


def check_path_name(value: str, what: str = "server name") -> None:
    import re

    if not re.fullmatch(NAME_PATTERN, value):
        raise OutpostError(404, f"No server {value!r} on this Outpost (not a valid {what}).")
