"""The forward table's request validation and state file (pure, no processes)."""

import json
import os
import stat

import asyncssh
import pytest
from jupyterhub_outpost.tunnels.table import (
    STATE_VERSION,
    ForwardRequestError,
    ForwardSpec,
    SSHTarget,
    load_state,
    parse_request,
    save_state,
)

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
HOST_KEY_LINE = HOST_KEY.export_public_key().decode().strip()  # with a comment


def spec(key="o.s", port=40000):
    return ForwardSpec(
        key=key,
        ssh=SSHTarget("10.0.0.2", 8022, "hub", " ".join(HOST_KEY_LINE.split()[:2])),
        target_host="jupyter-alice.ns.svc",
        target_port=8888,
        local_host="0.0.0.0",
        local_port=port,
    )


def test_state_round_trips_every_field(tmp_path):
    path = tmp_path / "state.json"
    specs = [spec("a.x", 40001), spec("b.y", 40002)]
    save_state(str(path), specs)
    assert load_state(str(path)) == specs
    data = json.loads(path.read_text())
    assert data["version"] == STATE_VERSION
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_state_save_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "state.json"
    save_state(str(path), [spec("a.x")])
    save_state(str(path), [spec("b.y")])
    assert [s.key for s in load_state(str(path))] == ["b.y"]
    assert os.listdir(tmp_path) == ["state.json"]


def test_missing_state_file_is_an_empty_table(tmp_path):
    assert load_state(str(tmp_path / "nope.json")) == []


@pytest.mark.parametrize(
    "content,message",
    [
        ("{", "cannot read the state file"),
        ('{"version": 99, "forwards": []}', "unknown format"),
        ('{"version": 1, "forwards": [{"key": "a b"}]}', "forward #1"),
    ],
)
def test_broken_state_file_is_refused_with_message(tmp_path, content, message):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(ForwardRequestError, match=message):
        load_state(str(path))


def test_request_host_key_comment_is_dropped():
    body = {
        "ssh": {"host": "10.0.0.2", "port": 8022, "user": "hub", "host_key": HOST_KEY_LINE},
        "target_host": "10.1.0.5",
        "target_port": 8888,
    }
    ssh, host, port, local = parse_request(body)
    assert ssh.host_key == " ".join(HOST_KEY_LINE.split()[:2])
    assert (host, port, local) == ("10.1.0.5", 8888, None)


def test_request_with_private_key_as_host_key_is_refused():
    private = HOST_KEY.export_private_key().decode()
    body = {
        "ssh": {"host": "h", "port": 22, "user": "hub", "host_key": private},
        "target_host": "t",
        "target_port": 1,
    }
    with pytest.raises(ForwardRequestError) as e:
        parse_request(body)
    assert "BEGIN OPENSSH PRIVATE KEY" not in str(e.value)
