"""Both charts rendered by Helm's engine for every values case, validated, and linted.

Cases: the defaults, each chart's lint-values.yaml (nearly every option on), PostgreSQL,
external tunneling, and every scenario's kind values (scenarios/<name>/kind/*.yaml).
"""

from __future__ import annotations

import helm_python
import pytest
import yaml

from tests.charts.chart_helpers import (
    ADDONS,
    OUTPOST,
    SCENARIOS,
    find,
    render,
    validate,
    values_file,
)

POSTGRES = {
    "database": {"type": "postgresql"},
    "extraEnvVarsSecrets": ["my-db-secret"],
    "hubs": {
        "hub": {
            "sshPublicKeys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMGPA3EeWdotOAsvTaGQ/2gp0AmjLHklbZlOtB7pRee3 hub"
            ]
        }
    },
}
OUTPOST_ONE = {"url": "http://203.0.113.7:8080", "ssh": {"host": "203.0.113.8", "port": 22}}


def scenario_files() -> list[tuple[str, object]]:
    """(test id, (chart, values)) for every scenario kind values file a chart reads."""
    cases = []
    for path in sorted(SCENARIOS.glob("*/kind/*.yaml")):
        scenario = path.parts[-3]
        if path.name.startswith("outpost"):
            chart = OUTPOST
        elif path.name == "hub-addons.yaml":
            chart = ADDONS
        else:
            continue  # jupyterhub.yaml: z2jh values, with hub-addons' in test_chart_jupyterhub
        cases.append((f"{scenario}/{path.name}", (chart, values_file(path))))
    return cases


CASES = [
    ("outpost-defaults", (OUTPOST, {})),
    ("outpost-lint-values", (OUTPOST, values_file(OUTPOST / "lint-values.yaml"))),
    ("outpost-postgresql", (OUTPOST, POSTGRES)),
    ("outpost-nodeport", (OUTPOST, {"sshService": {"type": "NodePort", "nodePort": 30022}})),
    ("outpost-no-ssh", (OUTPOST, {"ssh": {"enabled": False}, "networkPolicy": {"enabled": False}})),
    ("addons-defaults", (ADDONS, {})),
    ("addons-lint-values", (ADDONS, values_file(ADDONS / "lint-values.yaml"))),
    ("addons-sidecar", (ADDONS, {"outposts": {"one": OUTPOST_ONE}})),
    (
        "addons-deployment",
        (ADDONS, {"tunnel": {"mode": "deployment"}, "outposts": {"one": OUTPOST_ONE}}),
    ),
    *scenario_files(),
]


def test_every_scenario_has_kind_values():
    for scenario in ("one-remote", "remote-local", "external-tunnel", "delayed-tunnel"):
        files = {p.name for p in (SCENARIOS / scenario / "kind").glob("*.yaml")}
        assert "hub-addons.yaml" in files and "jupyterhub.yaml" in files, scenario
        assert any(f.startswith("outpost") for f in files), scenario


@pytest.mark.parametrize("chart,values", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_renders_valid_kubernetes_objects(chart, values):
    objects, notes = render(chart, values)
    assert objects and notes.strip()
    validate(objects)
    # Every object carries the chart's labels from the one helper.
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "jupyterhub-outpost"


@pytest.mark.parametrize("chart,values", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_helm_lint_is_clean(chart, values):
    report = helm_python.lint(chart, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("chart,values", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_every_rendered_container_is_locked_down(chart, values):
    objects, _ = render(chart, values)
    for deployment in find(objects, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        pod = spec.get("securityContext", {})
        for container in spec["containers"]:
            ctx = container.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            seccomp = ctx.get("seccompProfile", pod.get("seccompProfile"))
            assert seccomp == {"type": "RuntimeDefault"}
            assert container.get("resources", {}).get("requests"), "resources are set"


@pytest.mark.parametrize("chart", [OUTPOST, ADDONS], ids=["outpost", "addons"])
def test_unknown_values_are_refused_by_the_schema(chart):
    with pytest.raises(helm_python.HelmError, match="nonsense"):
        render(chart, {"nonsense": True})


def test_z2jh_scenario_values_do_not_replace_the_lists_hub_addons_sets():
    """Helm replaces lists from a later -f file: a scenario's jupyterhub.yaml must not set
    a list that hub-addons' z2jh-values.yaml also sets (or one of the two would be lost)."""
    objects, _ = render(ADDONS, {"outposts": {"one": OUTPOST_ONE}})
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    addon_values = yaml.safe_load(configmap["data"]["z2jh-values.yaml"])

    def list_paths(tree, prefix=()):
        for key, value in (tree or {}).items():
            if isinstance(value, list):
                yield prefix + (key,)
            elif isinstance(value, dict):
                yield from list_paths(value, prefix + (key,))

    addon_lists = set(list_paths(addon_values))
    for path in sorted(SCENARIOS.glob("*/kind/jupyterhub.yaml")):
        ours = set(list_paths(values_file(path)))
        assert not ours & addon_lists, f"{path}: sets {ours & addon_lists}"


@pytest.mark.parametrize("version", ["1.25.0", "latest"])
@pytest.mark.parametrize("chart", [OUTPOST, ADDONS], ids=["outpost", "addons"])
def test_lint_values_are_valid_from_the_oldest_to_the_newest_supported_kubernetes(chart, version):
    """kubeVersion in Chart.yaml says >=1.25; the schemas of 1.25 and of the newest
    Kubernetes that kubernetes-validate knows both accept every object."""
    import kubernetes_validate.utils

    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    objects, _ = render(chart, values_file(chart / "lint-values.yaml"))
    validate(objects, version)
