"""The original Outpost's flavor control on a running Outpost: its flavors YAML read as it
is, flavor sets per hub (``hubs:``) and per user (``users:``, matched by regex, glob or
exactly, negated, forbidden, by weight), ``maxPerUser`` and ``global_max_per_user`` exact
under concurrent starts, ``update_user_authentication``, and ``POST /userflavors``."""

import asyncio
import os
import textwrap

import pytest

from .support import start_body

# the original's YAML format, as a site has it mounted (flavors.yaml)
FLAVORS_YAML = textwrap.dedent(
    r"""
    flavors:
      typea:
        max: 5
        maxPerUser: 1
        weight: 10
        display_name: "2GB RAM, 1VCPU, 2 hours"
        description: "JupyterLab will run for max 2 hours with 2GB RAM and 1VCPU."
        runtime: {hours: 2}
      typeb:
        max: 5
        weight: 9
        display_name: "4GB RAM, 1VCPU"
        description: "JupyterLab with 4GB RAM."
        runtime: {hours: 2}
        credits: {billing_value: 5, billing_interval: 600}
      minimal:
        max: 2
        weight: 15
        display_name: "1GB RAM"
        description: "A small JupyterLab."
    hubs:
      default:
        jupyterhub_name: "hub*"          # not a regex that matches: a glob
        flavors: [typea, typeb]
        weight: 1
      restricted:
        jupyterhub_name: [hub2]          # a list: exact names
        flavors: [minimal]
        flavorsOverride: {minimal: {max: 1}}
        weight: 5
    users:
      staff:
        authentication: {name: ".*@staff\\.org"}   # a regex
        flavors: [typea, typeb, minimal]
        weight: 10
      outsiders:
        negate_authentication: true      # users NOT in the group "members"
        authentication: {groups: [members]}
        forbidden: true
        weight: 1
    """
)


def user_body(name, user, flavor=None, **auth):
    options = {"flavor": flavor} if flavor else {}
    body = start_body(name, user=user, user_options=options)
    body["authentication"] = {"name": user, "groups": ["members"], **auth}
    return body


@pytest.fixture
def flavors_file(tmp_path):
    path = tmp_path / "flavors.yaml"
    path.write_text(FLAVORS_YAML)
    return path


async def test_original_flavors_yaml_from_outpost_flavors_path_gives_each_hub_its_set(
    make_outpost, flavors_file, monkeypatch
):
    monkeypatch.setenv("OUTPOST_FLAVORS_PATH", str(flavors_file))
    outpost = await make_outpost()
    code, hub1 = await outpost.api.call("GET", "/flavors")
    assert code == 200 and sorted(hub1) == ["typea", "typeb"]
    assert hub1["typea"]["maxPerUser"] == 1 and hub1["typea"]["current"] == 0
    code, hub2 = await outpost.api.call("GET", "/flavors", hub="hub2")
    assert sorted(hub2) == ["minimal"] and hub2["minimal"]["max"] == 1  # flavorsOverride

    # the file is read again when it changes
    flavors_file.write_text(FLAVORS_YAML.replace('jupyterhub_name: "hub*"', "jupyterhub_name: x"))
    os.utime(flavors_file, ns=(1, 1))
    code, hub1 = await outpost.api.call("GET", "/flavors")
    assert sorted(hub1) == ["minimal", "typea", "typeb"]  # no hub set: every flavor


async def test_userflavors_follow_the_user_sets_by_regex_negation_forbidden_and_weight(
    make_outpost, flavors_file
):
    outpost = await make_outpost(flavors=str(flavors_file))
    api = outpost.api

    async def userflavors(hub="hub1", **auth):
        code, data = await api.call("POST", "/userflavors", hub=hub, body=auth)
        assert code == 200, data
        return data

    # staff (regex) wins by weight over the hub's set, even on hub2
    assert sorted(await userflavors(name="ann@staff.org", groups=["members"])) == [
        "minimal",
        "typea",
        "typeb",
    ]
    assert sorted(await userflavors(hub="hub2", name="ann@staff.org")) == [
        "minimal",
        "typea",
        "typeb",
    ]
    # a member matches no user set: the hub's flavors
    assert sorted(await userflavors(name="bob", groups=["members"])) == ["typea", "typeb"]
    # not a member: the negated set matches, and it is forbidden
    assert await userflavors(name="eve", groups=["guests"]) == {}
    code, data = await api.call("POST", "/userflavors", raw_body="[1]")
    assert code == 400


