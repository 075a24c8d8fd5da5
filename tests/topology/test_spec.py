"""The topology file: mistakes are reported with their key before anything runs."""

import os

import pytest
from outpost_scenarios.spec import Context, SpecError, load, parse, render

EXAMPLE = os.path.join(os.path.dirname(__file__), "example")


def base(**services):
    return {
        "networks": {"n": {}},
        "hosts": {"a": {"networks": ["n"]}},
        "services": services or {"s": {"host": "a", "argv": ["true"]}},
    }


def test_example_scenario_loads_in_dependency_order():
    spec = load(EXAMPLE)
    assert spec.name == "example"
    assert spec.start_order() == ["back", "front"]
    assert spec.services["front"].ports == {"http": "auto"}


@pytest.mark.parametrize(
    "data, message",
    [
        ({**base(), "extra": 1}, "unknown key"),
        (base(s={"host": "nope", "argv": ["true"]}), "services.s.host: unknown host 'nope'"),
        (base(s={"host": "a", "argv": ["{host:b.ip}"]}), r"argv\[0\]: placeholder \{host:b.ip\}"),
        (base(s={"host": "a", "argv": ["{port:web}"]}), r"placeholder \{port:web\}"),
        (base(s={"host": "a", "argv": ["{secret:x}"]}), r"placeholder \{secret:x\}"),
        (
            base(
                s={"host": "a", "argv": ["true"], "depends_on": ["t"]},
                t={"host": "a", "argv": ["true"], "depends_on": ["s"]},
            ),
            "depends_on cycle",
        ),
        (base(s={"host": "a", "argv": ["true"], "restart": "sometimes"}), "restart"),
        (
            base(s={"host": "a", "argv": ["true"], "ready": {"http": "x", "tcp": "y"}}),
            "exactly one",
        ),
        (base(s={"host": "a", "argv": ["true"], "ports": {"p": 70000}}), "ports.p"),
        ({**base(), "files": [{"path": "../x", "content": ""}]}, "stay inside the run dir"),
        ({**base(), "hosts": {"a": {"networks": ["m"]}}}, "unknown network 'm'"),
    ],
)
def test_mistakes_are_reported_with_their_key(data, message):
    with pytest.raises(SpecError, match=message):
        parse(data, "/x/topology.yaml")


def test_placeholders_substitute_known_kinds_and_leave_other_braces():
    ctx = Context(
        run_dir="/run/x",
        scenario_dir="/s",
        python="/venv/bin/python",
        host_addresses={"hub": {"public": "10.0.0.2", "site": "10.0.1.2"}},
        host_netns={"hub": "jot12345-hub"},
        networks={"public": {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}},
        ports={"hub": {"http": 8000}},
        secrets={"t": "s3"},
        secret_files={"t": "/run/x/secrets/t"},
        ssh_keys={"k": "/run/x/ssh/k"},
        ssh_pubs={"k": "ssh-ed25519 AAA k"},
        files={"a/b": "/run/x/files/a/b"},
        data_dirs={"hub": "/run/x/data/hub"},
        environ={"HOME": "/root"},
    )
    text = (
        "{host:hub.ip} {host:hub.ip.site} {port:http} {port:hub.http} {secret:t} "
        "{ssh_pub_file:k} {file:a/b} {data_dir} {bin_dir} {network:public.gateway} "
        '{env:HOME} {service} c = {"a": {1: 2}} {unknown:thing}'
    )
    assert render(text, ctx, "hub") == (
        "10.0.0.2 10.0.1.2 8000 8000 s3 /run/x/ssh/k.pub /run/x/files/a/b /run/x/data/hub "
        '/venv/bin 10.0.0.1 /root hub c = {"a": {1: 2}} {unknown:thing}'
    )
    with pytest.raises(SpecError, match="outside a service"):
        render("{port:http}", ctx)
