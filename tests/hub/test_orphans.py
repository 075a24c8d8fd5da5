"""The orphan report: servers an Outpost runs for this hub that no spawner of the hub holds
(real hub with configurable-http-proxy, real Outpost process, real single-user processes).

The orphan is made as a lost hub database would leave it: a start sent to the Outpost with
the hub's credentials that the hub's database does not record.
"""

import sys

import pytest

from tests.helpers.hub_process import CHP, HubProcess
from tests.helpers.outpost_process import OutpostProcess
from tests.outpost.support import MINI_SINGLEUSER, start_body

pytestmark = pytest.mark.slow

OUTPOST_CONFIG = """
from jupyterhub.spawner import SimpleLocalProcessSpawner
c.JupyterHubOutpost.spawner_class = SimpleLocalProcessSpawner
c.SimpleLocalProcessSpawner.cmd = [{python!r}, {mini!r}]
c.SimpleLocalProcessSpawner.home_dir_template = {home!r}
"""

HUB_CONFIG = """
from jupyterhub_outpost.hub import outpost_handlers
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()
c.OutpostSpawner.outposts = {outposts!r}
"""


@pytest.fixture
def rig(tmp_path):
    if not CHP.exists():
        pytest.skip(f"configurable-http-proxy is not installed ({CHP})")
    config = tmp_path / "outpost_config.py"
    config.write_text(
        OUTPOST_CONFIG.format(
            python=sys.executable, mini=MINI_SINGLEUSER, home=str(tmp_path / "home" / "{username}")
        )
    )
    outpost = OutpostProcess(config, tmp_path / "data", hub_credentials={"hub": "hub-secret"})
    hub = None
    try:
        outpost.start()
        outposts = {
            "site": {"url": outpost.url, "hub_name": "hub", "secret": "hub-secret", "direct": True}
        }
        hub = HubProcess(tmp_path / "hub", HUB_CONFIG.format(outposts=outposts))
        hub.create_user("alice")
        yield hub, outpost
    finally:
        if hub is not None:
            hub.close()
        outpost.close()


def test_orphan_report_lists_only_servers_no_spawner_holds_and_stops_one_on_request(rig):
    hub, outpost = rig
    hub.start_server("alice", "lab", {"outpost": "site"})
    ghost = start_body("jh-ghost", user="ghost", user_options={"start_id": "0ld0ld0ld0ld0ld0"})
    assert outpost.call("POST", "/services", ghost, hub="hub")[0] == 200
    [alice_row] = [
        s for s in outpost.call("GET", "/services", hub="hub")[1] if s["name"] != "jh-ghost"
    ]

    status, report = hub.api("GET", "/outpost/orphans")
    assert status == 200, report
    assert report["site"]["error"] is None
    assert [o["name"] for o in report["site"]["orphans"]] == ["jh-ghost"]
    [orphan] = report["site"]["orphans"]

    # alice's own server is not an orphan and cannot be stopped through this endpoint
    status, body = hub.api(
        "DELETE", f"/outpost/orphans/site/{alice_row['name']}/{alice_row['start_id']}"
    )
    assert status == 409 and "alice:lab" in body["message"], body
    assert hub.server_model("alice", "lab")["ready"]

    # only an admin may list or stop
    token = hub.user_token("alice")
    assert hub.api("GET", "/outpost/orphans", token=token)[0] == 403
    path = f"/outpost/orphans/site/jh-ghost/{orphan['start_id']}"
    assert hub.api("DELETE", path, token=token)[0] in (403, 404)  # JupyterHub: 404 for args
    assert len(outpost.call("GET", "/services", hub="hub")[1]) == 2

    status, body = hub.api("DELETE", path)
    assert (status, body) == (200, {"stopped": True})
    assert [s["name"] for s in outpost.call("GET", "/services", hub="hub")[1]] == [
        alice_row["name"]
    ]
    assert hub.api("GET", "/outpost/orphans")[1]["site"]["orphans"] == []
    assert hub.api("DELETE", path)[0] == 404

    # a server started without a start_id is stopped by its name
    assert outpost.call("POST", "/services", start_body("jh-nameonly"), hub="hub")[0] == 200
    [orphan] = hub.api("GET", "/outpost/orphans")[1]["site"]["orphans"]
    assert orphan["name"] == "jh-nameonly" and not orphan.get("start_id")
    assert hub.api("DELETE", "/outpost/orphans/site/jh-nameonly") == (200, {"stopped": True})
    assert hub.server_model("alice", "lab")["ready"]


def test_orphan_report_names_an_unreachable_outpost_instead_of_failing(rig):
    hub, outpost = rig
    outpost.kill()
    status, report = hub.api("GET", "/outpost/orphans")
    assert status == 200, report
    assert report["site"]["orphans"] == []
    assert "site" in report["site"]["error"], report