async def test_starts_are_admitted_by_the_users_flavors(make_outpost, flavors_file):
    outpost = await make_outpost(flavors=str(flavors_file))
    api = outpost.api
    code, data = await api.call("POST", "/services", body=user_body("e", "eve", groups=[]))
    assert code == 403 and "may not start servers" in data["error"], data
    code, data = await api.call("POST", "/services", body=user_body("b", "bob", "minimal"))
    assert code == 403 and "'minimal' is not available" in data["error"], data
    assert await outpost.app.store.list_hub("hub1") == []
    code, data = await api.call(
        "POST", "/services", body=user_body("a", "ann@staff.org", "minimal")
    )
    assert code == 200, data
    # no authentication sent: the hub's flavors, as the original
    body = start_body("n", user_options={"flavor": "typeb"})
    assert (await api.call("POST", "/services", body=body))[0] == 200


async def test_update_user_authentication_hook_changes_what_is_matched(make_outpost, flavors_file):
    seen = []

    async def lowercase(authentication):
        seen.append(dict(authentication))
        authentication["name"] = authentication["name"].lower()
        return authentication

    outpost = await make_outpost(flavors=str(flavors_file), update_user_authentication=lowercase)
    body = {"name": "ANN@STAFF.ORG", "groups": ["members"]}
    code, data = await outpost.api.call("POST", "/userflavors", body=body)
    assert code == 200 and "minimal" in data, data
    assert seen == [body]  # it got a copy of what the hub sent
    code, data = await outpost.api.call(
        "POST", "/services", body=user_body("a", "ANN@STAFF.ORG", "minimal")
    )
    assert code == 200, data


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_per_user_limits_hold_exactly_under_concurrent_starts(
    make_outpost, database, request
):
    """30 concurrent starts of 3 users, 5 each of two flavors: maxPerUser 2 of "small", and
    at most 3 servers per user (global_max_per_user) whatever the flavor."""
    options = {}
    if database == "postgresql":
        options["db_url"] = request.getfixturevalue("postgres_server").create_database().url
    flavors = {
        "small": {"max": 100, "maxPerUser": 2},
        "large": {"max": 100},
    }
    outpost = await make_outpost(flavors=flavors, global_max_per_user=3, **options)
    bodies = [
        start_body(f"{user}-{flavor}-{i}", user=user, user_options={"flavor": flavor})
        for i in range(5)
        for flavor in ("small", "large")
        for user in ("u1", "u2", "u3")
    ]
    results = await asyncio.gather(*(outpost.api.call("POST", "/services", body=b) for b in bodies))
    assert sorted(code for code, _ in results) == [200] * 9 + [403] * 21
    refusals = {data["error"] for code, data in results if code == 403}
    assert all("per user" in e and "limit" in e for e in refusals), refusals
    rows = await outpost.app.store.list_hub("hub1")
    for user in ("u1", "u2", "u3"):
        mine = [r for r in rows if r.user_name == user]
        assert len(mine) == 3 and len([r for r in mine if r.flavor == "small"]) <= 2
    # another hub's users are counted apart
    body = start_body("other", user="u1", user_options={"flavor": "small"})
    assert (await outpost.api.call("POST", "/services", hub="hub2", body=body))[0] == 200


async def test_the_users_authentication_is_neither_stored_nor_logged(
    make_outpost, flavors_file, caplog
):
    caplog.set_level("DEBUG")
    outpost = await make_outpost(flavors=str(flavors_file))
    token = "access-token-of-ann-0123456789"
    body = user_body("t", "ann@staff.org", "minimal", access_token=token)
    assert (await outpost.api.call("POST", "/services", body=body))[0] == 200
    (row,) = await outpost.app.store.list_hub("hub1")
    stored = repr((row.user_options, row.misc, outpost.app.store.secrets(row), row.summary()))
    assert token not in stored and "ann@staff.org" not in repr(row.misc)
    assert token not in caplog.text
