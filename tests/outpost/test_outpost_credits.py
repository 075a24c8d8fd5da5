"""Credits, as the original Outpost 2.1 serves them to the JupyterHub Credit Service: a
flavor's ``credits: {billing_value, billing_interval}``, GET /credits/ and POST
/usercredits, and every billed server start stored in the Outpost's database (alembic
revision 0002), kept across restarts and after the server is gone."""

import sqlite3

from jupyterhub_outpost.outpost import migrations
from jupyterhub_outpost.outpost.database import resolve_db_url

from .support import start_body

FLAVORS = {
    "flavors": {
        "billed": {"max": 10, "credits": {"billing_value": 5, "billing_interval": 600}},
        "free": {"max": 10},
    },
    "users": {"free-only": {"authentication": {"name": "carl"}, "flavors": ["free"]}},
}


def body(name, user, flavor):
    return start_body(name, user=user, user_options={"flavor": flavor})


async def test_credits_of_the_hub_and_of_one_user_are_stored_and_survive_a_restart(
    make_outpost, tmp_path
):
    data_dir = tmp_path / "data"
    outpost = await make_outpost(flavors=FLAVORS, data_dir=data_dir)
    api = outpost.api
    for name, user, flavor in (
        ("a1", "ann", "billed"),
        ("b1", "bob", "billed"),
        ("f", "ann", "free"),
    ):
        assert (await api.call("POST", "/services", body=body(name, user, flavor)))[0] == 200
    assert (await api.call("DELETE", "/services/b1"))[0] == 200

    code, credits = await api.call("GET", "/credits/")
    assert code == 200
    assert credits["flavors"] == {"billed": {"billing_value": 5, "billing_interval": 600}}
    servers = {s["name"]: s for s in credits["servers"]}
    assert sorted(servers) == ["a1", "b1"]  # only billed flavors
    assert servers["a1"]["ended"] is None and servers["b1"]["ended"] is not None
    assert servers["a1"]["credits"] == servers["b1"]["credits"] == 5  # one started interval
    assert servers["a1"]["user"] == "ann" and servers["a1"]["flavor"] == "billed"

    code, mine = await api.call("POST", "/usercredits", body={"name": "ann", "groups": []})
    assert code == 200 and [s["name"] for s in mine["servers"]] == ["a1"]
    code, carls = await api.call("POST", "/usercredits", body={"name": "carl"})
    assert carls == {"flavors": {}, "servers": []}  # carl's user set has no billed flavor
    assert (await api.call("GET", "/credits/", hub="hub2"))[1]["servers"] == []

    await outpost.app.stop_outpost()  # the servers keep running
    again = await make_outpost(flavors=FLAVORS, data_dir=data_dir)
    code, after = await again.api.call("GET", "/credits/")
    assert {s["name"] for s in after["servers"]} == {"a1", "b1"}
    assert (await again.api.call("DELETE", "/services/a1"))[0] == 200
    code, after = await again.api.call("GET", "/credits/")
    assert all(s["ended"] for s in after["servers"])


def test_migration_0002_adds_the_credits_table_to_an_existing_database(tmp_path):
    url = resolve_db_url("", str(tmp_path))
    migrations.upgrade(url, "0001")
    path = str(tmp_path / "outpost.sqlite")
    tables = lambda: {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}  # noqa: E731
    assert "outpost_services" in tables() and "outpost_credits" not in tables()
    migrations.upgrade(url)
    assert "outpost_credits" in tables()
