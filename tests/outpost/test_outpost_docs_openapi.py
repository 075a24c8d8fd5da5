"""docs/configuration.md is generated from the help texts; /openapi.json matches the API."""

import importlib.util
import os
import re
import sys

import jsonschema
from jupyterhub_outpost.outpost import handlers
from jupyterhub_outpost.outpost.app import JupyterHubOutpost
from jupyterhub_outpost.outpost.schema import openapi_document

from .support import start_body

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _generator():
    path = os.path.join(ROOT, "docs", "generate_config_reference.py")
    spec = importlib.util.spec_from_file_location("generate_config_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_up_to_date():
    generator = _generator()
    with open(generator.OUTPUT, encoding="utf-8") as f:
        current = f.read()
    assert current == generator.generate(), "run: python docs/generate_config_reference.py"


def test_every_outpost_option_has_help_text():
    for name, trait in JupyterHubOutpost.class_traits(config=True).items():
        text = getattr(trait, "_original_help", None) or trait.help
        assert text and len(text) > 15, f"c.JupyterHubOutpost.{name} needs help text"


def _route_to_openapi(pattern: str) -> str:
    path = pattern.rstrip("/?").replace(r"\.", ".")
    names = iter(["{name}", "{start_id}"])
    return re.sub(r"\(\[\^/\]\+\)", lambda m: next(names), path)


def test_openapi_lists_every_route_and_nothing_else():
    document = openapi_document()
    routes = {_route_to_openapi(pattern) for pattern, _ in handlers.routes()} | {"/metrics"}
    assert routes == set(document["paths"])
    for pattern, handler in handlers.routes():
        path = document["paths"][_route_to_openapi(pattern)]
        implemented = {
            m.lower()
            for m in ("GET", "POST", "DELETE", "PUT", "PATCH")
            if getattr(handler, m.lower()) is not getattr(handlers.BaseHandler, m.lower())
        }
        assert implemented == set(path) - {"parameters"}, pattern


class Checker:
    """Validates answers against the document's response schemas."""

    def __init__(self):
        self.document = openapi_document()
        self.seen = set()

    def check(self, method: str, path: str, code: int, data):
        template = path
        if path.startswith("/services/"):
            parts = path.split("/")[2:]
            template = "/services/{name}" + ("/{start_id}" if len(parts) == 2 else "")
        responses = self.document["paths"][template][method.lower()]["responses"]
        assert str(code) in responses, f"{method} {template} answered undocumented {code}"
        schema = responses[str(code)]["content"]["application/json"]["schema"]
        jsonschema.validate(
            data,
            {**schema, "components": self.document["components"]},
            cls=jsonschema.Draft202012Validator,
        )
        self.seen.add((method, template, code))


async def test_answers_match_the_openapi_document(make_outpost):
    outpost = await make_outpost(flavors={"small": {"max": 1, "runtime": {"hours": 1}}})
    api, checker = outpost.api, Checker()

    async def call(method, path, **kwargs):
        code, data = await api.call(method, path, **kwargs)
        checker.check(method, path, code, data)
        return code, data

    await call("GET", "/ping", hub=None)
    await call("GET", "/openapi.json", hub=None)
    await call("GET", "/services", hub=None)
    await call("POST", "/services", raw_body="{bad")
    await call("POST", "/services", body=start_body("x", misc={"image": "a"}))
    await call("POST", "/services", body=start_body("oa", user_options={"flavor": "small"}))
    await call("POST", "/services", body=start_body("ob", user_options={"flavor": "small"}))
    await call("POST", "/services", body=start_body("oa"))
    await call("POST", "/services", body=start_body("as1"), headers={"execution-type": "async"})
    await call("GET", "/services")
    await call("GET", "/services/oa")
    await call("GET", "/services/oa/nope")
    await call("GET", "/flavors")
    await call("DELETE", "/services/oa")
    await call("DELETE", "/services/oa")
    await call("DELETE", "/services/as1", headers={"execution-type": "async"})
    assert {code for _, _, code in checker.seen} >= {200, 202, 400, 401, 403, 404, 409}


def test_example_config_loads_with_known_option_names(tmp_path, caplog):
    app = JupyterHubOutpost()
    app.initialize(
        [
            "--config",
            os.path.join(ROOT, "examples", "outpost_config.py"),
            "--data-dir",
            str(tmp_path),
        ]
    )
    assert "not recognized" not in caplog.text
    assert callable(app.allow_override) and callable(app.flavors)
    assert app.flavors_undefined_max == 0 and app.ssh_port == 8022
    assert app.allowed_forward_targets == ["10.20.0.0/16:8000-9000"]


def test_seed_spelling_log_datafmt_sets_log_datefmt(tmp_path):
    config = tmp_path / "outpost_config.py"
    config.write_text('c.JupyterHubOutpost.log_datafmt = "%H:%M"\n')
    app = JupyterHubOutpost()
    app.initialize(["--config", str(config), "--data-dir", str(tmp_path)])
    assert app.log_datefmt == "%H:%M"
