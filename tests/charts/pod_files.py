"""A rendered pod's containers as Kubernetes would run them, for running them here.

From a chart's rendered objects: the files a container's volume mounts show (ConfigMap
and Secret volumes written under a root directory), its environment (values, the
namespace, Secret keys, and the ``<SERVICE>_SERVICE_HOST/PORT`` variables Kubernetes sets
for the Services of the namespace), and its argv and working directory with absolute
paths moved under that root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.charts.chart_helpers import find, one, secret_text


def pod(objects: list[dict], deployment: str) -> tuple[dict, dict]:
    """(labels, spec) of the pod of a Deployment."""
    template = one(objects, "Deployment", deployment)["spec"]["template"]
    return template["metadata"]["labels"], template["spec"]


def container(spec: dict, name: str) -> dict:
    [found] = [c for c in spec["containers"] if c["name"] == name]
    return found


def volume_files(volume: dict, objects: list[dict]) -> dict[str, str] | None:
    """{path: text} of a configMap or secret volume (None for other volume types)."""
    if "configMap" in volume:
        ref = volume["configMap"]
        data = one(objects, "ConfigMap", ref["name"])["data"]
    elif "secret" in volume:
        ref = volume["secret"]
        source = one(objects, "Secret", ref["secretName"])
        data = {key: secret_text(source, key) for key in source["data"]}
    else:
        return None
    if "items" in ref:
        return {item["path"]: data[item["key"]] for item in ref["items"]}
    return dict(data)


@dataclass
class Container:
    """One container of a rendered pod, made runnable under ``root``."""

    root: Path
    argv: list[str]
    env: dict[str, str]
    cwd: Path

    def path(self, absolute: str) -> Path:
        """Where an absolute path of the container is under ``root``."""
        return self.root / absolute.lstrip("/")


def materialize(
    objects: list[dict],
    deployment: str,
    name: str,
    root: Path,
    namespace: str,
    services: dict[str, str] | None = None,
) -> Container:
    """Write the files container ``name`` of ``deployment`` sees under ``root`` (its volume
    mounts at root/<mountPath>) and return it with its environment and argv.

    Absolute paths of the mounts that appear quoted in the written files (e.g. a config
    snippet that opens another mounted file) and in the argv are moved under ``root``.
    ``services`` maps a Service name to the address its ``_SERVICE_HOST`` variable gets
    (default: the name itself).
    """
    _, spec = pod(objects, deployment)
    found = container(spec, name)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = found.get("volumeMounts", [])
    written = []
    for mount in mounts:
        target = root / mount["mountPath"].lstrip("/")
        files = volume_files(volumes[mount["name"]], objects)
        if files is None:
            target.mkdir(parents=True, exist_ok=True)
        elif "subPath" in mount:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[mount["subPath"]])
            written.append(target)
        else:
            target.mkdir(parents=True, exist_ok=True)
            for file, text in files.items():
                (target / file).write_text(text)
                written.append(target / file)

    for path in written:
        text = path.read_text()
        for mount in mounts:
            text = text.replace(f'"{mount["mountPath"]}', f'"{root}{mount["mountPath"]}')
        path.write_text(text)

    def rebase(arg: str) -> str:
        mounted = any(arg.startswith(m["mountPath"].rstrip("/")) for m in mounts)
        return f"{root}{arg}" if mounted else arg

    env = {}
    for service in find(objects, "Service"):
        service_name = service["metadata"]["name"]
        prefix = service_name.upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = (services or {}).get(service_name, service_name)
        env[f"{prefix}_SERVICE_PORT"] = str(service["spec"]["ports"][0]["port"])
    for var in found.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var["valueFrom"]:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            env[var["name"]] = namespace
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret_text(one(objects, "Secret", ref["name"]), ref["key"])
    argv = [rebase(a) for a in [*found.get("command", []), *found.get("args", [])]]
    cwd = root / found.get("workingDir", "/").lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    return Container(root, argv, env, cwd)
