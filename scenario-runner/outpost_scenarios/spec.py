"""The topology file (``topology.yaml`` in a scenario folder): parsing, checking, placeholders.

The format is documented in ``docs/topology.md``. This module is pure: it reads YAML into
dataclasses, checks every reference (hosts, networks, services, ports, secrets, keys,
files) before anything runs, and substitutes ``{kind:arg}`` placeholders given a
:class:`Context` that the runner fills in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

SPEC_FILE = "topology.yaml"
RESTART_POLICIES = ("no", "on-failure", "always")
SECRET_KINDS = ("hex", "urlsafe", "fernet", "password")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}")  # used with fullmatch

#: placeholder kinds; ``{kind}`` or ``{kind:arg}``. Anything else in braces is left alone,
#: so Python dicts and JSON in templated files need no escaping.
PLACEHOLDER_KINDS = (
    "host",
    "port",
    "network",
    "secret",
    "secret_file",
    "ssh_key",
    "ssh_pub",
    "ssh_pub_file",
    "file",
    "data_dir",
    "run_dir",
    "scenario_dir",
    "python",
    "bin_dir",
    "env",
    "service",
)
PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDER_KINDS) + r")(?::([^{}\s]+))?\}")


class SpecError(ValueError):
    """The topology file is wrong; the message names the file and the key."""


@dataclass
class NetworkSpec:
    name: str
    subnet: str | None = None
    host_access: bool = False


@dataclass
class HostSpec:
    name: str
    networks: list[str]


@dataclass
class ReadySpec:
    http: str | None = None
    tcp: str | None = None
    log: str | None = None
    from_host: str | None = None
    timeout: float = 60.0


@dataclass
class ServiceSpec:
    name: str
    host: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    inherit_env: bool = True
    cwd: str | None = None
    ports: dict[str, int | str] = field(default_factory=dict)
    ready: ReadySpec | None = None
    url: str | None = None
    depends_on: list[str] = field(default_factory=list)
    restart: str = "no"
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    host_cgroups: bool = False


@dataclass
class SecretSpec:
    name: str
    kind: str = "hex"
    bytes: int = 32


@dataclass
class FileSpec:
    path: str
    template: str | None = None
    content: str | None = None
    mode: int = 0o644


@dataclass
class TopologySpec:
    name: str
    path: str  # the topology file
    scenario_dir: str
    networks: dict[str, NetworkSpec]
    hosts: dict[str, HostSpec]
    services: dict[str, ServiceSpec]
    secrets: dict[str, SecretSpec]
    ssh_keys: list[str]
    files: list[FileSpec]
    open_url: str | None = None
    login: str | None = None

    def start_order(self) -> list[str]:
        """Service names so that every service comes after what it depends on."""
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, chain: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                raise SpecError(f"{self.path}: depends_on cycle: {' -> '.join([*chain, name])}")
            state[name] = "visiting"
            for dep in self.services[name].depends_on:
                visit(dep, [*chain, name])
            state[name] = "done"
            order.append(name)

        for name in self.services:
            visit(name, [])
        return order


# ---------------------------------------------------------------------------------------
# loading


def _expect(value: Any, kind: type | tuple, where: str) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpecError(f"{where}: expected {names}, got {type(value).__name__} {value!r}")
    return value


def _no_extra(data: Mapping, allowed: set[str], where: str) -> None:
    extra = set(data) - allowed
    if extra:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(sorted(allowed))})"
        )


def _name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SpecError(f"{where}: name {name!r} must match {NAME_RE.pattern}")
    return name


def load(path: str) -> TopologySpec:
    """Read and check a topology file (or a scenario folder holding ``topology.yaml``)."""
    if os.path.isdir(path):
        path = os.path.join(path, SPEC_FILE)
    path = os.path.abspath(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise SpecError(
            f"{path}: no topology file here (a scenario folder holds {SPEC_FILE})"
        ) from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    return parse(data, path)


def parse(data: Any, path: str = "<topology>") -> TopologySpec:
    """Build a :class:`TopologySpec` from already-loaded YAML data and check it."""
    P = path
    _expect(data, dict, P)
    _no_extra(
        data,
        {"name", "networks", "hosts", "services", "secrets", "ssh_keys", "files", "open"},
        P,
    )
    scenario_dir = os.path.dirname(path)
    name = _name(data.get("name") or os.path.basename(scenario_dir) or "topology", f"{P}: name")

    networks = {}
    for key, value in _expect(data.get("networks") or {}, dict, f"{P}: networks").items():
        where = f"{P}: networks.{key}"
        value = _expect(value or {}, dict, where)
        _no_extra(value, {"subnet", "host_access"}, where)
        networks[key] = NetworkSpec(
            name=_name(key, where),
            subnet=value.get("subnet"),
            host_access=bool(value.get("host_access", False)),
        )
    if not networks:
        raise SpecError(f"{P}: networks: define at least one network")

    hosts = {}
    for key, value in _expect(data.get("hosts") or {}, dict, f"{P}: hosts").items():
        where = f"{P}: hosts.{key}"
        value = _expect(value or {}, dict, where)
        _no_extra(value, {"networks"}, where)
        nets = _expect(value.get("networks") or [], list, f"{where}.networks")
        if not nets:
            raise SpecError(f"{where}.networks: a host needs at least one network")
        for net in nets:
            if net not in networks:
                raise SpecError(f"{where}.networks: unknown network {net!r}")
        hosts[key] = HostSpec(name=_name(key, where), networks=list(nets))
    if not hosts:
        raise SpecError(f"{P}: hosts: define at least one host")

    secrets = {}
    for key, value in _expect(data.get("secrets") or {}, dict, f"{P}: secrets").items():
        where = f"{P}: secrets.{key}"
        value = _expect(value or {}, dict, where)
        _no_extra(value, {"kind", "bytes"}, where)
        kind = value.get("kind", "hex")
        if kind not in SECRET_KINDS:
            raise SpecError(f"{where}.kind: {kind!r} is not one of {', '.join(SECRET_KINDS)}")
        secrets[key] = SecretSpec(
            name=_name(key, where), kind=kind, bytes=int(value.get("bytes", 32))
        )

    ssh_keys = [
        _name(k, f"{P}: ssh_keys")
        for k in _expect(data.get("ssh_keys") or [], list, f"{P}: ssh_keys")
    ]

    files = []
    for i, value in enumerate(_expect(data.get("files") or [], list, f"{P}: files")):
        where = f"{P}: files[{i}]"
        value = _expect(value, dict, where)
        _no_extra(value, {"path", "template", "content", "mode"}, where)
        rel = _expect(value.get("path"), str, f"{where}.path")
        if os.path.isabs(rel) or ".." in rel.split("/"):
            raise SpecError(f"{where}.path: {rel!r} must be relative and stay inside the run dir")
        if ("template" in value) == ("content" in value):
            raise SpecError(f"{where}: give exactly one of 'template' or 'content'")
        template = value.get("template")
        if template is not None and not os.path.isfile(os.path.join(scenario_dir, template)):
            raise SpecError(f"{where}.template: {template!r} not found in {scenario_dir}")
        mode = value.get("mode", "0644")
        files.append(
            FileSpec(
                path=rel,
                template=template,
                content=value.get("content"),
                mode=int(str(mode), 8),
            )
        )

    services = {}
    for key, value in _expect(data.get("services") or {}, dict, f"{P}: services").items():
        services[key] = _parse_service(key, value, f"{P}: services.{key}", hosts)
    for svc in services.values():
        for dep in svc.depends_on:
            if dep not in services:
                raise SpecError(f"{P}: services.{svc.name}.depends_on: unknown service {dep!r}")

    open_ = _expect(data.get("open") or {}, dict, f"{P}: open")
    _no_extra(open_, {"url", "login"}, f"{P}: open")
    spec = TopologySpec(
        name=name,
        path=path,
        scenario_dir=scenario_dir,
        networks=networks,
        hosts=hosts,
        services=services,
        secrets=secrets,
        ssh_keys=ssh_keys,
        files=files,
        open_url=open_.get("url"),
        login=open_.get("login"),
    )
    spec.start_order()  # raises on cycles
    check_references(spec)
    return spec


def _parse_service(key: str, value: Any, where: str, hosts: Mapping[str, HostSpec]) -> ServiceSpec:
    value = _expect(value, dict, where)
    _no_extra(
        value,
        {
            "host",
            "argv",
            "env",
            "inherit_env",
            "cwd",
            "ports",
            "ready",
            "url",
            "depends_on",
            "restart",
            "stop_signal",
            "stop_timeout",
            "host_cgroups",
        },
        where,
    )
    host = value.get("host")
    if host not in hosts:
        raise SpecError(f"{where}.host: unknown host {host!r} (hosts: {', '.join(hosts)})")
    argv = _expect(value.get("argv"), list, f"{where}.argv")
    if not argv:
        raise SpecError(f"{where}.argv: must not be empty")
    argv = [str(a) for a in argv]
    env = {str(k): str(v) for k, v in _expect(value.get("env") or {}, dict, f"{where}.env").items()}
    ports: dict[str, int | str] = {}
    for pname, port in _expect(value.get("ports") or {}, dict, f"{where}.ports").items():
        _name(pname, f"{where}.ports")
        if port != "auto" and not (isinstance(port, int) and 0 < port < 65536):
            raise SpecError(f"{where}.ports.{pname}: {port!r} is neither a port number nor 'auto'")
        ports[pname] = port
    ready = None
    if value.get("ready") is not None:
        r = _expect(value["ready"], dict, f"{where}.ready")
        _no_extra(r, {"http", "tcp", "log", "from", "timeout"}, f"{where}.ready")
        kinds = [k for k in ("http", "tcp", "log") if k in r]
        if len(kinds) != 1:
            raise SpecError(f"{where}.ready: give exactly one of http, tcp, log")
        if r.get("from") is not None and r["from"] not in hosts:
            raise SpecError(f"{where}.ready.from: unknown host {r['from']!r}")
        ready = ReadySpec(
            http=r.get("http"),
            tcp=r.get("tcp"),
            log=r.get("log"),
            from_host=r.get("from"),
            timeout=float(r.get("timeout", 60)),
        )
        if ready.log is not None:
            try:
                re.compile(ready.log)
            except re.error as e:
                raise SpecError(f"{where}.ready.log: not a regular expression: {e}") from None
    restart = str(value.get("restart", "no")).lower()
    if restart in ("false", "none"):
        restart = "no"
    if restart not in RESTART_POLICIES:
        raise SpecError(f"{where}.restart: {restart!r} is not one of {', '.join(RESTART_POLICIES)}")
    depends = value.get("depends_on") or []
    if isinstance(depends, str):
        depends = [depends]
    return ServiceSpec(
        name=_name(key, where),
        host=host,
        argv=argv,
        env=env,
        inherit_env=bool(value.get("inherit_env", True)),
        cwd=value.get("cwd"),
        ports=ports,
        ready=ready,
        url=value.get("url") or (ready.http if ready else None),
        depends_on=list(depends),
        restart=restart,
        stop_signal=str(value.get("stop_signal", "SIGTERM")),
        stop_timeout=float(value.get("stop_timeout", 10)),
        host_cgroups=bool(value.get("host_cgroups", False)),
    )


# ---------------------------------------------------------------------------------------
# placeholders


@dataclass
class Context:
    """What placeholders resolve to; filled by the runner (or by a test)."""

    run_dir: str
    scenario_dir: str
    python: str
    host_addresses: dict[str, dict[str, str]]  # host -> network -> address
    host_netns: dict[str, str | None]
    networks: dict[str, dict[str, str | None]]  # network -> {"subnet", "gateway"}
    ports: dict[str, dict[str, int]]  # service -> port name -> number
    secrets: dict[str, str]
    secret_files: dict[str, str]
    ssh_keys: dict[str, str]  # name -> private key path
    ssh_pubs: dict[str, str]  # name -> public key line
    files: dict[str, str]  # relative path -> absolute path
    data_dirs: dict[str, str]  # service -> data dir
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def _lookup(table: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return table[key]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise SpecError(f"unknown {what} {key!r} (known: {known})") from None


def resolve(kind: str, arg: str | None, ctx: Context, service: str | None) -> str:
    """The value of one placeholder ``{kind:arg}`` as seen from ``service`` (or None)."""

    def need_arg() -> str:
        if not arg:
            raise SpecError(f"{{{kind}}} needs an argument: {{{kind}:NAME}}")
        return arg

    if kind == "host":
        parts = need_arg().split(".")
        host = parts[0]
        addrs = _lookup(ctx.host_addresses, host, "host")
        attr = parts[1] if len(parts) > 1 else "ip"
        if attr == "ip":
            if len(parts) > 2:
                return _lookup(addrs, parts[2], f"network of host {host}")
            return next(iter(addrs.values()))
        if attr == "netns":
            return ctx.host_netns.get(host) or ""
        raise SpecError(
            f"{{host:{arg}}}: use {{host:NAME.ip}}, {{host:NAME.ip.NETWORK}} or {{host:NAME.netns}}"
        )
    if kind == "port":
        name = need_arg()
        if "." in name:
            svc, port = name.split(".", 1)
        elif service is None:
            raise SpecError(f"{{port:{name}}} outside a service: use {{port:SERVICE.{name}}}")
        else:
            svc, port = service, name
        ports = _lookup(ctx.ports, svc, "service")
        return str(_lookup(ports, port, f"port of service {svc}"))
    if kind == "network":
        parts = need_arg().split(".")
        net = _lookup(ctx.networks, parts[0], "network")
        attr = parts[1] if len(parts) > 1 else "subnet"
        value = _lookup(net, attr, f"attribute of network {parts[0]}")
        return "" if value is None else str(value)
    if kind == "secret":
        return _lookup(ctx.secrets, need_arg(), "secret")
    if kind == "secret_file":
        return _lookup(ctx.secret_files, need_arg(), "secret")
    if kind == "ssh_key":
        return _lookup(ctx.ssh_keys, need_arg(), "ssh key")
    if kind == "ssh_pub":
        return _lookup(ctx.ssh_pubs, need_arg(), "ssh key")
    if kind == "ssh_pub_file":
        return _lookup(ctx.ssh_keys, need_arg(), "ssh key") + ".pub"
    if kind == "file":
        return _lookup(ctx.files, need_arg(), "generated file")
    if kind == "data_dir":
        name = arg or service
        if name is None:
            raise SpecError("{data_dir} outside a service: use {data_dir:SERVICE}")
        return _lookup(ctx.data_dirs, name, "service")
    if kind == "service":
        if service is None:
            raise SpecError("{service} is only known inside a service")
        return service
    if kind == "run_dir":
        return ctx.run_dir
    if kind == "scenario_dir":
        return ctx.scenario_dir
    if kind == "python":
        return ctx.python
    if kind == "bin_dir":
        return os.path.dirname(ctx.python)
    if kind == "env":
        return ctx.environ.get(need_arg(), "")
    raise SpecError(f"unknown placeholder kind {kind!r}")  # pragma: no cover


def render(text: str, ctx: Context, service: str | None = None, *, where: str = "") -> str:
    """Substitute every ``{kind:arg}`` placeholder in ``text``."""

    def sub(m: re.Match) -> str:
        try:
            return resolve(m.group(1), m.group(2), ctx, service)
        except SpecError as e:
            raise SpecError(f"{where}: {m.group(0)}: {e}" if where else str(e)) from None

    return PLACEHOLDER_RE.sub(sub, text)


def placeholders(text: str) -> list[tuple[str, str | None]]:
    """The ``(kind, arg)`` placeholders used in ``text``."""
    return [(m.group(1), m.group(2)) for m in PLACEHOLDER_RE.finditer(text)]


def check_references(spec: TopologySpec) -> None:
    """Fail early on a placeholder that names an unknown host, service, port, secret..."""
    file_paths = {f.path for f in spec.files}
    known: dict[str, Callable[[str, str | None], bool]] = {
        "host": lambda a, _s: a.split(".")[0] in spec.hosts,
        "port": lambda a, s: _port_known(spec, a, s),
        "network": lambda a, _s: a.split(".")[0] in spec.networks,
        "secret": lambda a, _s: a in spec.secrets,
        "secret_file": lambda a, _s: a in spec.secrets,
        "ssh_key": lambda a, _s: a in spec.ssh_keys,
        "ssh_pub": lambda a, _s: a in spec.ssh_keys,
        "ssh_pub_file": lambda a, _s: a in spec.ssh_keys,
        "file": lambda a, _s: a in file_paths,
        "data_dir": lambda a, _s: a in spec.services,
    }

    def check(text: str | None, where: str, service: str | None) -> None:
        for kind, arg in placeholders(text or ""):
            test = known.get(kind)
            if test is None or (arg is None and kind == "data_dir"):
                continue
            if arg is None or not test(arg, service):
                raise SpecError(
                    f"{spec.path}: {where}: placeholder {{{kind}:{arg}}} names nothing defined"
                )

    for svc in spec.services.values():
        base = f"services.{svc.name}"
        for i, a in enumerate(svc.argv):
            check(a, f"{base}.argv[{i}]", svc.name)
        for k, v in svc.env.items():
            check(v, f"{base}.env.{k}", svc.name)
        check(svc.cwd, f"{base}.cwd", svc.name)
        check(svc.url, f"{base}.url", svc.name)
        if svc.ready:
            check(svc.ready.http, f"{base}.ready.http", svc.name)
            check(svc.ready.tcp, f"{base}.ready.tcp", svc.name)
    for f in spec.files:
        check(f.content, f"files[{f.path}].content", None)
        if f.template:
            with open(os.path.join(spec.scenario_dir, f.template)) as fh:
                check(fh.read(), f"files[{f.path}] template {f.template}", None)
    check(spec.open_url, "open.url", None)


def _port_known(spec: TopologySpec, arg: str, service: str | None) -> bool:
    if "." in arg:
        svc, port = arg.split(".", 1)
    else:
        svc, port = service, arg
    return svc in spec.services and port in spec.services[svc].ports
