"""Group commit in ForwardManager: a burst of requests shares saves of the state file."""

import asyncio
import json
import logging
import threading

import asyncssh
from conftest import wait_until
from jupyterhub_outpost.tunnels import manager as manager_module
from jupyterhub_outpost.tunnels.manager import ForwardManager
from jupyterhub_outpost.tunnels.table import SSHTarget, save_state


async def test_burst_of_puts_and_deletes_shares_saves_and_each_answer_is_on_disk(
    tmp_path, monkeypatch
):
    state_file = tmp_path / "tunnels.json"
    saves = []
    gate = threading.Event()
    gate.set()

    def counting_save(path, specs):
        saves.append(len(specs))
        assert gate.wait(20), "the test never opened the gate"
        save_state(path, specs)

    monkeypatch.setattr(manager_module, "save_state", counting_save)
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    # nothing listens on port 1: the links only retry in the background
    ssh = SSHTarget("127.0.0.1", 1, "hub", " ".join(host_key.split()[:2]))
    m = ForwardManager(
        state_file=str(state_file),
        forward_ip="127.0.0.1",
        client_key=asyncssh.generate_private_key("ssh-ed25519"),
        log=logging.getLogger("test"),
    )
    on_disk = []

    async def put(key: str) -> None:
        f = await m.put(key, ssh=ssh, target_host="127.0.0.1", target_port=8888, local_port=None)
        # answered: the file already holds this forward on this port
        stored = json.loads(state_file.read_text())["forwards"]
        on_disk.append(
            {"key": key, "local_port": f["local_port"]}
            in [{"key": s["key"], "local_port": s["local_port"]} for s in stored]
        )

    async def delete(key: str) -> None:
        assert await m.delete(key)
        stored = json.loads(state_file.read_text())["forwards"]
        on_disk.append(key not in {s["key"] for s in stored})

    try:
        await asyncio.gather(*(put(f"a.{i}") for i in range(10)))
        saves.clear()
        gate.clear()  # the burst's first save is held until every change is in memory
        burst = asyncio.gather(
            *(put(f"b.{i}") for i in range(50)), *(delete(f"a.{i}") for i in range(5))
        )
        await wait_until(
            lambda: (
                all(f"b.{i}" in m.specs for i in range(50))
                and not any(f"a.{i}" in m.specs for i in range(5))
            ),
            "the burst's changes never reached the table",
        )
        assert not any(on_disk[10:]), "answered before its change was saved"
        gate.set()
        await burst
        assert len(on_disk) == 65 and all(on_disk)
        # 55 requests, 2 saves: the held one (the first change) and one with all the rest
        assert len(saves) == 2 and saves[-1] == 55, saves
        stored = json.loads(state_file.read_text())["forwards"]
        assert sorted(s["key"] for s in stored) == sorted(
            [f"a.{i}" for i in range(5, 10)] + [f"b.{i}" for i in range(50)]
        )
    finally:
        await m.close()
