"""Edges of input validation found by an outside review: full-match patterns, numbers that
break decoders, incomplete certificates, path-like names.

Before: patterns such as ``^[A-Za-z0-9._-]{1,63}$`` were applied with Python's
``re.search``, where ``$`` also matches before a final newline: a server named "abc\\n"
started but could never be stopped (an orphan holding quota), an env key "ABC\\n" reached
the server's environment, start ids and tunnel keys had the same defect. A 5000-digit
integer was a 500 with a traceback, NaN and Infinity were accepted, a keyfile without a
certfile was a 500, and "." and ".." were valid server names.
"""

import json
import logging
import re
from urllib.parse import quote

import pytest

from tests.outpost.support import start_body

# what makes a line end or a string stop early somewhere downstream
BAD_ENDINGS = ["\n", "\r", "\r\n", "\x00", "\u2028", "\u2029", "\x85", "\x1b"]


@pytest.fixture
def log_lines(outpost, caplog):
    caplog.set_level(logging.DEBUG)
    outpost.app.log.addHandler(caplog.handler)  # the app's logger does not propagate
    yield caplog
    outpost.app.log.removeHandler(caplog.handler)


async def assert_refused(outpost, body: dict, *words: str):
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 400, (body, data)
    assert all(w in data["error"] for w in words), data
    assert await outpost.app.store.list_hub("hub1") == []


@pytest.mark.parametrize("ending", BAD_ENDINGS, ids=repr)
async def test_names_keys_and_ids_that_end_in_a_line_break_or_control_are_refused(outpost, ending):
    await assert_refused(outpost, start_body("abc" + ending), "server name")
    await assert_refused(outpost, start_body("e", env={"ABC" + ending: "v"}), "env")
    await assert_refused(
        outpost, start_body("s", user_options={"start_id": "s1" + ending}), "start_id"
    )
    await assert_refused(
        outpost, start_body("u", env={"JUPYTERHUB_USER": "alice" + ending}), "JUPYTERHUB_USER"
    )
    await assert_refused(
        outpost,
        start_body("n", env={"JUPYTERHUB_SERVER_NAME": "lab" + ending}),
        "JUPYTERHUB_SERVER_NAME",
    )
    await assert_refused(
        outpost,
        start_body("b", internal_trust_bundles={"bundle" + ending: "PEM"}),
        "internal_trust_bundles",
    )


@pytest.mark.parametrize("name", [".", "..", "...", "x" * 64, "a" * 10_000])
async def test_path_like_or_overlong_server_names_and_start_ids_are_refused(outpost, name):
    await assert_refused(outpost, start_body(name), "server name")
    await assert_refused(outpost, start_body("s", user_options={"start_id": name}), "start_id")


@pytest.mark.parametrize("key", ["JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME"])
@pytest.mark.parametrize("name", [".", "..", "a/b", " lab", "lab\t"])
async def test_path_like_user_and_server_names_in_env_are_refused(outpost, key, name):
    await assert_refused(outpost, start_body("n", env={key: name}), key)


@pytest.mark.parametrize("name", ["a.b", "-", "_", "a..b", ".x", "x.", "...x", "A" * 63])
async def test_every_server_name_that_starts_can_be_polled_and_stopped(outpost, name):
    start_id = "s.1"
    body = start_body(name, user_options={"start_id": start_id})
    assert (await outpost.api.call("POST", "/services", body=body))[0] == 200
    path = f"/services/{quote(name, safe='')}/{quote(start_id, safe='')}"
    assert await outpost.api.call("GET", path) == (200, {"status": None})
    assert (await outpost.api.call("DELETE", path))[0] == 200
    assert await outpost.app.store.list_hub("hub1") == []


@pytest.mark.parametrize("path_name", ["abc%0A", "%2E", "%2E%2E", "abc%00", "abc%E2%80%A8"])
async def test_poll_and_stop_of_such_names_are_404(outpost, path_name):
    for method in ("GET", "DELETE"):
        code, data = await outpost.api.call(method, f"/services/{path_name}")
        assert code == 404 and data["error"], data


@pytest.mark.parametrize(
    "raw, words",
    [
        (b'{"name": "n", "user_options": {"x": ' + b"9" * 5000 + b"}}", ["too long"]),
        (b'{"name": "n", "user_options": {"x": -' + b"9" * 5000 + b"}}", ["too long"]),
        (b'{"name": "n", "user_options": {"x": 1' + b"0" * 2000 + b".5}}", ["too long"]),
        (b'{"name": "n", "user_options": {"x": NaN}}', ["NaN"]),
        (b'{"name": "n", "user_options": {"x": Infinity}}', ["Infinity"]),
        (b'{"name": "n", "user_options": {"x": -Infinity}}', ["Infinity"]),
        (b'{"name": "n", "user_options": {"x": 1e999}}', ["out of range"]),
        (b'{"name": "n", "misc": {"mem_limit": -1e400}}', ["out of range"]),
    ],
    ids=[
        "5000-digits",
        "negative-5000-digits",
        "long-float",
        "nan",
        "inf",
        "-inf",
        "1e999",
        "-1e400",
    ],
)
async def test_numbers_json_does_not_allow_or_python_cannot_hold_are_400_without_traceback(
    outpost, log_lines, raw, words
):
    code, data = await outpost.api.call("POST", "/services", raw_body=raw)
    assert code == 400, data
    assert all(w in data["error"] for w in words), data
    assert await outpost.app.store.list_hub("hub1") == []
    assert "Traceback" not in log_lines.text and "Unexpected error" not in log_lines.text


