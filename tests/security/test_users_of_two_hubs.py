"""Two hubs' users of the same name share nothing on the Outpost by default.

Before: the spawner saw the hub's JUPYTERHUB_USER as its user name, so "alice" of hub 1 and
"alice" of hub 2 got the same home directory (SimpleLocalProcessSpawner's
home_dir_template), the same pod and volume names (KubeSpawner) and the same system account
(LocalProcessSpawner, BatchSpawner), and a hub could name any local account, root
included. Now the spawner sees ``local_user_name`` (default "{user}@{hub}"); the server's
own JUPYTERHUB_USER and URLs stay the hub's.
"""

import os
import pwd

import pytest

from tests.outpost.support import fetch_or_none, local_spawner_config, start_body, wait_for


def cwd_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/cwd")


async def test_the_same_user_name_from_two_hubs_gets_two_home_directories(outpost, tmp_path):
    servers = {}
    for hub in ("hub1", "hub2"):
        code, data = await outpost.api.call("POST", "/services", hub=hub, body=start_body("lab"))
        assert code == 200, data
        servers[hub] = await wait_for(lambda d=data: fetch_or_none(d["service"]), "answers")
    homes = {hub: cwd_of(info["pid"]) for hub, info in servers.items()}
    assert homes == {
        "hub1": str(tmp_path / "home" / "alice@hub1"),
        "hub2": str(tmp_path / "home" / "alice@hub2"),
    }
    # what the hub's single-user server checks (its OAuth user) is still the hub's name
    assert {info["user"] for info in servers.values()} == {"alice"}


def _root_reason() -> str:
    if os.geteuid() != 0:
        return "LocalProcessSpawner switches accounts: needs root"
    return ""


@pytest.mark.parametrize("account", ["root", "nobody"])
async def test_a_hub_cannot_run_a_server_as_a_local_account_it_names(
    make_outpost, tmp_path, account
):
    if _root_reason():
        pytest.skip(_root_reason())
    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
    outpost = await make_outpost(c)
    body = start_body("sys", user=account)
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 500 and f"{account}@hub1" in data["error"], data  # no such account
    assert await outpost.app.store.list_hub("hub1") == []
    with pytest.raises(KeyError):
        pwd.getpwnam(f"{account}@hub1")


async def test_a_local_user_name_hook_maps_hub_users_or_refuses_them(make_outpost):
    def local_user_name(hub, user):
        return {("hub1", "alice"): "site-alice"}[(hub, user)]

    seen = []

    def sanitize(spawner, response):
        seen.append(spawner.user.name)
        return f"{response[0]}:{response[1]}"

    outpost = await make_outpost(local_user_name=local_user_name, sanitize_start_response=sanitize)
    assert (await outpost.api.call("POST", "/services", body=start_body("ok")))[0] == 200
    assert seen == ["site-alice"]
    code, data = await outpost.api.call("POST", "/services", hub="hub2", body=start_body("no"))
    assert code == 403 and "no local user" in data["error"], data
    assert await outpost.app.store.list_hub("hub2") == []


@pytest.mark.parametrize("name", ["", "../x", ".", "a\nb", " a"])
async def test_a_local_user_name_that_is_not_a_name_is_an_admin_error(make_outpost, name):
    outpost = await make_outpost(local_user_name=lambda hub, user: name)
    code, data = await outpost.api.call("POST", "/services", body=start_body("x"))
    assert code == 500 and "local_user_name" in data["error"], data
    assert await outpost.app.store.list_hub("hub1") == []


async def test_the_local_name_is_kept_for_the_servers_life_across_a_restart(make_outpost, tmp_path):
    data_dir = tmp_path / "kept"
    first = await make_outpost(data_dir=data_dir)
    code, data = await first.api.call("POST", "/services", body=start_body("lab"))
    assert code == 200
    info = await wait_for(lambda: fetch_or_none(data["service"]), "answers")
    await first.app.stop_outpost()
    # the admin changes the template: the running server keeps its name (its files)
    second = await make_outpost(data_dir=data_dir, local_user_name="{hub}-{user}")
    assert await second.api.call("GET", "/services/lab") == (200, {"status": None})
    (live,) = second.app.manager._spawners.values()
    assert live.spawner.user.name == "alice@hub1"
    assert cwd_of(info["pid"]).endswith("alice@hub1")
    assert (await second.api.call("DELETE", "/services/lab"))[0] == 200
