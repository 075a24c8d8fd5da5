"""Checks without hosts: syntax, ansible-lint (production profile), argument specs vs
defaults, the generated variable reference, the example inventories, the systemd unit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from .lab import ANSIBLE_DIR, BIN, REPO, run_playbook

sys.path.insert(0, str(ANSIBLE_DIR / "tools"))
import role_docs  # noqa: E402

SCENARIOS = sorted(p.parent for p in (REPO / "scenarios").glob("*/inventory/hosts.yml"))
GROUPS = {"hubs", "outposts_host", "outposts_kubernetes"}


@pytest.mark.parametrize("inventory", SCENARIOS, ids=lambda p: p.parent.name)
def test_site_yml_passes_syntax_check_with_each_example_inventory(inventory, tmp_path):
    run = run_playbook(inventory, "--syntax-check", "site.yml", tmp=tmp_path)
    assert run.returncode == 0, run.output


@pytest.mark.parametrize("inventory", SCENARIOS, ids=lambda p: p.parent.name)
def test_example_inventory_has_the_three_groups_and_valid_names(inventory):
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert GROUPS <= set(data["all"]["children"]), data["all"]
    hosts = [h for g in GROUPS for h in data.get(g, {}).get("hosts", [])]
    assert data["hubs"]["hosts"], "every scenario has a hub"
    for host in hosts:
        assert role_docs_name_ok(host), f"{inventory}: {host} is not a valid hub/Outpost name"


def role_docs_name_ok(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9_-]{1,63}", name) is not None


def test_every_role_argument_spec_and_defaults_list_the_same_variables():
    assert role_docs.mismatches() == []


def test_operator_guide_variable_reference_is_generated_from_current_specs():
    current = role_docs.DOC.read_text()
    assert role_docs.updated_doc(current) == current, (
        "docs/ansible.md is stale: run .venv/bin/python ansible/tools/role_docs.py --write"
    )


def test_ansible_lint_production_profile_is_clean():
    lint = BIN / "ansible-lint"
    if not lint.exists():
        pytest.skip(f"{lint} missing: pip install -e '.[test]' installs ansible-lint")
    proc = subprocess.run(
        [str(lint), "--profile", "production", "--nocolor", "site.yml", "roles"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_systemd_unit_is_rendered_with_quoted_argv_env_file_user_and_restart(tmp_path):
    argv = ["/opt/venv/bin/python", "-m", "jupyterhub_outpost", "serve", "--config", "/etc/a b.py"]
    run = run_playbook(
        "localhost,",
        str(REPO / "tests" / "ansible" / "playbooks" / "render_unit.yml"),
        "--tags",
        "process_supervisor_configure",
        "-e",
        json.dumps(
            {
                "process_supervisor_systemd_unit_dir": str(tmp_path),
                "process_supervisor_argv": argv,
                "ansible_python_interpreter": sys.executable,
                "ansible_connection": "local",
            }
        ),
        tmp=tmp_path,
    )
    assert run.returncode == 0, run.output
    unit = (tmp_path / "jupyterhub-outpost.service").read_text()
    lines = unit.splitlines()
    assert (
        'ExecStart="/opt/venv/bin/python" "-m" "jupyterhub_outpost" "serve" "--config" "/etc/a b.py"'
        in lines
    )
    for expected in [
        "[Unit]",
        "Description=JupyterHub Outpost",
        "[Service]",
        "EnvironmentFile=/etc/jupyterhub-outpost/outpost.env",
        "User=jupyterhub-outpost",
        "WorkingDirectory=/var/lib/jupyterhub-outpost",
        "Restart=always",
        "[Install]",
        "WantedBy=multi-user.target",
    ]:
        assert expected in lines, unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze not installed: unit content checked, not verified by systemd")
        return
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / "jupyterhub-outpost.service")],
        capture_output=True,
        text=True,
    )
    # verify complains about the missing ExecStart binary on this machine; syntax errors differ
    assert "Unknown section" not in proc.stderr and "Unknown key" not in proc.stderr, proc.stderr


def test_outpost_host_preflight_says_what_is_missing_before_touching_the_host(tmp_path):
    run = run_playbook(
        "localhost,",
        str(REPO / "tests" / "ansible" / "playbooks" / "outpost_host_alone.yml"),
        "-e",
        json.dumps(
            {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "outpost_host_prefix": str(tmp_path / "opt"),
                "outpost_host_config_dir": str(tmp_path / "etc"),
                "outpost_host_data_dir": str(tmp_path / "data"),
            }
        ),
        tmp=tmp_path,
    )
    assert run.returncode != 0
    assert "needs at least one hub in outpost_host_hub_credentials" in " ".join(run.output.split())
    assert not (tmp_path / "opt").exists(), "the preflight must stop before any change"


def test_outpost_host_rejects_a_relative_path_by_name(tmp_path):
    run = run_playbook(
        "localhost,",
        str(REPO / "tests" / "ansible" / "playbooks" / "outpost_host_alone.yml"),
        "-e",
        json.dumps(
            {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "outpost_host_data_dir": "relative/data",
            }
        ),
        tmp=tmp_path,
    )
    assert run.returncode != 0
    assert "outpost_host_data_dir must be an absolute path, got 'relative/data'" in run.output


def _tags(node) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        tags = node.get("tags")
        if isinstance(tags, str):
            found.add(tags)
        elif isinstance(tags, list):
            found.update(t for t in tags if isinstance(t, str))
        for value in node.values():
            found |= _tags(value)
    elif isinstance(node, list):
        for value in node:
            found |= _tags(value)
    return found


@pytest.mark.parametrize("role", role_docs.roles())
def test_every_role_tags_its_tasks_install_configure_and_run(role):
    import yaml

    tags: set[str] = set()
    for path in (ANSIBLE_DIR / "roles" / role / "tasks").glob("*.yml"):
        tags |= _tags(yaml.safe_load(path.read_text()))
    expected = {f"{role}_install", f"{role}_configure", f"{role}_run"}
    assert expected <= tags, f"{role}: missing tags {sorted(expected - tags)}"
    unknown = {t for t in tags if t != "always" and not t.startswith(f"{role}_")}
    assert not unknown, f"{role}: tags of other roles {sorted(unknown)}"