@pytest.mark.parametrize(
    "certs, missing",
    [
        ({"keyfile": "KEY"}, "certfile"),
        ({"certfile": "CERT"}, "keyfile"),
        ({"keyfile": "KEY", "certfile": "CERT"}, "cafile"),
        ({"cafile": "CA"}, "keyfile"),
        ({"keyfile": "", "certfile": "CERT", "cafile": "CA"}, "keyfile"),
    ],
)
async def test_certs_come_as_keyfile_certfile_and_cafile_together_or_not_at_all(
    outpost, log_lines, certs, missing
):
    code, data = await outpost.api.call("POST", "/services", body=start_body("c", certs=certs))
    assert code == 400 and "certs" in data["error"] and missing in data["error"], data
    assert await outpost.app.store.list_hub("hub1") == []
    assert "Unexpected error" not in log_lines.text


async def test_certs_with_other_keys_only_start_without_internal_ssl(outpost):
    body = start_body("o", certs={"comment": "not a certificate"})
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 200, data
    assert (await outpost.api.call("DELETE", "/services/o"))[0] == 200


@pytest.mark.parametrize("hub", ["h" * 64, "a:b", "..", "hub\n", "", "a/b", "hüb"])
async def test_hub_names_that_cannot_be_names_stop_the_start_up(make_outpost, hub):
    """A hub name is a user name (HTTP Basic, SSH), a path segment and a 63-character
    column: one that cannot be all of these is an error at start-up, not a 500 per start."""
    from jupyterhub_outpost.outpost.app import StartupError

    with pytest.raises(StartupError, match="hub name"):
        await make_outpost(hub_credentials={hub: "a-secret", "good": "another"})


def test_the_validator_reads_dollar_as_the_end_of_the_string_as_json_schema_does():
    """Every pattern of the OpenAPI document, as the Outpost applies it, refuses a value
    with a trailing newline that Python's re.search would let through."""
    from jupyterhub_outpost.outpost.schema import (
        FullMatchValidator,
        full_match_pattern,
        openapi_document,
    )

    patterns = re.findall(r'"pattern": ("(?:[^"\\]|\\.)*")', json.dumps(openapi_document()))
    patterns = {json.loads(p) for p in patterns}
    assert len(patterns) >= 4
    for pattern in patterns:
        assert full_match_pattern(pattern).pattern.count(r"\Z") == pattern.count(
            "$"
        ) - pattern.count(r"\$"), pattern
    schema = {"type": "string", "pattern": "^[a-z]+$"}
    assert re.search(schema["pattern"], "abc\n")  # what Python alone does
    assert not FullMatchValidator(schema).is_valid("abc\n")
    assert FullMatchValidator(schema).is_valid("abc")
    assert not FullMatchValidator({"pattern": "^[a-z$]+$"}).is_valid("ab\n")
    assert FullMatchValidator({"pattern": "^[a-z$]+$"}).is_valid("a$b")


def _ends_in_bare_dollar(pattern: str) -> bool:
    """Ends in "$" (perhaps closing a group), not in an escaped "\\$"."""
    return bool(re.search(r"(?<!\\)\$\)?\??$", pattern))


def _regex_literals(path):
    """(line, pattern) of every string literal given to a function of ``re`` in ``path``
    (f-strings by their last literal part)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.args
        ):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.JoinedStr) and arg.values:
            arg = arg.values[-1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield node.lineno, arg.value


def test_no_regex_of_the_product_or_the_runner_lets_a_trailing_newline_through():
    """The class, not the example: no pattern of the product package or the scenario
    runner ends in a bare "$" (which Python reads as "end, or before a final newline"):
    neither a compiled pattern of a product module nor a literal given to ``re``."""
    import importlib
    import pkgutil
    from pathlib import Path

    import jupyterhub_outpost
    import outpost_scenarios

    offenders = []
    for info in pkgutil.walk_packages(jupyterhub_outpost.__path__, "jupyterhub_outpost."):
        if ".alembic" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                if _ends_in_bare_dollar(value.pattern):
                    offenders.append(f"{info.name}.{attr} = {value.pattern!r}")
    sources = 0
    for package in (jupyterhub_outpost, outpost_scenarios):
        for path in sorted(Path(package.__path__[0]).rglob("*.py")):
            sources += 1
            for line, pattern in _regex_literals(path):
                if _ends_in_bare_dollar(pattern):
                    offenders.append(f"{path}:{line}: {pattern!r}")
    assert sources > 50
    assert offenders == []
